"""Free space of the shared-memory arena, as page-aligned extents (offset, size).

The arena is one file, so placing an object is choosing an offset. Free extents are kept sorted
and merged with their neighbours when freed, and each remembers two facts about its pages:

- ``hot``: every page is already allocated in the file, so a writer may copy into it through
  its mapping at memory speed; a writer must ``pwrite`` into a cold extent instead, since the
  kernel then allocates pages and reports a full ``/dev/shm`` as an error, not a SIGBUS.
- ``clean``: no page is allocated (it was never written, or its pages were given back with
  ``MADV_REMOVE``); an extent that is not clean holds memory, and is trimmed once idle.

Neighbours merge only when they agree on both, so a freed hot region is not lost in the cold
remainder of the arena. Allocation takes the smallest hot extent that fits (the memory a writer
most likely touched last), else the smallest cold one, else the first run of adjacent extents
long enough (hot only if all of it is).
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
            return self._allocate_run(size)
        self._remove(extent)
        if extent.size > size:
            self._insert(Extent(extent.offset + size, extent.size - size, extent.hot,
                                extent.clean, extent.since))
        return extent.offset, extent.hot

    def _allocate_run(self, size: int) -> tuple[int, bool] | None:
        """The first run of adjacent extents (of mixed kinds) covering ``size`` bytes."""
        run: list[Extent] = []
        total = 0
        for start in self._starts:
            extent = self._by_start[start]
            if run and run[-1].offset + run[-1].size != start:
                run, total = [], 0
            run.append(extent)
            total += extent.size
            if total >= size:
                break
        else:
            return None
        offset = run[0].offset
        hot = all(e.hot for e in run)
        for extent in run:
            self._remove(extent)
        last = run[-1]
        if total > size:
            rest = total - size
            self._insert(Extent(last.offset + last.size - rest, rest, last.hot, last.clean,
                                last.since))
        return offset, hot

    def free(self, offset: int, size: int, hot: bool, clean: bool, now: float) -> None:
        """Give back ``[offset, offset + size)``, merging it with free neighbours."""
        i = bisect.bisect_left(self._starts, offset)
        if i > 0:
            prev = self._by_start[self._starts[i - 1]]
            if prev.offset + prev.size > offset:
                raise ValueError(f"freeing {offset}+{size}: overlaps free {prev}")
        if i < len(self._starts):
            nxt = self._by_start[self._starts[i]]
            if offset + size > nxt.offset:
                raise ValueError(f"freeing {offset}+{size}: overlaps free {nxt}")
        self._insert_merged(Extent(offset, size, hot, clean, now))

    def _insert_merged(self, extent: Extent) -> None:
        """Insert ``extent``, merged with the neighbours that have the same kind of pages."""
        i = bisect.bisect_left(self._starts, extent.offset)
        if i > 0:
            prev = self._by_start[self._starts[i - 1]]
            if prev.offset + prev.size == extent.offset and _same_kind(prev, extent):
                self._remove(prev)
                extent = _merge(prev, extent)
        j = bisect.bisect_left(self._starts, extent.offset)
        if j < len(self._starts):
            nxt = self._by_start[self._starts[j]]
            if extent.offset + extent.size == nxt.offset and _same_kind(extent, nxt):
                self._remove(nxt)
                extent = _merge(extent, nxt)
        self._insert(extent)

    def idle_unclean(self, before: float) -> list[Extent]:
        """Free extents holding pages that have been free since before ``before``."""
        return [e for e in self._by_start.values() if not e.clean and e.since < before]

    def mark_trimmed(self, extent: Extent) -> None:
        """Its pages were given back: it is clean now, and joins clean neighbours."""
        self._remove(extent)
        extent.hot = False
        extent.clean = True
        self._insert_merged(extent)

    def _insert(self, extent: Extent) -> None:
        bisect.insort(self._starts, extent.offset)
        self._by_start[extent.offset] = extent
        self.free_bytes += extent.size

    def _remove(self, extent: Extent) -> None:
        i = bisect.bisect_left(self._starts, extent.offset)
        del self._starts[i]
        del self._by_start[extent.offset]
        self.free_bytes -= extent.size


def _same_kind(a: Extent, b: Extent) -> bool:
    return a.hot == b.hot and a.clean == b.clean


def _merge(a: Extent, b: Extent) -> Extent:
    return Extent(a.offset, a.size + b.size, a.hot and b.hot, a.clean and b.clean,
                  max(a.since, b.since))
