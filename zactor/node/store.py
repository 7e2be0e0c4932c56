"""A node's object store: one shared-memory arena, capped, that spills to disk (DESIGN §4).

    writer ──"alloc" request──► head: ObjectStore.allocate ── room? ──► [offset, seal, hot]
       │                                          └─ full? spill LRU objects to disk first
       └─ copies the object into its own mapping of the arena, then the seal; PUT/TASK_DONE
    reader ── read lock on the region (OFD), checks the seal, maps it: zero-copy views

The arena is a single file of ``object_store_memory`` bytes in the node's shared-memory
directory. Every process maps it once for writing, so a region it wrote before is already
faulted in its page tables: copying a large object into it runs at memory speed, where a fresh
file would pay a page fault per 4 KiB. The head only hands out offsets; it never reads objects
except to copy one to disk.

Who may still be reading a region is known without a round trip: a reader holds an OFD read
lock on the region for as long as its mapping lives (the lock belongs to the file description
the mapping keeps open). The store takes a region back — to spill it, or to reuse it once its
object is freed — only if it can take a write lock on it, and it zeroes the region's seal (16
random bytes per allocation) before letting go, so a process that cached the region's old
location sees the mismatch and asks the head where the object is now.

Spilling copies the least recently used objects that nobody is reading to files in the spill
directory, on a thread of its own, and readers then map those files in place (the page cache
keeps them in memory while memory allows). An object that cannot fit in the arena even after
spilling goes straight to a file in the spill directory; if the disk cannot take it either,
the writer gets ``ObjectStoreFullError``. Free memory idle for ``ARENA_TRIM_S`` seconds is
handed back to the kernel (``MADV_REMOVE``).
"""

from __future__ import annotations

import collections
import fcntl
import logging
import mmap
import os
import threading
import time
from collections.abc import Callable

from zactor import config
from zactor._process import remove_tree
from zactor._store_layout import HEADER, SEAL_LEN, lock_region, region_length
from zactor.node.extents import FreeExtents

log = logging.getLogger(__name__)


class Region:
    __slots__ = ("offset", "length", "size", "oid", "seal", "client", "sealed", "hot")

    def __init__(self, offset: int, length: int, size: int, oid: bytes, seal: bytes,
                 client: bytes, hot: bool) -> None:
        self.hot = hot  # every page allocated when it was handed out (writing adds pages)
        self.offset = offset
        self.length = length  # page-rounded span in the arena
        self.size = size  # the object's layout, after HEADER
        self.oid = oid
        self.seal = seal
        self.client = client  # the writer, until its PUT/TASK_DONE names the region
        self.sealed = False


class _Alloc:
    __slots__ = ("client", "oid", "size", "length", "respond")

    def __init__(self, client: bytes, oid: bytes, size: int, respond: Callable) -> None:
        self.client = client
        self.oid = oid
        self.size = size
        self.length = region_length(size)
        self.respond = respond


class ObjectStore:
    """The arena, its allocator and its spilling, for one node."""

    def __init__(self, shm_dir: str, capacity: int, spill_dir: str) -> None:
        self.capacity = capacity // mmap.PAGESIZE * mmap.PAGESIZE
        self.arena_path = os.path.join(shm_dir, "arena")
        self.spill_dir = spill_dir
        #: Told (object id, new location) when an object has been spilled to disk.
        self.on_spilled: Callable[[bytes, list], None] = lambda oid, loc: None
        self.fd = os.open(self.arena_path, os.O_CREAT | os.O_RDWR, 0o600)
        os.ftruncate(self.fd, self.capacity)
        self.map = mmap.mmap(self.fd, self.capacity) if self.capacity else None
        self.free = FreeExtents(self.capacity, time.monotonic())
        self.regions: dict[int, Region] = {}  # by offset: allocated, pending or sealed
        self.lru: collections.OrderedDict[int, None] = collections.OrderedDict()  # sealed
        # writer -> what it was given but has not named yet: offsets, and fallback file paths
        self.pending: dict[bytes, set] = {}
        self.zombies: dict[int, Region] = {}  # freed, but a reader still maps them
        self.files: dict[str, int] = {}  # spilled or fallback files -> size
        self.waiting: collections.deque[_Alloc] = collections.deque()
        self.spilling: dict[int, str] = {}  # offset -> destination file
        self._spiller = _Spiller(self.map)
        self._seq = 0
        self.spilled_count = 0
        self.spilled_bytes = 0
        self.fallback_count = 0
        self._no_spill_until = 0.0

    # -- allocation --------------------------------------------------------------------------

    def allocate(self, client: bytes, oid: bytes, size: int, respond: Callable) -> None:
        """Find room for an object of ``size`` bytes written by ``client``; ``respond`` gets
        ``["arena", offset, seal, hot]``, ``["file", path]`` or ``["full", why]`` (maybe
        later: after spilling)."""
        self.waiting.append(_Alloc(client, oid, int(size), respond))
        self._serve()

    def _serve(self) -> None:
        while self.waiting:
            req = self.waiting[0]
            got = self.free.allocate(req.length) if req.length <= self.capacity else None
            if got is not None:
                self.waiting.popleft()
                offset, hot = got
                seal = os.urandom(SEAL_LEN)
                self.regions[offset] = Region(offset, req.length, req.size, req.oid, seal,
                                              req.client, hot)
                self.pending.setdefault(req.client, set()).add(offset)
                req.respond(["arena", offset, seal, hot])
                continue
            if req.length <= self.capacity:
                if self._reclaim_zombies():
                    continue
                if self._start_spills(req.length):
                    return  # served when a spill finishes
            self.waiting.popleft()
            self._fallback(req)

    def preallocate(self, client: bytes, length: int, respond: Callable) -> None:
        """``respond`` gets a spare region of ``length`` bytes for ``client``'s next write
        (zactor._object_store) if the store has room to spare without spilling:
        ``["arena", offset, seal, hot, length]``, else ``["none"]``. (A callback, as for
        allocate: the store may be in another process, zactor.head.nodes.StoreProxy.)"""
        respond(self._spare_region(client, length))

    def _spare_region(self, client: bytes, length: int) -> list:
        length = region_length(max(0, int(length) - HEADER))
        if self.waiting or self.free.free_bytes - length < self.capacity // 4:
            return ["none"]
        got = self.free.allocate(length)
        if got is None:
            return ["none"]
        offset, hot = got
        seal = os.urandom(SEAL_LEN)
        self.regions[offset] = Region(offset, length, length - HEADER, b"", seal, client, hot)
        self.pending.setdefault(client, set()).add(offset)
        return ["arena", offset, seal, hot, length]

    def _fallback(self, req: _Alloc) -> None:
        """No room in the arena: the object goes straight to a file on disk, if it fits."""
        path = self._spill_path(req.oid)
        if not self._disk_has_room(req.size):
            req.respond(["full", (
                f"the object ({req.size / 2**20:.1f} MiB) does not fit in the object store "
                f"({self.capacity / 2**20:.0f} MiB, {self.used() / 2**20:.0f} MiB in use by "
                f"objects that are being read or written) and the spill directory "
                f"{self.spill_dir} has no room for it either")])
            return
        self.fallback_count += 1
        self.files[path] = req.size
        self.pending.setdefault(req.client, set()).add(path)
        req.respond(["file", path])

    def sealed(self, loc: list, oid: bytes) -> None:
        """The writer named ``loc`` in a PUT or TASK_DONE: the region holds ``oid`` now."""
        if len(loc) == 2:
            self._written(loc[0], None)
            return
        region = self.regions.get(loc[2])
        if region is None or region.seal != loc[3] or region.sealed or \
                not HEADER + loc[1] <= region.length:
            return
        self._written(region.offset, region.client)
        region.oid = oid  # a spare region learns its object only now
        region.size = loc[1]
        region.sealed = True
        region.client = None
        self.lru[region.offset] = None

    def _written(self, key, client: bytes | None) -> None:
        if client is None:
            for keys in self.pending.values():
                keys.discard(key)
            return
        keys = self.pending.get(client)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self.pending[client]

    def abandon(self, client: bytes, loc_or_offset) -> None:
        """A writer gave up on an allocation (its write failed)."""
        keys = self.pending.get(client)
        if keys is None or loc_or_offset not in keys:
            return
        keys.discard(loc_or_offset)
        if isinstance(loc_or_offset, str):
            self._unlink(loc_or_offset)
        else:
            self._take_back(self.regions[loc_or_offset], written=False)

    def client_gone(self, client: bytes) -> None:
        """Take back what a dead writer was given but never named."""
        if any(req.client == client for req in self.waiting):
            self.waiting = collections.deque(r for r in self.waiting if r.client != client)
        for key in list(self.pending.pop(client, ())):
            if isinstance(key, str):
                self._unlink(key)
            else:
                region = self.regions.get(key)
                if region is not None and not region.sealed:
                    self._take_back(region, written=False)
        self._serve()

    # -- lookups -----------------------------------------------------------------------------

    def touch(self, loc: list) -> None:
        """Someone is about to read the object at ``loc``: it is recently used."""
        if len(loc) > 2:
            lru = self.lru
            if loc[2] in lru:
                lru.move_to_end(loc[2])

    def holds(self, loc: list) -> bool:
        """Whether ``loc`` still names a stored copy."""
        if len(loc) == 2:
            return loc[0] in self.files and os.path.exists(loc[0])
        region = self.regions.get(loc[2])
        return region is not None and region.sealed and region.seal == loc[3]

    def being_read(self, loc: list) -> bool:
        """Whether a process maps the region at ``loc`` now (it cannot be spilled)."""
        if len(loc) == 2:
            return False
        region = self.regions.get(loc[2])
        if region is None or region.seal != loc[3]:
            return False
        if lock_region(self.fd, fcntl.F_WRLCK, region.offset, region.length, wait=False):
            lock_region(self.fd, fcntl.F_UNLCK, region.offset, region.length, wait=False)
            return False
        return True

    def used(self) -> int:
        return self.capacity - self.free.free_bytes

    def stats(self) -> dict:
        return {"capacity": self.capacity, "used": self.used(),
                "objects_in_memory": len(self.lru), "pending_writes": len(self.regions) -
                len(self.lru), "being_read_after_free": len(self.zombies),
                "objects_on_disk": len(self.files), "bytes_on_disk": sum(self.files.values()),
                "spilled_total": self.spilled_count,
                "spilled_bytes_total": self.spilled_bytes,
                "fallback_total": self.fallback_count, "spill_dir": self.spill_dir}

    # -- freeing -----------------------------------------------------------------------------

    def free_object(self, loc: list) -> None:
        """Nobody refers to the object at ``loc`` any more: give its memory or file back."""
        if len(loc) == 2:
            if loc[0] in self.files:  # only files this store made: a loc comes from a client
                self._unlink(loc[0])
            return
        region = self.regions.get(loc[2])
        if region is None or region.seal != loc[3]:
            return
        self._take_back(region, written=True)
        self._serve()

    def lose(self, loc: list) -> bool:
        """Testing: drop the stored copy at ``loc`` as a failing node would."""
        if len(loc) == 2:
            if loc[0] not in self.files:
                return False
            self._unlink(loc[0])
            return True
        region = self.regions.get(loc[2])
        if region is None or region.seal != loc[3]:
            return False
        # Gone for new readers at once, even if a reader still maps it (that one keeps what
        # it has, as a process that read an object before its node died would).
        self.map[region.offset:region.offset + SEAL_LEN] = bytes(SEAL_LEN)
        self._take_back(region, written=True)
        return True

    def _take_back(self, region: Region, written: bool) -> None:
        # A spill of this region still running copies to a file its completion will find
        # orphaned (the region gone, or another object's seal in it) and remove.
        self.regions.pop(region.offset, None)
        self.lru.pop(region.offset, None)
        if self._claim(region):
            self._release(region, written)
        else:
            self.zombies[region.offset] = region

    def _claim(self, region: Region) -> bool:
        """Write-lock the region (nobody maps it) and zero its seal; False if it is read."""
        if not lock_region(self.fd, fcntl.F_WRLCK, region.offset, region.length, wait=False):
            return False
        self.map[region.offset:region.offset + SEAL_LEN] = bytes(SEAL_LEN)
        lock_region(self.fd, fcntl.F_UNLCK, region.offset, region.length, wait=False)
        return True

    def _release(self, region: Region, written: bool) -> None:
        # A region its writer filled has every page allocated; one it abandoned has at least
        # those it had when it was handed out.
        self.free.free(region.offset, region.length, hot=written or region.hot, clean=False,
                       now=time.monotonic())

    def _reclaim_zombies(self) -> bool:
        reclaimed = False
        for offset, region in list(self.zombies.items()):
            if self._claim(region):
                del self.zombies[offset]
                self._release(region, True)
                reclaimed = True
        return reclaimed

    def _unlink(self, path: str) -> None:
        self.files.pop(path, None)
        try:
            os.unlink(path)
        except OSError:
            pass

    # -- spilling ----------------------------------------------------------------------------

    def _start_spills(self, need: int) -> bool:
        """Spill least recently used objects until ``need`` bytes could be free; whether
        spills are under way (False: nothing more can be spilled now)."""
        coming = sum(self.regions[o].length for o in self.spilling if o in self.regions)
        if self.free.free_bytes + coming >= need and self.spilling:
            return True
        if time.monotonic() < self._no_spill_until:
            return bool(self.spilling)
        started = False
        for offset in list(self.lru):
            # Enough bytes may still be in pieces: with nothing in flight, spill one more.
            if (started or self.spilling) and self.free.free_bytes + coming >= need:
                break
            if offset in self.spilling:
                continue
            region = self.regions[offset]
            if not self._disk_has_room(region.size):
                break
            # Cheap first look: an object being read cannot be spilled now.
            if not lock_region(self.fd, fcntl.F_WRLCK, offset, region.length, wait=False):
                continue
            lock_region(self.fd, fcntl.F_UNLCK, offset, region.length, wait=False)
            path = self._spill_path(region.oid)
            self.spilling[offset] = path
            self._spiller.submit(offset, region, path)
            coming += region.length
            started = True
        return started or bool(self.spilling)

    @property
    def events_fd(self) -> int:
        """Readable when a spill has finished."""
        return self._spiller.done_r

    def on_spills_done(self) -> None:
        for offset, seal, path, error in self._spiller.finished():
            self.spilling.pop(offset, None)
            region = self.regions.get(offset)
            if error is not None:
                log.warning("spilling to %s failed: %s", path, error)
                self._remove_file(path)
                self._no_spill_until = time.monotonic() + 1.0
                continue
            if region is None or region.seal != seal:
                self._remove_file(path)  # freed while it was being copied
                continue
            if not self._claim(region):  # someone mapped it meanwhile: keep it here
                self._remove_file(path)
                self.lru.move_to_end(offset)
                continue
            del self.regions[offset]
            self.lru.pop(offset, None)
            self._release(region, True)
            self.files[path] = region.size
            self.spilled_count += 1
            self.spilled_bytes += region.size
            self.on_spilled(region.oid, [path, region.size])
        self._serve()

    def _remove_file(self, path: str) -> None:
        try:
            os.unlink(path)
        except OSError:
            pass

    def _spill_path(self, oid: bytes) -> str:
        self._seq += 1
        return os.path.join(self.spill_dir, f"{oid.hex()}.{self._seq}")

    def _disk_has_room(self, size: int) -> bool:
        try:
            os.makedirs(self.spill_dir, mode=0o700, exist_ok=True)
            st = os.statvfs(self.spill_dir)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize >= size + config.SPILL_DISK_RESERVE

    # -- upkeep ------------------------------------------------------------------------------

    def housekeeping(self, now: float) -> None:
        """Reuse regions whose readers let go; give idle free memory back to the kernel."""
        if self.zombies and self._reclaim_zombies():
            self._serve()
        for extent in self.free.idle_unclean(now - config.ARENA_TRIM_S):
            self.map.madvise(mmap.MADV_REMOVE, extent.offset, extent.size)
            self.free.mark_trimmed(extent)

    def close(self) -> None:
        self._spiller.stop()
        if self.map is not None:
            try:
                self.map.close()
            except BufferError:  # pragma: no cover - a spill thread still copying
                pass
        os.close(self.fd)
        remove_tree(self.spill_dir)


class _Spiller:
    """A thread that copies regions of the arena to files; the head's loop hears of each
    finished copy through a pipe, so neither ever blocks the other."""

    def __init__(self, arena: mmap.mmap | None) -> None:
        self._view = memoryview(arena) if arena is not None else None
        self._jobs: collections.deque = collections.deque()
        self._done: collections.deque = collections.deque()
        self._wake = threading.Condition()
        self._stopped = False
        self.done_r, self._done_w = os.pipe()
        os.set_blocking(self.done_r, False)
        self._thread: threading.Thread | None = None  # started by the first spill

    def submit(self, offset: int, region: Region, path: str) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="zactor-spill",
                                            daemon=True)
            self._thread.start()
        with self._wake:
            self._jobs.append((offset, region.seal, region.size, path))
            self._wake.notify()

    def finished(self) -> list:
        try:
            os.read(self.done_r, 4096)
        except BlockingIOError:
            pass
        out = []
        while self._done:
            out.append(self._done.popleft())
        return out

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._jobs and not self._stopped:
                    self._wake.wait()
                if self._stopped:
                    return
                offset, seal, size, path = self._jobs.popleft()
            error = None
            try:
                start = offset + HEADER
                _copy_to_file(self._view[start:start + size], path)
            except OSError as exc:
                error = exc
            self._done.append((offset, seal, path, error))
            try:
                os.write(self._done_w, b"x")
            except OSError:
                return

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            if self._view is not None:
                self._view.release()
        except BufferError:  # pragma: no cover - the thread did not stop in time
            pass
        os.close(self.done_r)
        os.close(self._done_w)


def _copy_to_file(data: memoryview, path: str) -> None:
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    try:
        while data:
            done = os.write(fd, data[: 1 << 30])
            data = data[done:]
    finally:
        os.close(fd)
