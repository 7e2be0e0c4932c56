"""Supervision trees of actors, in the vocabulary of Erlang/OTP (DESIGN §6).

A supervisor is an actor that starts its children (actors, or other supervisors), watches
them, and restarts them by a **strategy** when their process dies:

- ``one_for_one``: only the child that died;
- ``one_for_all``: every child;
- ``rest_for_one``: the child that died and every child started after it.

Each child has a **restart type**: ``permanent`` (always restarted), ``transient`` (restarted
only after an abnormal exit) or ``temporary`` (never restarted). Restarts wait an exponential
**back-off**, and a supervisor allows at most ``max_restarts`` restarts within ``period``
seconds (its **intensity**): past that it stops all its children and fails itself, so its own
supervisor — or, at the top, whoever holds it — sees it die.

A restarted child is rebuilt in place, so every handle to it stays valid. Children are named
actors (``"<supervisor>/<child>"``), so they find each other by name::

    from zactor import supervision

    sup = supervision.start(
        [supervision.ChildSpec("source", Source),
         supervision.ChildSpec("sink", Sink, args=("out.txt",))],
        name="pipeline", strategy="rest_for_one", max_restarts=5, period=10.0)
    sink = sup.child("sink")                      # or zactor.get_actor("pipeline/sink")
    zactor.get(sink.write.remote("hello"))
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from zactor import _api, _state
from zactor._actor import ActorClass, ActorHandle
from zactor._client import HeadRestartedError
from zactor._remote import remote

log = logging.getLogger(__name__)

STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
RESTART_TYPES = ("permanent", "transient", "temporary")


@dataclass(frozen=True)
class ChildSpec:
    """How to start (and restart) one child actor.

    ``actor`` is a ``@zactor.remote`` class; ``options`` are its ``.options(...)`` (resources,
    ``max_concurrency``, ``max_task_retries``...).
    """

    name: str
    actor: Any
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    restart: str = "permanent"
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SupervisorSpec:
    """A child that is itself a supervisor of ``children``."""

    name: str
    children: list
    strategy: str = "one_for_one"
    max_restarts: int = 3
    period: float = 5.0
    backoff_initial: float = 0.01
    backoff_max: float = 1.0
    restart: str = "permanent"


def _validate(spec: SupervisorSpec) -> None:
    if spec.strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {spec.strategy!r}")
    if spec.max_restarts < 0 or spec.period <= 0:
        raise ValueError("max_restarts must be >= 0 and period > 0")
    if spec.backoff_initial < 0 or spec.backoff_max < spec.backoff_initial:
        raise ValueError("need 0 <= backoff_initial <= backoff_max")
    names = set()
    for child in spec.children:
        if not isinstance(child, (ChildSpec, SupervisorSpec)):
            raise TypeError(f"children must be ChildSpec or SupervisorSpec, not {child!r}")
        if child.restart not in RESTART_TYPES:
            raise ValueError(f"restart must be one of {RESTART_TYPES}, got {child.restart!r}")
        if not child.name or "/" in child.name or child.name in names:
            raise ValueError(f"child names must be unique, non-empty, without '/': "
                             f"{child.name!r}")
        names.add(child.name)
        if isinstance(child, ChildSpec) and not isinstance(child.actor, ActorClass):
            raise TypeError(f"ChildSpec {child.name!r}: actor must be a @zactor.remote class")
        if isinstance(child, SupervisorSpec):
            _validate(child)


def start(children: list, *, name: str, strategy: str = "one_for_one", max_restarts: int = 3,
          period: float = 5.0, backoff_initial: float = 0.01, backoff_max: float = 1.0,
          namespace: str | None = None) -> Supervisor:
    """Start a supervisor (an actor named ``name``) and its children; return once all
    children are started."""
    spec = SupervisorSpec(name, list(children), strategy, max_restarts, period,
                          backoff_initial, backoff_max)
    _validate(spec)
    handle = _SupervisorActor.options(name=name, namespace=namespace,
                                      max_concurrency=64).remote(spec, name)
    _api.get(handle.ready.remote())
    return Supervisor(handle, name, namespace)


def get_child(path: str, namespace: str | None = None) -> ActorHandle:
    """The handle of a supervised actor by its path, e.g. ``"pipeline/sink"`` (nested:
    ``"root/workers/w1"``)."""
    return _api.get_actor(path, namespace=namespace)


class Supervisor:
    """The driver's view of a running supervision tree."""

    def __init__(self, handle: ActorHandle, name: str, namespace: str | None) -> None:
        self.handle = handle
        self.name = name
        self.namespace = namespace

    def child(self, name: str) -> ActorHandle:
        """The handle of a direct child; it stays valid across the child's restarts."""
        return _api.get(self.handle.child.remote(name))

    def which_children(self) -> list[dict]:
        """One dict per child: ``name``, ``state`` (alive, restarting, dead...),
        ``restarts``, ``restart`` type."""
        return _api.get(self.handle.which_children.remote())

    def start_child(self, spec: ChildSpec | SupervisorSpec) -> ActorHandle:
        """Add a child to the running supervisor (OTP's ``supervisor:start_child``) and return
        its handle once it is constructed; a constructor that raises leaves no child behind and
        raises here. Its name must be new among the children."""
        return _api.get(self.handle.start_child.remote(spec))

    def terminate_child(self, name: str) -> None:
        """Stop a child for good and forget it (OTP's ``terminate_child`` then
        ``delete_child``): it is not restarted, and its name may be used again."""
        _api.get(self.handle.terminate_child.remote(name))

    def stop(self) -> None:
        """Stop every child, then the supervisor."""
        try:
            _api.get(self.handle.stop.remote(), timeout=30)
        finally:
            _api.kill(self.handle)


class _Child:
    def __init__(self, spec: ChildSpec | SupervisorSpec, handle: ActorHandle) -> None:
        self.spec = spec
        self.handle = handle
        self.actor_id: bytes = handle._actor_id
        self.restarts: collections.deque = collections.deque()
        self.removed = False


class _SupervisorCore:
    """Runs inside the supervisor actor: starts, watches and restarts the children."""

    def __init__(self, spec: SupervisorSpec, path: str) -> None:
        self.spec = spec
        self.path = path
        self.core = _state.core
        worker = _state.worker
        self.my_id: bytes = worker.actor_id
        self.namespace = worker.placement()[2]
        self.lock = threading.RLock()
        self.recent: collections.deque = collections.deque()  # restart times, for intensity
        self.stopping = False
        self.children: list[_Child] = [self._start(c) for c in spec.children]
        # Started means constructed, down the whole tree (a failing child fails the start).
        _api.get([c.handle.ready.remote() if isinstance(c.spec, SupervisorSpec)
                  else c.handle.__ray_ready__.remote() for c in self.children])
        for child in self.children:
            threading.Thread(target=self._watch, args=(child,), daemon=True,
                             name=f"zactor-watch-{child.spec.name}").start()

    def _start(self, spec: ChildSpec | SupervisorSpec) -> _Child:
        path = f"{self.path}/{spec.name}"
        common = {"name": path, "namespace": self.namespace, "_supervisor": self.my_id}
        if isinstance(spec, SupervisorSpec):
            handle = _SupervisorActor.options(max_concurrency=64, **common).remote(spec, path)
        else:
            handle = spec.actor.options(**spec.options, **common).remote(*spec.args,
                                                                         **spec.kwargs)
        return _Child(spec, handle)

    def start_child(self, spec: ChildSpec | SupervisorSpec) -> ActorHandle:
        if isinstance(spec, SupervisorSpec):
            _validate(spec)
        with self.lock:
            if any(c.spec.name == spec.name for c in self.children):
                raise ValueError(f"supervisor {self.path} already has a child {spec.name!r}")
            child = self._start(spec)
            self.children.append(child)
        try:
            _api.get(child.handle.ready.remote() if isinstance(spec, SupervisorSpec)
                     else child.handle.__ray_ready__.remote())
        except BaseException:
            self.terminate_child(spec.name)
            raise
        threading.Thread(target=self._watch, args=(child,), daemon=True,
                         name=f"zactor-watch-{spec.name}").start()
        return child.handle

    def terminate_child(self, name: str) -> None:
        with self.lock:
            for child in self.children:
                if child.spec.name == name:
                    break
            else:
                raise KeyError(f"supervisor {self.path} has no child {name!r}")
            self.children.remove(child)
            child.removed = True
        _api.kill(child.handle)

    def _watch(self, child: _Child) -> None:
        while not self.stopping and not child.removed:
            try:
                _, state, how = self.core.request("watch_actor", child.actor_id, timeout=None)
            except HeadRestartedError:
                continue  # the new head took over the child: watch it there
            except Exception:  # noqa: BLE001 - the connection is closing: we are going away
                return
            if self.stopping:
                return
            if state == "dead":  # killed for good (zactor.kill): nothing to restart
                child.removed = True
                return
            self._child_exited(child, how)

    def _child_exited(self, child: _Child, how: str) -> None:
        with self.lock:
            if child.removed:  # terminated on purpose while it was going down
                return
            normal = how == "exited with code 0"
            kind = child.spec.restart
            if kind == "temporary" or (kind == "transient" and normal):
                child.removed = True
                _api.kill(child.handle)
                return
            now = time.monotonic()
            period = self.spec.period
            for q in (self.recent, child.restarts):
                q.append(now)
                while q and now - q[0] > period:
                    q.popleft()
            if len(self.recent) > self.spec.max_restarts:
                log.warning("supervisor %s: more than %d restarts in %.1f s; giving up",
                            self.path, self.spec.max_restarts, period)
                self._give_up()
                return
            delay = min(self.spec.backoff_max,
                        self.spec.backoff_initial * 2 ** (len(child.restarts) - 1))
            if delay > 0:
                time.sleep(delay)
            for target in self._targets(child):
                self.core.request("restart_actor", target.actor_id)

    def _targets(self, child: _Child) -> list[_Child]:
        live = [c for c in self.children if not c.removed]
        if self.spec.strategy == "one_for_one":
            return [child]
        if self.spec.strategy == "one_for_all":
            return live
        index = self.children.index(child)
        return [c for c in self.children[index:] if not c.removed]

    def _stop_children(self) -> None:
        self.stopping = True
        for child in reversed(list(self.children)):  # reverse start order, as OTP does
            child.removed = True
            _api.kill(child.handle)
        self.core.request("stats")  # the head has handled the kills once it answers

    def _give_up(self) -> None:
        self._stop_children()
        os._exit(1)  # fail to our own supervisor (or to whoever holds the top one)


@remote
class _SupervisorActor:
    def __init__(self, spec: SupervisorSpec, path: str) -> None:
        self._core = _SupervisorCore(spec, path)

    def ready(self) -> bool:
        return True

    def child(self, name: str) -> ActorHandle:
        for c in self._core.children:
            if c.spec.name == name:
                return c.handle
        raise KeyError(f"supervisor {self._core.path} has no child {name!r}")

    def which_children(self) -> list[dict]:
        out = []
        for c in self._core.children:
            state, restarts = self._core.core.request("actor_state", c.actor_id)
            out.append({"name": c.spec.name, "state": state, "restarts": restarts,
                        "restart": c.spec.restart,
                        "supervisor": isinstance(c.spec, SupervisorSpec)})
        return out

    def start_child(self, spec: ChildSpec | SupervisorSpec) -> ActorHandle:
        return self._core.start_child(spec)

    def terminate_child(self, name: str) -> bool:
        self._core.terminate_child(name)
        return True

    def stop(self) -> bool:
        self._core._stop_children()
        return True
