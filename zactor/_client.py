"""A process's connection to the head: used by drivers and workers alike.

    user / executor threads                      I/O thread
    ───────────────────────                      ──────────
    send(): lock, send on the "out" DEALER ──►  head ROUTER ──► "in" DEALER: recv, dispatch:
    get(): wait on a condition  ◄────────────────  OBJECT/REPLY fill the cache and notify;
                                                   EXECUTE/CANCEL_TASK/EXIT go to the worker

Each client has two DEALER sockets with related identities (``key + b">"`` and
``key + b"<"``): any thread sends on the first under a lock, so a call costs no thread hop on
the way out; only the I/O thread reads the second. The head treats both as one client. Calls
to actors the head granted a direct route to go on a DEALER per actor, and their results come
back on the inbound socket, connected to those actors too (``routes``, see zactor._direct).
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from zactor import _refs, _serialization, config
from zactor._arg_cache import ArgCache
from zactor._direct import Routes
from zactor._object_store import StoreClient
from zactor._version import peer_versions
from zactor.comm.security import Credentials
from zactor.comm.transport import (
    POLLIN,
    dealer,
    has_message,
    recv_parts,
    send_parts,
    wait_readable,
    zmq_poll,
)
from zactor.exceptions import (
    GetTimeoutError,
    HandshakeRefusedError,
    NodeDiedError,
    ZactorError,
)
from zactor.protocol import Msg, ProtocolError, Refused, Status, decode, encode

log = logging.getLogger(__name__)

_tracker = _refs.tracker
_send = zmq.backend.Socket.send
_NO_REPLY = 0  # the request id of a tell(): its reply is dropped
# Marks a progress-bar line of zactor.experimental.tqdm_ray (its MAGIC): drawn, not printed.
_TQDM_MAGIC = "__zactor_tqdm_magic_token__"


class HeadUnreachableError(NodeDiedError):
    """The head did not answer, or its process is gone: the cluster this process used is."""


class HeadRestartedError(HeadUnreachableError):
    """The head restarted while this request waited for its answer: ask again."""


class CoreClient:
    def __init__(
        self,
        head_address: str,
        kind: str,
        info: dict | None = None,
        node_id: bytes | None = None,
        alive_check: Callable[[], bool] | None = None,
        connect_timeout: float = config.HEAD_START_TIMEOUT_S,
        on_task: Callable[[Msg, list, list], None] | None = None,
        io_thread: bool = True,
        creds: Credentials | None = None,
    ) -> None:
        self.kind = kind
        # The references this process holds are counted once, in zactor._refs, and reported
        # by its driver's or worker's connection; an observer's (zactor status, a Cluster's)
        # must not take them away from it.
        self.owns_refs = kind != "observer"
        # The head tells its TCP peers from its local ones by the case of the first byte.
        self.remote = head_address.startswith("tcp://")
        letter = kind[:1].lower() if self.remote else kind[:1].upper()
        self.key = letter.encode() + os.urandom(8)
        self.ctx = zmq.Context()
        self.creds = creds
        self.out = dealer(self.ctx, self.key + b">", head_address, creds=creds)
        self.inp = dealer(self.ctx, self.key + b"<", head_address, creds=creds)
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()  # replies to requests
        self._lock = threading.Lock()  # the object cache and who waits on it
        self._objects: dict[bytes, tuple] = {}
        self._waiters: dict[bytes, list[_Waiter]] = {}
        self._expected: set[bytes] = set()
        self._callbacks: dict[bytes, list] = {}
        self._subscribed: set[bytes] = set()
        self._dropped: collections.OrderedDict = collections.OrderedDict()
        self._replies: dict[int, tuple] = {}
        self._req_ids = itertools.count(1)
        self.shipped: set[bytes] = set()
        # Runtime environments (zactor.runtime_env._upload): the one this process's tasks
        # inherit, the pool keys of those it submitted with, and the packages it uploaded.
        self.runtime_env: dict | None = None
        self.env_keys: dict[str, tuple] = {}
        self.uploaded_packages: set[str] = set()
        self.routes = Routes(self)
        # Set before the I/O thread starts: work may arrive right behind the WELCOME.
        self.on_task = on_task
        self.on_blocked: Callable[[bool], None] | None = None
        # Workers: a signal handler may want to raise into the main thread; it must not do so
        # while that thread is half-way through a multipart send or receive. Such sections
        # count in ``critical``; a deferred interrupt runs ``on_interrupt`` when they end.
        self.critical = 0
        self.interrupt_pending = False
        self.on_interrupt: Callable[[], None] | None = None
        self.log_to_driver = True
        self._closed = False
        self._alive_check = alive_check
        self.failure: str | None = None  # why the connection is unusable, once it is
        self._last_flush = time.monotonic()
        # A cluster head may be restarted: its clients notice the reconnection (a socket
        # monitor) and introduce themselves again (see _resumed).
        self.monitor: zmq.Socket | None = None
        self.resume_info: Callable[[], dict] | None = None
        self._resuming = False
        self._next_hello = 0.0
        self._disconnected = False
        self._pending_reqs: set[int] = set()
        self._orphaned_reqs: set[int] = set()
        self._hello = (kind, info or {}, node_id)
        self.welcome = self._handshake(kind, info or {}, node_id, alive_check, connect_timeout)
        if self.welcome.get("restartable"):
            self.monitor = self.inp.get_monitor_socket(
                zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
            self._poll_items = [(self.inp, POLLIN), (self.monitor, POLLIN)]
        self.store = self._store_client(self.welcome)
        self.arg_cache = ArgCache()
        # Without an I/O thread (workers), the constructing thread reads the inbound socket
        # itself: in its main loop, and in any get/wait/request it makes (see pump()).
        self._pump_ident = None if io_thread else threading.get_ident()
        self._thread = None
        if io_thread:
            self._thread = threading.Thread(target=self._io_loop, name="zactor-io",
                                            daemon=True)
            self._thread.start()

    # -- setup -------------------------------------------------------------------------------

    def _handshake(self, kind, info, node_id, alive_check, timeout) -> dict:
        # HELLO goes on the inbound socket so the head has seen its identity before it ever
        # routes anything to it.
        info = {**info, **peer_versions()}
        self.inp.send(encode(Msg.HELLO, kind, os.getpid(), node_id, info))
        deadline = time.monotonic() + timeout
        while True:
            if self.inp.poll(50):
                try:
                    mtype, fields = decode(self.inp.recv())
                except Refused as exc:
                    self.close()
                    raise HandshakeRefusedError(f"the head refused this {kind}: {exc}") \
                        from None
                if mtype == Msg.WELCOME:
                    return fields[0]
            if alive_check is not None and not alive_check():
                self.close()
                raise HeadUnreachableError("the head process exited during startup")
            if time.monotonic() > deadline:
                self.close()
                hint = ""
                if self.remote:
                    hint = (" (is it running and reachable, and does this process have the "
                            "cluster's key? A head refuses connections without it, "
                            "silently)")
                raise HeadUnreachableError(
                    f"no answer from the head within {timeout:.0f} s{hint}")

    def _store_client(self, welcome: dict) -> StoreClient:
        store = StoreClient(*welcome.get("store") or (None, 0))
        if welcome.get("push"):  # no node on this machine: objects travel to and from one
            store.network = (self.ctx, self.creds, welcome["push"], welcome.get("push_arena"))
        return store

    # -- sending -----------------------------------------------------------------------------

    def send(self, header: bytes, frames: list | tuple = ()) -> None:
        self._send_locked(self._send_out, header, frames)

    def send_call(self, actor_id: bytes, spec: list, frames: list, direct_ok: bool,
                  return_ids: list[bytes]) -> None:
        """Send an actor call: straight to the actor when a route allows (zactor._direct)."""
        self._send_locked(self.routes.send_call, actor_id, spec, frames, direct_ok, return_ids)

    def _send_out(self, header: bytes, frames: list | tuple) -> None:
        if frames:
            send_parts(self.out, (header, *frames))
        else:
            _send(self.out, header, 0)

    def _send_locked(self, send: Callable, *args: Any) -> None:
        """Run ``send`` under the send lock, after any reference releases that must go
        first; on a worker's main thread, as a section a cancellation must not split."""
        main = threading.get_ident() == self._pump_ident
        if main:
            self.critical += 1
        try:
            with self._send_lock:
                if (_tracker.object_events or _tracker.actor_events or
                        _tracker.closed_streams) and (
                    _tracker.has_borrow or _tracker.pending() > config.REF_BATCH
                ):
                    self._flush_refs_locked()
                send(*args)
        finally:
            if main:
                self._leave_critical()

    def _leave_critical(self) -> None:
        self.critical -= 1
        if self.interrupt_pending and not self.critical:
            self.interrupt_pending = False
            if self.on_interrupt is not None:
                self.on_interrupt()

    def flush_refs(self) -> None:
        with self._send_lock:
            self._flush_refs_locked()

    def _flush_refs_locked(self) -> None:
        if not self.owns_refs:
            return
        self._last_flush = time.monotonic()
        oa, od, aa, ad, streams = _tracker.drain()
        if not (oa or od or aa or ad or streams) or self._closed:
            return
        if od:
            waiting = self.routes.waiting
            with self._lock:
                objects = self._objects
                for oid in od:
                    objects.pop(oid, None)
                    if waiting:
                        waiting.pop(oid, None)
                    self._subscribed.discard(oid)
                    self._expected.discard(oid)
                    self._dropped[oid] = None
                while len(self._dropped) > 100_000:
                    self._dropped.popitem(last=False)
        self.out.send(encode(Msg.REFS, oa, od, aa, ad, streams))

    def request(self, what: str, args: Any = None, timeout: float | None = 60.0) -> Any:
        """Ask the head something and wait for its answer."""
        return self.wait_reply(self.send_request(what, args), what, timeout)

    def send_request(self, what: str, args: Any = None) -> int:
        """Ask the head something; collect the answer later with :meth:`wait_reply`."""
        req_id = next(self._req_ids)
        self._pending_reqs.add(req_id)
        self.send(encode(Msg.REQUEST, req_id, what, args))
        return req_id

    def tell(self, what: str, args: Any = None) -> None:
        """Ask the head something whose answer nobody waits for (it is dropped on arrival)."""
        self.send(encode(Msg.REQUEST, _NO_REPLY, what, args))

    def has_reply(self, req_id: int) -> bool:
        return req_id in self._replies

    def wait_reply(self, req_id: int, what: str = "a request",
                   timeout: float | None = 60.0) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        if threading.get_ident() == self._pump_ident:
            replies = self._replies
            self._pump_until(lambda: req_id in replies, timeout)
        with self._cond:
            while req_id not in self._replies:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    self._pending_reqs.discard(req_id)
                    raise GetTimeoutError(f"the head did not answer {what!r} in {timeout} s")
                if self._closed or self.failure is not None:
                    self._check_usable()
                self._cond.wait(remaining if remaining is None else min(remaining, 1.0))
            ok, value = self._replies.pop(req_id)
        self._pending_reqs.discard(req_id)
        if not ok:
            raise _reply_error(value)
        return value

    # -- objects -----------------------------------------------------------------------------

    def store_local(self, object_id: bytes, status: int, loc, blob) -> None:
        """Cache a value this process made (``put``), so its own ``get`` needs no round trip."""
        with self._lock:
            self._objects[object_id] = (status, loc, blob)

    def expect(self, ids: list[bytes]) -> None:
        """The head will push these (results of tasks this process submitted) unasked."""
        self._expected.update(ids)

    def ensure_subscribed(self, ids) -> None:
        objects = self._objects
        subscribed = self._subscribed
        expected = self._expected
        missing = [i for i in ids
                   if i not in objects and i not in subscribed and i not in expected]
        if missing:
            subscribed.update(missing)
            for i in missing:  # wanted again after a release: its value is welcome now
                self._dropped.pop(i, None)
            self.send(encode(Msg.SUBSCRIBE, missing))

    def wait_objects(self, ids: list[bytes], num: int, timeout: float | None) -> list[bytes]:
        """Block until ``num`` of the (distinct) ``ids`` are ready or the timeout passes;
        return the ready ones, in input order."""
        objects = self._objects
        with self._lock:
            missing = [i for i in ids if i not in objects]
            need = num - (len(ids) - len(missing))
            if need <= 0 or timeout == 0:
                return [i for i in ids if i in objects]
            if self.failure is not None:
                self._check_usable()
            waiter = _Waiter(need)
            waiters = self._waiters
            for i in missing:
                lst = waiters.get(i)
                if lst is None:
                    waiters[i] = [waiter]
                else:
                    lst.append(waiter)
        blocked = False
        try:
            self.ensure_subscribed(missing)
            if self.on_blocked is not None:
                blocked = True
                self.on_blocked(True)
            if threading.get_ident() == self._pump_ident:
                done = self._pump_until(lambda: waiter.remaining <= 0, timeout)
            else:
                done = waiter.done.acquire(timeout=-1 if timeout is None else timeout)
            if not done:
                with self._lock:
                    for i in missing:
                        lst = waiters.get(i)
                        if lst is not None and waiter in lst:
                            lst.remove(waiter)
                            if not lst:
                                del waiters[i]
            if self._closed or self.failure is not None:
                self._check_usable()
        finally:
            if blocked:
                self.on_blocked(False)
        return [i for i in ids if i in objects]

    def get_entries(self, ids: list[bytes], timeout: float | None) -> list[tuple]:
        objects = self._objects
        try:
            return [objects[i] for i in ids]
        except KeyError:
            pass
        distinct = list(dict.fromkeys(ids))
        ready = self.wait_objects(distinct, len(distinct), timeout)
        if len(ready) < len(distinct):
            missing = len(distinct) - len(ready)
            raise GetTimeoutError(
                f"get timed out after {timeout} s: {missing} of {len(distinct)} objects not "
                "ready")
        return [objects[i] for i in ids]

    def decode(self, object_id: bytes, entry: tuple, attempts: int = 3) -> Any:
        """Turn a cache entry into the value, raising it if it is an error. An object whose
        file is gone is reported to the head, which rebuilds it (or explains why not)."""
        status, loc, blob = entry
        if loc is None:
            value = _serialization.loads(blob)
        elif loc[0] == "@" and self.store.local_reads:
            # Ready, but on another node: the head has this node pull it first.
            return self.decode(object_id, self._recover(object_id), attempts - 1)
        else:
            try:
                value = self.store.read(object_id, loc)
            except FileNotFoundError:  # spilled since, or lost (zactor._object_store)
                if attempts <= 0:
                    raise
                return self.decode(object_id, self._recover(object_id), attempts - 1)
        if status == Status.ERROR:
            raise value
        return value

    def _recover(self, object_id: bytes) -> tuple:
        with self._lock:
            self._objects.pop(object_id, None)
            self._expected.discard(object_id)
            self._subscribed.add(object_id)  # LOST subscribes us to the rebuilt value
            self._dropped.pop(object_id, None)
        self.send(encode(Msg.LOST, object_id))
        entry = self.get_entries([object_id], None)[0]
        if object_id not in _tracker.object_counts:  # fetched for a task argument only
            with self._lock:
                self._objects.pop(object_id, None)
        return entry

    def on_ready(self, object_id: bytes, callback: Callable[[tuple], None]) -> None:
        with self._lock:
            entry = self._objects.get(object_id)
            if entry is None:
                self._callbacks.setdefault(object_id, []).append(callback)
        if entry is not None:
            callback(entry)
        else:
            self.ensure_subscribed([object_id])

    # -- the I/O thread ----------------------------------------------------------------------

    def pump(self, timeout_ms: int) -> None:
        """Read and handle what the head sent, waiting up to ``timeout_ms`` for the first
        message; flush batched reference releases when they are due."""
        if self.monitor is None:
            if wait_readable(self.inp, timeout_ms):
                self.drain()
        else:
            for sock, _ in zmq_poll(self._poll_items, timeout_ms):
                if sock is self.monitor:
                    self._on_monitor()
                else:
                    self.drain()
            if self._resuming and time.monotonic() >= self._next_hello:
                self._send_resume_hello()
        self.flush_if_due()

    def drain(self) -> None:
        """Handle every message waiting on the inbound socket, without waiting for more."""
        inp = self.inp
        dispatch = self._dispatch
        self.critical += 1
        try:
            while True:
                try:
                    frames = recv_parts(inp)
                except zmq.Again:
                    break
                dispatch(frames)
                if not has_message(inp):
                    break
        finally:
            self._leave_critical()

    def flush_if_due(self) -> None:
        if (_tracker.object_events or _tracker.actor_events or _tracker.closed_streams) and (
            self.owns_refs and time.monotonic() - self._last_flush > config.REF_FLUSH_S
        ):
            self.flush_refs()
        if self.store.spare_since:
            self.store.expire_spare(self)

    def _pump_until(self, done: Callable[[], bool], timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        step = int(config.REF_FLUSH_S * 1000)
        while not done():
            if self._closed:
                return False
            if deadline is None:
                self.pump(step)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return done()
                self.pump(min(step, max(1, int(remaining * 1000))))
        return True

    def _io_loop(self) -> None:
        step = int(config.REF_FLUSH_S * 1000)
        alive = self._alive_check
        last_check = time.monotonic()
        ping = self.remote and self.kind != "worker"  # see config.CLIENT_PING_S
        last_ping = time.monotonic()
        while not self._closed:
            try:
                self.pump(step)
                if ping and time.monotonic() - last_ping > config.CLIENT_PING_S:
                    last_ping = time.monotonic()
                    self.tell("ping")
                if alive is not None and time.monotonic() - last_check > 0.2:
                    last_check = time.monotonic()
                    if not alive():
                        # Without this, get() on work the cluster owed would wait for ever.
                        self._fail("the head process exited: the cluster is gone")
                        break
            except zmq.ContextTerminated:
                break
            except zmq.ZMQError:
                if self._closed:
                    break
                log.exception("zactor I/O thread: socket error")
            except Exception:  # noqa: BLE001 - the I/O thread must survive a bad message
                log.exception("zactor I/O thread: error handling a message")

    # -- a restarted head --------------------------------------------------------------------

    def _on_monitor(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)["event"]
            if event == zmq.EVENT_DISCONNECTED:
                self._disconnected = True
                # Requests sent from now on wait in the socket for the next head; those
                # already sent may have died with this one.
                while True:
                    try:  # other threads add to it: copy until no add came in between
                        self._orphaned_reqs.update(tuple(self._pending_reqs))
                        break
                    except RuntimeError:
                        continue
            elif event == zmq.EVENT_CONNECTED and self._disconnected:
                self._disconnected = False
                self._resuming = True
                self._send_resume_hello()

    def _send_resume_hello(self) -> None:
        """Introduce this process again; repeated until a WELCOME answers (a restarted head
        may not know this process's node yet)."""
        kind, info, node_id = self._hello
        resume = {"actor_holds": list(_tracker.actor_counts)}
        if self.resume_info is not None:
            resume.update(self.resume_info())
        hello = {**info, **peer_versions(), "resume": resume}
        self.inp.send(encode(Msg.HELLO, kind, os.getpid(), node_id, hello))
        self._next_hello = time.monotonic() + 0.5

    def _resumed(self, welcome: dict) -> None:
        """The head answered this process's new HELLO. If it is a new head, what the old
        one owed is gone: waits for objects end in errors, pending requests raise
        HeadRestartedError, functions are shipped again."""
        self._resuming = False
        if welcome.get("session") == self.welcome.get("session"):
            self._orphaned_reqs.clear()
            return  # the same head: the connection dropped and came back, nothing lost
        log.warning("the head restarted; this %s reconnected to it", self.kind)
        old, self.welcome = self.welcome, welcome
        self.shipped.clear()
        self.routes.reset()
        with self._lock:
            missing = (set(self._waiters) | self._expected | self._subscribed |
                       set(self._callbacks)) - set(self._objects)
            self._expected.clear()
            self._subscribed.update(missing)
        if missing:
            self.send(encode(Msg.SUBSCRIBE, list(missing)))
        with self._cond:
            for req_id in list(self._orphaned_reqs & self._pending_reqs):
                self._replies[req_id] = (False, ["HeadRestarted", (
                    "the head restarted while this request waited for its answer")])
            self._orphaned_reqs.clear()
            self._cond.notify_all()
        if welcome.get("store") != old.get("store"):
            self.store = self._store_client(welcome)

    def _dispatch(self, frames: list[bytes]) -> None:
        try:
            mtype, fields = decode(frames[0])
        except ProtocolError as exc:
            log.warning("dropped a malformed message from the head: %s", exc)
            return
        if mtype == Msg.OBJECT:
            oid, status, loc = fields
            blob = frames[1] if loc is None else None
            waiting = self.routes.waiting
            if waiting:
                waiting.pop(oid, None)
            with self._lock:
                if oid in self._dropped:  # released while the value was on its way
                    del self._dropped[oid]
                    return
                if oid in self._objects:
                    # A second copy (a direct call's result, then the head's): the first
                    # stays, so this process never sees a value change under it.
                    return
                self._objects[oid] = (status, loc, blob)
                self._subscribed.discard(oid)
                self._expected.discard(oid)
                callbacks = self._callbacks.pop(oid, None)
                waiters = self._waiters.pop(oid, None)
                if waiters:
                    for w in waiters:
                        w.remaining -= 1
                        if w.remaining == 0:
                            w.done.release()
            if callbacks:
                entry = (status, loc, blob)
                for cb in callbacks:
                    try:
                        cb(entry)
                    except Exception:  # noqa: BLE001
                        log.exception("object callback failed")
        elif mtype == Msg.REPLY:
            req_id, ok, value = fields
            if req_id == _NO_REPLY:
                return
            with self._cond:
                self._replies[req_id] = (ok, value)
                self._cond.notify_all()
        elif mtype == Msg.LOG:
            if self.log_to_driver:
                stream, prefix, text = fields
                if _TQDM_MAGIC in text:  # progress bars of zactor.experimental.tqdm_ray
                    from zactor.experimental import tqdm_ray

                    text = tqdm_ray._take_progress_lines(prefix, text)
                    if not text:
                        return
                out = sys.stderr if stream == "stderr" else sys.stdout
                lines = text.splitlines()
                out.write("".join(f"{prefix} {line}\n" for line in lines))
                out.flush()
        elif mtype == Msg.ROUTE:
            self.routes.on_route(*fields)
        elif mtype == Msg.NOTICE:
            level, text = fields
            log.log(level, "%s", text)
        elif mtype == Msg.WELCOME:
            self._resumed(fields[0])
        elif self.on_task is not None:
            self.on_task(mtype, fields, frames)

    # -- teardown ----------------------------------------------------------------------------

    def _fail(self, why: str) -> None:
        """Wake every waiting get/wait/request: they raise HeadUnreachableError(why)."""
        self.failure = why
        with self._cond:
            self._cond.notify_all()
        with self._lock:
            for waiters in self._waiters.values():
                for w in waiters:
                    if w.remaining > 0:
                        w.remaining = 0
                        w.done.release()
            self._waiters.clear()

    def _check_usable(self) -> None:
        if self.failure is not None:
            raise HeadUnreachableError(self.failure)
        if self._closed:
            raise HeadUnreachableError("the connection to the head is closed")

    def close_outbound(self, linger_ms: int) -> None:
        """Close the sending socket, waiting up to ``linger_ms`` for what it holds to leave:
        for a process about to exit without a GOODBYE (its exit is the message)."""
        with self._send_lock:
            self.out.close(linger=linger_ms)

    def close(self, goodbye: tuple | None = None) -> None:
        if self._closed:
            return
        if goodbye is not None:
            try:
                with self._send_lock:
                    self._flush_refs_locked()
                    self.out.send(encode(Msg.GOODBYE, *goodbye))
            except zmq.ZMQError:
                pass
        self._closed = True
        self._fail(self.failure or "the connection to the head is closed")
        thread = getattr(self, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)
        with self._send_lock:
            if self.monitor is not None:
                self.inp.disable_monitor()
                self.monitor.close(linger=0)
            # Give the GOODBYE (and last reference releases) a moment to leave.
            self.out.close(linger=1000 if goodbye is not None else 0)
            self.ctx.destroy(linger=0)
        store = getattr(self, "store", None)
        if store is not None:
            store.close()


class _Waiter:
    """One blocked ``get``/``wait``: released by the I/O thread when enough objects arrived."""

    __slots__ = ("remaining", "done")

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining
        self.done = threading.Lock()
        self.done.acquire()


def _reply_error(value: Any) -> Exception:
    if isinstance(value, list) and len(value) == 2:
        kind, message = value
        if kind == "ValueError":
            return ValueError(message)
        if kind == "ActorNameTakenError":
            from zactor.exceptions import ActorNameTakenError

            return ActorNameTakenError(message)
        if kind == "TypeError":
            return TypeError(message)
        if kind == "HeadRestarted":
            return HeadRestartedError(message)
    return ZactorError(str(value))
