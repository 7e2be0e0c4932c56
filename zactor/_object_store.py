"""A process's side of its node's object store: writing large objects, mapping them to read.

Locations (``loc``) say where a large object is: ``[path, size, offset, seal]`` for a region
of the node's arena, ``[path, size]`` for a whole file (spilled to disk, or too big for the
arena). zactor.node.store explains the arena, the seals and the locks.

Writing: ask the head for room, then copy. Each process maps the whole arena once, read-write;
copying into a region this process wrote before touches pages already in its page tables, at
memory speed. A region whose pages are not allocated yet ("cold") is written with ``pwrite``:
the kernel allocates the pages itself, and a full ``/dev/shm`` is an error, not a crash.

Large buffers are copied by ``PUT_COPY_THREADS`` threads at once (numpy's copy lets go of the
GIL): one core alone does not saturate the memory bus, as Ray's plasma client knows too.

The head's answer costs a round trip, as long as copying 10 MB. So after each write a process
asks, without waiting, for a *spare* region of the same size, and its next write of about that
size goes straight into it. In a loop of puts the spare is the region freed by the previous
object, already in this process's page tables. The head grants a spare only when the store
has room to spare, and a process gives back a spare it has not used within ``SPARE_TTL_S``.

Reading: open the arena, take a read lock on the region, map it read-only and check its seal.
The lock stays with the mapping (Python's mmap keeps its own duplicate of the descriptor), so
the store cannot spill or reuse the region while any value read from it is alive. Two reads of
one object in a process share the mapping while either is alive.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from zactor import _serialization, config
from zactor._store_layout import HEADER, SEAL_LEN, lock_region, region_length
from zactor.exceptions import ObjectStoreFullError

if TYPE_CHECKING:
    from zactor._client import CoreClient
    from zactor._serialization import Serialized


_copy_pool: Any = None
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


def _copy(dest: memoryview, src: memoryview) -> None:
    """``dest[:] = src``, split over threads when it is large and numpy can do it without the
    GIL."""
    threads = config.PUT_COPY_THREADS
    n = src.nbytes
    if threads < 2 or n < config.PARALLEL_COPY_MIN or "numpy" not in sys.modules:
        dest[:] = src
        return
    global _copy_pool
    import numpy as np

    if _copy_pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _copy_pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="zactor-copy")
    d = np.frombuffer(dest, dtype=np.uint8)
    s = np.frombuffer(src, dtype=np.uint8)
    step = (n // threads + 4095) // 4096 * 4096
    futures = [_copy_pool.submit(np.copyto, d[i:i + step], s[i:i + step])
               for i in range(step, n, step)]
    np.copyto(d[:step], s[:step])
    for future in futures:
        future.result()


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
        # The spare region: its request while the answer is on its way, then the answer.
        self._spare_lock = threading.Lock()
        self._spare_req: int | None = None
        self._spare: list | None = None  # ["arena", offset, seal, hot, length]
        self.spare_since = 0.0  # when the spare was asked for (0: there is none)
        # A process on a machine without a node has no arena: it pushes its large objects
        # into the head's node and pulls the ones it reads (zactor.node.transfer), over
        # (ZeroMQ context, credentials, head's address, head's arena path).
        self.network: tuple | None = None
        self._net_lock = threading.Lock()
        self._net_sockets: dict[str, Any] = {}

    @property
    def local_reads(self) -> bool:
        """Whether this process maps what it writes (else it reads it back over the
        network)."""
        return self.arena_path is not None

    # -- writing -----------------------------------------------------------------------------

    def write(self, core: CoreClient, oid: bytes, ser: Serialized) -> list:
        """Store ``ser`` as object ``oid``; return its location, or raise
        ObjectStoreFullError if neither the store nor the spill disk can take it."""
        size = ser.layout_size()
        core.flush_refs()  # frees first: the room they make is what this may reuse
        if self.arena_path is None:
            return self._push(core, oid, ser, size)
        length = region_length(size)
        answer = self._take_spare(core, length)
        if answer is None:
            answer = core.request("alloc", [oid, size], timeout=None)
        kind = answer[0]
        if kind == "arena":
            offset, seal, hot = answer[1], answer[2], answer[3]
            try:
                self._write_region(ser, offset, seal, hot)
            except OSError as exc:
                core.tell("abandon", offset)
                raise ObjectStoreFullError(
                    f"Could not write object {oid.hex()} ({size / 2**20:.1f} MiB) into the "
                    f"object store's shared memory: {exc}") from exc
            # Asked after copying, not before: the head answering would take a core from the
            # copy threads.
            self._ask_spare(core, length)
            return [self.arena_path, size, offset, seal]
        if kind == "file":
            path = answer[1]
            try:
                ser.to_file(path)
            except OSError as exc:
                core.tell("abandon", path)
                raise ObjectStoreFullError(
                    f"Could not write object {oid.hex()} ({size / 2**20:.1f} MiB) to the "
                    f"spill directory: {exc}") from exc
            return [path, size]
        raise ObjectStoreFullError(f"Cannot store object {oid.hex()}: {answer[1]}")

    def _socket(self, address: str):
        sock = self._net_sockets.get(address)
        if sock is None:
            from zactor.comm.transport import dealer

            ctx, creds = self.network[0], self.network[1]
            sock = dealer(ctx, b"u" + os.urandom(8), address, creds=creds)
            self._net_sockets[address] = sock
        return sock

    def _push(self, core: CoreClient, oid: bytes, ser: Serialized, size: int) -> list:
        if self.network is None:
            raise ObjectStoreFullError(
                f"Cannot store object {oid.hex()} ({size / 2**20:.1f} MiB): this process has "
                "no object store to write it into")
        from zactor.node.transfer import push

        answer = core.request("alloc", [oid, size], timeout=None)
        if answer[0] not in ("arena", "file"):
            raise ObjectStoreFullError(f"Cannot store object {oid.hex()}: {answer[1]}")
        data = bytearray(size)
        ser.write_into(memoryview(data))
        try:
            with self._net_lock:
                push(self._socket(self.network[2]), oid, answer, memoryview(data))
        except (OSError, TimeoutError) as exc:
            core.tell("abandon", answer[1])
            raise ObjectStoreFullError(f"Could not send object {oid.hex()} to the cluster: "
                                       f"{exc}") from exc
        if answer[0] == "arena":
            return [self.network[3], size, answer[1], answer[2]]
        return [answer[1], size]

    def _take_spare(self, core: CoreClient, length: int) -> list | None:
        """The spare region, if it suits an object spanning ``length`` bytes (it may be up
        to twice as long); a spare that does not suit is given back."""
        with self._spare_lock:
            if self._spare_req is not None:
                self._spare = core.wait_reply(self._spare_req, "prealloc", None)
                self._spare_req = None
            spare, self._spare = self._spare, None
            self.spare_since = 0.0
        if spare is None or spare[0] != "arena":
            return None
        if length <= spare[4] < 2 * length:
            return spare
        core.tell("abandon", spare[1])
        return None

    def _ask_spare(self, core: CoreClient, length: int) -> None:
        if config.SPARE_TTL_S <= 0:
            return
        with self._spare_lock:
            if self._spare_req is None and self._spare is None:
                self._spare_req = core.send_request("prealloc", length)
                self.spare_since = time.monotonic()

    def expire_spare(self, core: CoreClient) -> None:
        """Give back a spare unused for ``SPARE_TTL_S`` (called from the I/O loop)."""
        if time.monotonic() - self.spare_since < config.SPARE_TTL_S:
            return
        with self._spare_lock:
            if self._spare_req is not None:
                if not core.has_reply(self._spare_req):
                    return
                self._spare = core.wait_reply(self._spare_req, "prealloc", None)
                self._spare_req = None
            spare, self._spare = self._spare, None
            self.spare_since = 0.0
        if spare is not None and spare[0] == "arena":
            core.tell("abandon", spare[1])

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
            ser.write_into(view[start:start + ser.layout_size()], _copy)
            view[offset:offset + SEAL_LEN] = seal  # last: the region is whole once sealed
        else:
            ser.write_at(fd, start)
            os.pwrite(fd, seal, offset)

    # -- reading -----------------------------------------------------------------------------

    def read(self, oid: bytes, loc: list) -> Any:
        """The value at ``loc``: numpy arrays in it are read-only views of the store."""
        if loc[0] == "@":  # on another machine: ["@", its node's address, its loc]
            from zactor.node.transfer import fetch

            if self.network is None:
                raise FileNotFoundError("this process cannot fetch objects from other nodes")
            with self._net_lock:
                data = fetch(self._socket(loc[1]), oid, loc[2], loc[2][1])
            return _serialization.loads(memoryview(data))
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

    def layout_view(self, oid: bytes, loc: list, populate: bool = False) -> memoryview | None:
        """The stored bytes of the object at ``loc`` (read-only; None if it moved).
        ``populate``: map every page at once (for a reader that reads them all, such as a
        transfer: one system call instead of a page fault per 4 KiB)."""
        flags = _POPULATE if populate else 0
        if len(loc) == 2:
            fd = os.open(loc[0], os.O_RDONLY)
            try:
                return memoryview(mmap.mmap(fd, 0, flags=mmap.MAP_SHARED | flags,
                                            prot=mmap.PROT_READ))
            finally:
                os.close(fd)
        path, size, offset, seal = loc
        try:
            mm = self._map(path, size, offset, seal, flags)
        except ObjectMoved:
            return None
        return memoryview(mm)[HEADER:HEADER + size]

    def _map(self, path: str, size: int, offset: int, seal: bytes,
             flags: int = 0) -> mmap.mmap:
        length = region_length(size)
        fd = os.open(path, os.O_RDONLY)
        try:
            lock_region(fd, fcntl.F_RDLCK, offset, length, wait=True)
            mm = mmap.mmap(fd, length, flags=mmap.MAP_SHARED | flags, prot=mmap.PROT_READ,
                           offset=offset)
        finally:
            os.close(fd)  # the mapping holds its own descriptor, and with it the lock
        if mm[:SEAL_LEN] != seal:
            mm.close()
            raise ObjectMoved(f"the store's copy at {offset} is no longer this object")
        return mm

    def close(self) -> None:
        self._views.clear()
        for sock in self._net_sockets.values():
            sock.close(linger=0)
        self._net_sockets.clear()
        if self._rw_view is not None:
            self._rw_view.release()
            self._rw_view = None
        if self._rw_map is not None:
            self._rw_map.close()
            self._rw_map = None
        if self._rw_fd is not None:
            os.close(self._rw_fd)
            self._rw_fd = None
