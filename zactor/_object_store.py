"""A process's side of its node's object store: writing large objects, mapping them to read.

Locations (``loc``) say where a large object is: ``[path, size, offset, seal]`` for a region
of the node's arena, ``[path, size]`` for a whole file (spilled to disk, or too big for the
arena). zactor.node.store explains the arena, the seals and the locks.

Writing: ask the head for room, then copy. Each process maps the whole arena once, read-write;
copying into a region this process wrote before touches pages already in its page tables, at
memory speed. A region whose pages are not allocated yet ("cold") is written with ``pwrite``:
the kernel allocates the pages itself, and a full ``/dev/shm`` is an error, not a crash.

Reading: open the arena, take a read lock on the region, map it read-only and check its seal.
The lock stays with the mapping (Python's mmap keeps its own duplicate of the descriptor), so
the store cannot spill or reuse the region while any value read from it is alive. Two reads of
one object in a process share the mapping while either is alive.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from zactor import _serialization
from zactor._store_layout import HEADER, SEAL_LEN, lock_region, region_length
from zactor.exceptions import ObjectStoreFullError

if TYPE_CHECKING:
    from zactor._client import CoreClient
    from zactor._serialization import Serialized


class ObjectMoved(FileNotFoundError):
    """The location a process had for an object is stale: ask the head where it is now."""


class StoreClient:
    def __init__(self, arena_path: str | None, capacity: int) -> None:
        self.arena_path = arena_path
        self.capacity = capacity
        self._rw_fd: int | None = None
        self._rw_map: mmap.mmap | None = None
        self._rw_view: memoryview | None = None
        self._views: dict[bytes, weakref.ref] = {}
        self._open_lock = threading.Lock()

    # -- writing -----------------------------------------------------------------------------

    def write(self, core: CoreClient, oid: bytes, ser: Serialized) -> list:
        """Store ``ser`` as object ``oid``; return its location, or raise
        ObjectStoreFullError if neither the store nor the spill disk can take it."""
        size = ser.layout_size()
        core.flush_refs()  # frees first: the room they make is what this may reuse
        answer = core.request("alloc", [oid, size], timeout=None)
        kind = answer[0]
        if kind == "arena":
            _, offset, seal, hot = answer
            try:
                self._write_region(ser, offset, seal, hot)
            except OSError as exc:
                core.request("abandon", offset)
                raise ObjectStoreFullError(
                    f"Could not write object {oid.hex()} ({size / 2**20:.1f} MiB) into the "
                    f"object store's shared memory: {exc}") from exc
            return [self.arena_path, size, offset, seal]
        if kind == "file":
            path = answer[1]
            try:
                ser.to_file(path)
            except OSError as exc:
                core.request("abandon", path)
                raise ObjectStoreFullError(
                    f"Could not write object {oid.hex()} ({size / 2**20:.1f} MiB) to the "
                    f"spill directory: {exc}") from exc
            return [path, size]
        raise ObjectStoreFullError(f"Cannot store object {oid.hex()}: {answer[1]}")

    def _write_region(self, ser: Serialized, offset: int, seal: bytes, hot: bool) -> None:
        if self._rw_fd is None:
            with self._open_lock:
                if self._rw_fd is None:
                    fd = os.open(self.arena_path, os.O_RDWR)
                    self._rw_map = mmap.mmap(fd, self.capacity)
                    self._rw_view = memoryview(self._rw_map)
                    self._rw_fd = fd
        fd = self._rw_fd
        start = offset + HEADER
        if hot:
            view = self._rw_view
            ser.write_into(view[start:start + ser.layout_size()])
            view[offset:offset + SEAL_LEN] = seal  # last: the region is whole once sealed
        else:
            ser.write_at(fd, start)
            os.pwrite(fd, seal, offset)

    # -- reading -----------------------------------------------------------------------------

    def read(self, oid: bytes, loc: list) -> Any:
        """The value at ``loc``: numpy arrays in it are read-only views of the store."""
        if len(loc) == 2:
            return _serialization.load_file(loc[0])
        path, size, offset, seal = loc
        ref = self._views.get(oid)
        mm = ref() if ref is not None else None
        if mm is None or mm.closed:
            mm = self._map(path, size, offset, seal)
            views = self._views

            def forget(r: weakref.ref, oid: bytes = oid) -> None:
                if views.get(oid) is r:
                    del views[oid]

            views[oid] = weakref.ref(mm, forget)
        return _serialization.loads(memoryview(mm)[HEADER:HEADER + size])

    def _map(self, path: str, size: int, offset: int, seal: bytes) -> mmap.mmap:
        length = region_length(size)
        fd = os.open(path, os.O_RDONLY)
        try:
            lock_region(fd, fcntl.F_RDLCK, offset, length, wait=True)
            mm = mmap.mmap(fd, length, access=mmap.ACCESS_READ, offset=offset)
        finally:
            os.close(fd)  # the mapping holds its own descriptor, and with it the lock
        if mm[:SEAL_LEN] != seal:
            mm.close()
            raise ObjectMoved(f"the store's copy at {offset} is no longer this object")
        return mm

    def close(self) -> None:
        self._views.clear()
        if self._rw_view is not None:
            self._rw_view.release()
            self._rw_view = None
        if self._rw_map is not None:
            self._rw_map.close()
            self._rw_map = None
        if self._rw_fd is not None:
            os.close(self._rw_fd)
            self._rw_fd = None
