"""Free space of the shared-memory arena, as page-aligned extents (offset, size).

The arena is one file, so placing an object is choosing an offset. Free extents are kept sorted
and merged with their neighbours when freed, and each remembers two facts about its pages:

- ``hot``: every page is already allocated in the file, so a writer may copy into it through
  its mapping at memory speed; a writer must ``pwrite`` into a cold extent instead, since the
  kernel then allocates pages and reports a full ``/dev/shm`` as an error, not a SIGBUS.
- ``clean``: no page is allocated (it was never written, or its pages were given back with
  ``MADV_REMOVE``); an extent that is not clean holds memory, and is trimmed once idle.

A merged extent is hot only if both parts were and clean only if both were: the conservative
answer is always correct. Allocation takes the smallest hot extent that fits (the memory a
writer most likely touched last), else the smallest cold one.
"""

from __future__ import annotations

import bisect


class Extent:
    __slots__ = ("offset", "size", "hot", "clean", "since")

    def __init__(self, offset: int, size: int, hot: bool, clean: bool, since: float) -> None:
        self.offset = offset
        self.size = size
        self.hot = hot
        self.clean = clean
        self.since = since  # when it became free (the latest part of it, once merged)

    def __repr__(self) -> str:
        return (f"Extent({self.offset}, {self.size}, hot={self.hot}, clean={self.clean})")


class FreeExtents:
    """The free extents of an arena of ``capacity`` bytes (a multiple of PAGE)."""

    def __init__(self, capacity: int, now: float = 0.0) -> None:
        self.capacity = capacity
        self._starts: list[int] = []
        self._by_start: dict[int, Extent] = {}
        self.free_bytes = 0
        if capacity:
            self._insert(Extent(0, capacity, False, True, now))

    def __iter__(self):
        return (self._by_start[s] for s in self._starts)

    def __len__(self) -> int:
        return len(self._starts)

    def largest(self) -> int:
        return max((e.size for e in self._by_start.values()), default=0)

    def allocate(self, size: int) -> tuple[int, bool] | None:
        """Take ``size`` bytes (a multiple of PAGE); return (offset, hot) or None."""
        best_hot = best_cold = None
        for extent in self._by_start.values():
            if extent.size < size:
                continue
            if extent.hot:
                if best_hot is None or extent.size < best_hot.size:
                    best_hot = extent
            elif best_cold is None or extent.size < best_cold.size:
                best_cold = extent
        extent = best_hot or best_cold
        if extent is None:
            return None
        self._remove(extent)
        if extent.size > size:
            self._insert(Extent(extent.offset + size, extent.size - size, extent.hot,
                                extent.clean, extent.since))
        return extent.offset, extent.hot

    def free(self, offset: int, size: int, hot: bool, clean: bool, now: float) -> None:
        """Give back ``[offset, offset + size)``, merging it with free neighbours."""
        merged = Extent(offset, size, hot, clean, now)
        i = bisect.bisect_left(self._starts, offset)
        if i > 0:
            prev = self._by_start[self._starts[i - 1]]
            if prev.offset + prev.size > offset:
                raise ValueError(f"freeing {offset}+{size}: overlaps free {prev}")
            if prev.offset + prev.size == offset:
                self._remove(prev)
                merged = _merge(prev, merged)
        j = bisect.bisect_left(self._starts, offset)
        if j < len(self._starts):
            nxt = self._by_start[self._starts[j]]
            if offset + size > nxt.offset:
                raise ValueError(f"freeing {offset}+{size}: overlaps free {nxt}")
            if offset + size == nxt.offset:
                self._remove(nxt)
                merged = _merge(merged, nxt)
        self._insert(merged)

    def idle_unclean(self, before: float) -> list[Extent]:
        """Free extents holding pages that have been free since before ``before``."""
        return [e for e in self._by_start.values() if not e.clean and e.since < before]

    def mark_trimmed(self, extent: Extent) -> None:
        extent.hot = False
        extent.clean = True

    def _insert(self, extent: Extent) -> None:
        bisect.insort(self._starts, extent.offset)
        self._by_start[extent.offset] = extent
        self.free_bytes += extent.size

    def _remove(self, extent: Extent) -> None:
        i = bisect.bisect_left(self._starts, extent.offset)
        del self._starts[i]
        del self._by_start[extent.offset]
        self.free_bytes -= extent.size


def _merge(a: Extent, b: Extent) -> Extent:
    return Extent(a.offset, a.size + b.size, a.hot and b.hot, a.clean and b.clean,
                  max(a.since, b.since))
