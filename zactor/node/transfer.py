"""Moving large objects between nodes: pulled in chunks by the node that needs them, straight
from the node that holds them (DESIGN §4), never through the head's tables.

    node B (needs it)                                   node A (holds it)
    Puller ──FETCH oid loc offset length (a window)──► TransferServer: read lock + seal check,
           ◄─CHUNK oid offset | bytes ───────────────  one mapping per object being served
    writes each chunk into the region its own store gave it, then the seal: sealed, reported

Each chunk is copied once on each side (out of A's mapping into a ZeroMQ message, out of the
message into B's region): the object never exists whole anywhere but in the two stores. The
puller keeps ``TRANSFER_WINDOW`` chunks in flight, which keeps a TCP connection busy without
buffering the object. The holder's read lock keeps its store from spilling or reusing the
region while a pull is under way; a region that is gone or reused (the seal differs) answers
with an error, and the puller reports the object lost so that the head can rebuild it.

A node that is its own process serves on its one TCP port; the head's own node serves through
the head's port (the broker hands it the FETCHes it receives).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import zmq

from zactor import config
from zactor._object_store import StoreClient
from zactor._store_layout import HEADER
from zactor.comm.transport import dealer, send_routed
from zactor.protocol import Msg, ProtocolError, decode, encode

log = logging.getLogger(__name__)


class TransferServer:
    """Answers FETCHes for objects in one node's store; with ``store`` (the head's node),
    also takes PUSHes of drivers on machines without a node of their own."""

    def __init__(self, arena_path: str | None, capacity: int, store=None) -> None:
        self.reader = StoreClient(arena_path, capacity)
        self._views: dict[tuple, tuple[memoryview, float]] = {}
        self.served_bytes = 0
        self.store = store

    def on_push(self, sock: zmq.Socket, identity: bytes, fields: list, data) -> None:
        oid, dest, offset, last = fields
        error = None
        store = self.store
        try:
            if store is None:
                raise ValueError("this node takes no pushes")
            if dest[0] == "arena":
                region = store.regions.get(dest[1])
                if region is None or region.sealed or region.seal != dest[2] or \
                        offset + len(data) > region.size:
                    raise ValueError("not a region being written")
                start = region.offset + HEADER + offset
                store.map[start:start + len(data)] = data
                if last:
                    store.map[region.offset:region.offset + len(region.seal)] = region.seal
            elif dest[0] == "file" and dest[1] in store.files:
                fd = os.open(dest[1], os.O_WRONLY | os.O_CREAT, 0o600)
                try:
                    os.pwrite(fd, data, offset)
                finally:
                    os.close(fd)
            else:
                raise ValueError("not a file being written")
        except (OSError, ValueError, IndexError, TypeError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        send_routed(sock, identity, encode(Msg.CHUNK, oid, offset, error), ())

    def on_fetch(self, sock: zmq.Socket, identity: bytes, fields: list) -> None:
        oid, loc, offset, length = fields
        key = (oid, tuple(loc))
        now = time.monotonic()
        held = self._views.get(key)
        view = held[0] if held is not None else None
        error = None
        if view is None:
            try:
                view = self.reader.layout_view(oid, loc, populate=True)
            except (OSError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            if view is None and error is None:
                error = "the object is no longer in this node's store"
        if error is not None:
            send_routed(sock, identity, encode(Msg.CHUNK, oid, offset, error), ())
            return
        end = min(offset + length, view.nbytes)
        # Zero-copy: the frame keeps the slice, and with it the mapping and its read lock,
        # until ZeroMQ has sent it.
        sock.send(identity, zmq.SNDMORE)
        sock.send(encode(Msg.CHUNK, oid, offset, None), zmq.SNDMORE)
        sock.send(view[offset:end], copy=False)
        self.served_bytes += end - offset
        if end >= view.nbytes:
            self._views.pop(key, None)  # the last chunk: the lock goes with the mapping
        else:
            self._views[key] = (view, now)

    def expire(self, idle_s: float = 30.0) -> None:
        """Let go of objects whose puller stopped asking (it died, or gave up)."""
        now = time.monotonic()
        for key, (_view, since) in list(self._views.items()):
            if now - since > idle_s:
                del self._views[key]

    def close(self) -> None:
        self._views.clear()
        self.reader.close()


class _Pull:
    __slots__ = ("oid", "size", "source", "loc", "dest", "next_offset", "received", "sock",
                 "started")

    def __init__(self, oid: bytes, size: int, source: str, loc: list) -> None:
        self.oid = oid
        self.size = size
        self.source = source
        self.loc = loc
        self.dest: list | None = None  # the store's answer: ["arena", offset, seal, hot] ...
        self.next_offset = 0
        self.received = 0
        self.sock = None
        self.started = time.monotonic()


class Puller:
    """Pulls objects from other nodes into this node's store.

    ``store`` is this node's ObjectStore; ``done(oid, loc, why)`` is told the object's local
    location once it is sealed, or None and why it could not be had.
    """

    def __init__(self, ctx: zmq.Context, creds, store, done: Callable) -> None:
        self.ctx = ctx
        self.creds = creds
        self.store = store
        self.done = done
        self.sockets: dict[str, zmq.Socket] = {}  # source address -> DEALER
        self.by_socket: dict[zmq.Socket, str] = {}
        self.pulls: dict[bytes, _Pull] = {}
        self.pulled_bytes = 0
        self._identity = b"p" + os.urandom(8)
        #: Told of each new socket, for a caller that polls them in a loop of its own.
        self.on_socket: Callable | None = None

    def pull(self, oid: bytes, size: int, source: str, loc: list) -> None:
        if oid in self.pulls:
            return
        job = self.pulls[oid] = _Pull(oid, int(size), source, loc)
        self.store.allocate(b"transfer", oid, job.size, lambda answer: self._room(job, answer))

    def _room(self, job: _Pull, answer: list) -> None:
        if self.pulls.get(job.oid) is not job:
            self._give_back(answer)
            return
        if answer[0] not in ("arena", "file"):
            del self.pulls[job.oid]
            self.done(job.oid, None, f"no room for it on this node: {answer[1]}")
            return
        job.dest = answer
        if answer[0] == "file":
            fd = os.open(answer[1], os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
            os.close(fd)
        job.sock = self._socket(job.source)
        for _ in range(config.TRANSFER_WINDOW):
            if not self._ask(job):
                break

    def _socket(self, address: str) -> zmq.Socket:
        sock = self.sockets.get(address)
        if sock is None:
            sock = dealer(self.ctx, self._identity, address, creds=self.creds)
            self.sockets[address] = sock
            self.by_socket[sock] = address
            if self.on_socket is not None:
                self.on_socket(sock)
        return sock

    def _ask(self, job: _Pull) -> bool:
        if job.next_offset >= job.size:
            return False
        length = min(config.TRANSFER_CHUNK, job.size - job.next_offset)
        job.sock.send(encode(Msg.FETCH, job.oid, job.loc, job.next_offset, length))
        job.next_offset += length
        return True

    def poll_items(self) -> list:
        return [(sock, zmq.POLLIN) for sock in self.sockets.values()]

    def on_ready(self, sock: zmq.Socket, budget: int = 4) -> None:
        """Handle up to ``budget`` chunks that arrived on ``sock`` (a large object must not
        keep the event loop that called from its other work)."""
        while budget > 0 and sock.poll(0):
            budget -= 1
            frames = sock.recv_multipart(copy=False)
            try:
                mtype, fields = decode(frames[0].bytes)
            except ProtocolError as exc:
                log.warning("dropped a malformed transfer message: %s", exc)
                continue
            if mtype != Msg.CHUNK:
                continue
            oid, offset, error = fields
            job = self.pulls.get(oid)
            if job is None or job.dest is None:
                continue
            if error is not None:
                self._fail(job, f"the node holding it answered: {error}")
                continue
            data = frames[1].buffer if len(frames) > 1 else b""
            if not self._write(job, offset, data):
                continue
            job.received += len(data)
            self.pulled_bytes += len(data)
            if job.received >= job.size:
                self._finish(job)
            else:
                self._ask(job)

    def _write(self, job: _Pull, offset: int, data) -> bool:
        dest = job.dest
        try:
            if dest[0] == "arena":
                start = dest[1] + HEADER + offset
                if dest[3]:  # its pages exist: a copy at memory speed
                    self.store.map[start:start + len(data)] = data
                else:  # the kernel allocates them as it writes, faster than page faults
                    _pwrite_all(self.store.fd, data, start)
            else:
                fd = os.open(dest[1], os.O_WRONLY)
                try:
                    os.pwrite(fd, data, offset)
                finally:
                    os.close(fd)
        except (OSError, ValueError) as exc:
            self._fail(job, f"could not write it here: {exc}")
            return False
        return True

    def _finish(self, job: _Pull) -> None:
        del self.pulls[job.oid]
        dest = job.dest
        if dest[0] == "arena":
            offset, seal = dest[1], dest[2]
            self.store.map[offset:offset + len(seal)] = seal
            loc = [self.store.arena_path, job.size, offset, seal]
        else:
            loc = [dest[1], job.size]
        self.store.sealed(loc, job.oid)
        self.done(job.oid, loc, None)

    def _fail(self, job: _Pull, why: str) -> None:
        self.pulls.pop(job.oid, None)
        self._give_back(job.dest)
        self.done(job.oid, None, why)

    def _give_back(self, answer: list | None) -> None:
        if answer is not None and answer[0] in ("arena", "file"):
            self.store.abandon(b"transfer", answer[1])  # an offset, or a file's path

    def source_gone(self, address: str, why: str) -> None:
        """The node at ``address`` died: its pulls fail (the head rebuilds or reports)."""
        for job in [j for j in self.pulls.values() if j.source == address]:
            self._fail(job, why)
        sock = self.sockets.pop(address, None)
        if sock is not None:
            self.by_socket.pop(sock, None)
            sock.close(linger=0)

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close(linger=0)
        self.sockets.clear()
        self.by_socket.clear()


def _pwrite_all(fd: int, data, offset: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view = view[done:]
        offset += done


def fetch(sock: zmq.Socket, oid: bytes, loc: list, size: int) -> bytearray:
    """The stored bytes of ``oid`` (``size`` of them, at ``loc`` on the node ``sock`` is
    connected to), pulled in chunks: for a process with no store of its own."""
    buf = bytearray(size)
    view = memoryview(buf)
    asked = received = 0
    step = config.TRANSFER_CHUNK
    while received < size:
        while asked < size and asked - received < step * config.TRANSFER_WINDOW:
            length = min(step, size - asked)
            sock.send(encode(Msg.FETCH, oid, loc, asked, length))
            asked += length
        if not sock.poll(config.TRANSFER_TIMEOUT_S * 1000):
            raise TimeoutError(f"no part of object {oid.hex()} came in "
                               f"{config.TRANSFER_TIMEOUT_S:.0f} s")
        frames = sock.recv_multipart(copy=False)
        mtype, fields = decode(frames[0].bytes)
        if mtype != Msg.CHUNK or fields[0] != oid:
            continue
        if fields[2] is not None:
            raise FileNotFoundError(f"object {oid.hex()}: {fields[2]}")
        chunk = frames[1].buffer
        view[fields[1]:fields[1] + len(chunk)] = chunk
        received += len(chunk)
    return buf


def push(sock: zmq.Socket, oid: bytes, dest: list, data: memoryview) -> None:
    """Write ``data`` (an object's layout, not empty) into the region ``dest`` of the node
    ``sock`` is connected to, in chunks acknowledged one by one; the seal goes on last."""
    size = data.nbytes
    step = config.TRANSFER_CHUNK
    chunks = (size + step - 1) // step
    sent = acked = 0
    while acked < chunks:
        while sent < chunks and sent - acked < config.TRANSFER_WINDOW:
            start = sent * step
            end = min(start + step, size)
            sock.send_multipart((encode(Msg.PUSH, oid, dest, start, end >= size),
                                 data[start:end]))
            sent += 1
        if not sock.poll(config.TRANSFER_TIMEOUT_S * 1000):
            raise TimeoutError(f"the head took no part of object {oid.hex()} in "
                               f"{config.TRANSFER_TIMEOUT_S:.0f} s")
        mtype, fields = decode(sock.recv())
        if mtype != Msg.CHUNK or fields[0] != oid:
            continue
        if fields[2] is not None:
            raise OSError(f"the head could not store object {oid.hex()}: {fields[2]}")
        acked += 1
