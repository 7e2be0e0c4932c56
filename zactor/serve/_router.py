"""Routing requests to a deployment's replicas, in every process that holds a handle.

Power of two choices on the number of requests this router has in flight to each replica,
never more than ``max_ongoing_requests`` on one; requests that find every replica full wait
here, in a queue bounded by ``max_queued_requests`` (past it: BackPressureError, HTTP 503).
A request waiting here has not started anywhere, so when its replica set changes under it,
it just goes to another replica.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import random
import threading
import time
import uuid
from typing import Any

import zactor
from zactor.exceptions import ActorDiedError, ActorUnavailableError
from zactor.serve import _longpoll, config
from zactor.serve.exceptions import BackPressureError, DeploymentUnavailableError

log = logging.getLogger(__name__)


class Request:
    """One call through a router: what to call and the futures its caller waits on."""

    __slots__ = ("kind", "method", "args", "kwargs", "ref", "result", "slot")

    def __init__(self, kind: str, method: str, args: tuple, kwargs: dict) -> None:
        self.kind = kind  # "call" (a handle) or "http" (the proxy)
        self.method = method
        self.args = args
        self.kwargs = kwargs
        self.ref: concurrent.futures.Future = concurrent.futures.Future()  # its ObjectRef
        self.result: concurrent.futures.Future = concurrent.futures.Future()
        self.slot: _Slot | None = None

    def fail(self, exc: BaseException) -> None:
        if not self.ref.done():
            self.ref.set_exception(exc)
        if not self.result.done():
            self.result.set_exception(exc)


class _Slot:
    __slots__ = ("tag", "handle", "call", "http", "in_flight", "suspect_until", "retired")

    def __init__(self, tag: str, handle: Any) -> None:
        self.tag = tag
        self.handle = handle
        self.call = handle.handle_request  # looked up once: the hot path calls these
        self.http = handle.handle_http
        self.in_flight = 0
        self.suspect_until = 0.0
        self.retired = False


class Router:
    def __init__(self, app: str, deployment: str) -> None:
        self.app = app
        self.deployment = deployment
        self.id = uuid.uuid4().hex
        self.lock = threading.Lock()
        self.slots: list[_Slot] = []
        self.by_tag: dict[str, _Slot] = {}
        self.queue: collections.deque[Request] = collections.deque()
        self.max_ongoing = 1
        self.queue_bound = config.DEFAULT_MAX_QUEUED_REQUESTS
        self.autoscaling = False
        self.gone: str | None = None
        self.poll = _longpoll.get()
        self.controller = self.poll.controller
        self.poll.watch(("replicas", app, deployment), self._update)

    # -- the hot path ---------------------------------------------------------------------

    def submit(self, req: Request) -> None:
        with self.lock:
            if self.gone is not None:
                req.fail(DeploymentUnavailableError(self.gone))
                return
            slot = self._choose()
            if slot is None:
                if len(self.queue) >= self.queue_bound:
                    req.fail(BackPressureError(len(self.queue), self.queue_bound,
                                               self.deployment))
                    return
                self.queue.append(req)
                return
            slot.in_flight += 1
        self._send(slot, req)

    def _choose(self) -> _Slot | None:
        slots = self.slots
        n = len(slots)
        if n == 0:
            return None
        limit = self.max_ongoing
        if n == 1:
            s = slots[0]
            if s.in_flight < limit and s.suspect_until == 0.0:
                return s
            return self._first_free(limit)
        a, b = random.sample(slots, 2)
        best = a if a.in_flight <= b.in_flight else b
        if best.in_flight < limit and best.suspect_until == 0.0:
            return best
        return self._first_free(limit)

    def _first_free(self, limit: int) -> _Slot | None:
        now = time.monotonic()
        free = None
        for s in self.slots:
            if s.suspect_until and s.suspect_until < now:
                s.suspect_until = 0.0
            if s.in_flight < limit and s.suspect_until == 0.0 and (
                    free is None or s.in_flight < free.in_flight):
                free = s
        return free

    def _send(self, slot: _Slot, req: Request) -> None:
        req.slot = slot
        try:
            method = slot.http if req.kind == "http" else slot.call
            ref = method.remote(req.method, *req.args, **req.kwargs)
        except Exception as exc:  # noqa: BLE001 - e.g. an argument that does not pickle
            with self.lock:
                slot.in_flight -= 1
            req.fail(exc)
            self._dispatch_queued()
            return
        req.ref.set_result(ref)
        ref.future().add_done_callback(lambda fut: self._done(slot, req, fut))

    def _done(self, slot: _Slot, req: Request, fut: concurrent.futures.Future) -> None:
        exc = fut.exception()
        retry = False
        with self.lock:
            slot.in_flight -= 1
            if isinstance(exc, (ActorDiedError, ActorUnavailableError)):
                slot.suspect_until = time.monotonic() + config.SUSPECT_S
                # A replica the controller retired is killed only once drained: a call that
                # finds it killed was never started there.
                retry = slot.retired and isinstance(exc, ActorDiedError) and \
                    "killed" in str(exc)
        if req.result.done():  # cancelled meanwhile
            pass
        elif retry and zactor.is_initialized():
            req.ref = concurrent.futures.Future()
            self.submit(req)
        elif exc is not None:
            req.result.set_exception(exc)
        else:
            req.result.set_result(fut.result())
        self._dispatch_queued()

    def _dispatch_queued(self) -> None:
        if not self.queue or not zactor.is_initialized():
            return
        ready = []
        with self.lock:
            while self.queue:
                slot = self._choose()
                if slot is None:
                    break
                req = self.queue.popleft()
                if req.result.done():  # cancelled while it waited
                    continue
                slot.in_flight += 1
                ready.append((slot, req))
        for slot, req in ready:
            self._send(slot, req)

    # -- routing updates from the controller ------------------------------------------------

    def _update(self, value: Any) -> None:
        failed: list[Request] = []
        with self.lock:
            if value is None:
                self.gone = (f"Deployment {self.deployment!r} of application {self.app!r} "
                             "does not exist (it was deleted, or Serve shut down)")
                failed = list(self.queue)
                self.queue.clear()
                for slot in self.slots:
                    slot.retired = True
                self.slots = []
            else:
                self.gone = None
                self.max_ongoing = value["max_ongoing_requests"]
                self.queue_bound = value["queue_bound"]
                self.autoscaling = value["autoscaling"]
                slots = []
                seen = set()
                for tag, handle in value["replicas"]:
                    slot = self.by_tag.get(tag)
                    if slot is None:
                        slot = self.by_tag[tag] = _Slot(tag, handle)
                    slot.retired = False
                    slot.suspect_until = 0.0  # the controller says it runs
                    slots.append(slot)
                    seen.add(tag)
                for tag in list(self.by_tag):
                    if tag not in seen:
                        self.by_tag.pop(tag).retired = True
                self.slots = slots
        for req in failed:
            req.fail(DeploymentUnavailableError(self.gone))
        if self.autoscaling:
            _metrics.add(self)
        self._dispatch_queued()

    def load(self) -> int:
        """Requests this router holds for the deployment: queued and in flight."""
        return len(self.queue) + sum(s.in_flight for s in self.by_tag.values())


class _Metrics:
    """Tells the controller how loaded each autoscaling deployment's routers are."""

    def __init__(self) -> None:
        self.routers: dict[str, Router] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def add(self, router: Router) -> None:
        with self.lock:
            self.routers[router.id] = router
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, daemon=True,
                                               name="zactor-serve-metrics")
                self.thread.start()

    def _run(self) -> None:
        last: dict[str, int] = {}
        while True:
            time.sleep(config.METRICS_PUSH_S)
            with self.lock:
                # After shutdown a call would start a new cluster (as Ray's API does): stop.
                if not self.routers or not zactor.is_initialized():
                    self.routers.clear()
                    self.thread = None
                    return
                routers = list(self.routers.values())
            for router in routers:
                if router.gone is not None:
                    continue
                load = router.load()
                if load or last.get(router.id):
                    try:
                        router.controller.record_handle_metrics.remote(
                            router.app, router.deployment, router.id, load)
                    except Exception:  # noqa: BLE001 - shutting down
                        with self.lock:
                            self.routers.clear()
                            self.thread = None
                        return
                last[router.id] = load


_metrics = _Metrics()
_routers: dict[tuple, Router] = {}
_routers_lock = threading.Lock()


def get(app: str, deployment: str) -> Router:
    """This process's router for a deployment (made on first use)."""
    key = (app, deployment)
    router = _routers.get(key)
    if router is not None and router.poll is _longpoll._poll and not router.poll.closed:
        return router
    with _routers_lock:
        router = _routers.get(key)
        if router is None or router.poll is not _longpoll._poll or router.poll.closed:
            router = _routers[key] = Router(app, deployment)
        return router


def reset() -> None:
    with _routers_lock:
        _routers.clear()
    with _metrics.lock:
        _metrics.routers.clear()
    _longpoll.reset()
