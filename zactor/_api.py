"""The core API functions: init/shutdown, get/put/wait, kill/cancel, actors by name, info."""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
import time
import warnings
from typing import Any

from zactor import _refs, _state, config
from zactor._actor import ActorHandle
from zactor._client import CoreClient
from zactor._generator import ObjectRefGenerator
from zactor._ids import put_object_id
from zactor._object_ref import ObjectRef
from zactor._serialization import serialize
from zactor._session import EmbeddedCluster, detect_gpus, spill_root_from
from zactor._tables import Row
from zactor.protocol import Msg, encode

log = logging.getLogger(__name__)

_init_lock = threading.RLock()

# Ray's init keywords that have no meaning here; accepted so Ray programs run unchanged.
_IGNORED_INIT_KWARGS = frozenset({
    "configure_logging", "logging_format", "log_to_driver", "_temp_dir", "_system_config",
    "_metrics_export_port", "local_mode", "job_config", "storage", "_node_ip_address",
    "_enable_object_reconstruction", "_plasma_directory", "logging_config", "_skip_env_hook",
})


class DriverState:
    def __init__(self, namespace: str, cluster: EmbeddedCluster | None, job_id: str) -> None:
        self.namespace = namespace
        self.cluster = cluster
        self.job_id = job_id
        self.warned_infeasible: set = set()
        self.address = cluster.address if cluster is not None else None


def init(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    resources: dict[str, float] | None = None,
    object_store_memory: int | None = None,
    namespace: str | None = None,
    ignore_reinit_error: bool = False,
    log_to_driver: bool = True,
    logging_level: int = logging.WARNING,
    runtime_env: dict | None = None,
    include_dashboard: bool | None = None,
    dashboard_host: str = config.DASHBOARD_HOST,
    dashboard_port: int | None = None,
    **kwargs: Any,
) -> ClusterContext:
    """Start (or join) a cluster and connect this process to it as a driver.

    With no ``address`` it starts an embedded local cluster: a head, a node agent and one warm
    worker per logical CPU (``num_cpus`` overrides). Returns a dict describing the cluster,
    with the ``dashboard_url`` of its dashboard (None when it has none).

    The dashboard is served on ``dashboard_host:dashboard_port`` (127.0.0.1:8265, or the
    next free port, by default) when ``include_dashboard`` is True, or None and the
    ``dashboard`` extra is installed; its process starts when the page is first opened.

    Example::

        import zactor
        zactor.init(num_cpus=4)
    """
    unknown = sorted(set(kwargs) - _IGNORED_INIT_KWARGS)
    if unknown:
        raise TypeError(f"init() got unexpected keyword argument(s): {', '.join(unknown)}")
    from zactor.runtime_env import _spec

    env = _spec.validate(runtime_env)
    with _init_lock:
        if _state.core is not None:
            if ignore_reinit_error:
                return _context_info()
            raise RuntimeError(
                "Maybe you called zactor.init twice by accident? This error can be suppressed "
                "by passing in 'ignore_reinit_error=True' or by calling 'zactor.shutdown()' "
                "prior to 'zactor.init()'.")
        address = address or os.environ.get("ZACTOR_ADDRESS")
        if address not in (None, "local"):
            if not isinstance(address, str):
                raise TypeError(f"address must be a string, got {address!r}")
            info = _connect(address, namespace, log_to_driver)
            _job_runtime_env(env)
            return info
        for key, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 0):
                raise ValueError(f"{key} must be a non-negative integer, got {value!r}")
        if object_store_memory is not None and (isinstance(object_store_memory, bool) or
                                                not isinstance(object_store_memory, int) or
                                                object_store_memory <= 0):
            raise ValueError(f"object_store_memory must be a positive number of bytes, got "
                             f"{object_store_memory!r}")
        cpus = (os.cpu_count() or 1) if num_cpus is None else num_cpus
        gpus = detect_gpus() if num_gpus is None else num_gpus
        spill_root = spill_root_from(kwargs.get("_system_config"))
        from zactor import dashboard as _dashboard

        dashboard = _dashboard.spec(include_dashboard, dashboard_host, dashboard_port)
        cluster = EmbeddedCluster(cpus, gpus, resources, object_store_memory, logging_level,
                                  spill_root, dashboard)
        try:
            ns = namespace or _anonymous_namespace()
            core = CoreClient(cluster.address, "driver",
                              info={"pid": os.getpid(), "namespace": ns},
                              alive_check=cluster.alive)
        except BaseException:
            cluster.stop()
            raise
        core.log_to_driver = log_to_driver
        _state.core = core
        _state.driver = DriverState(ns, cluster, cluster.session)
        _job_runtime_env(env)
        return _context_info()


def _job_runtime_env(env: dict) -> None:
    """Give this driver's tasks and actors their environment: ``init``'s, merged with that
    of the job this driver runs as (uploaded already by who submitted it). On a bad one,
    init fails and leaves nothing connected."""
    from zactor.runtime_env import _spec, _upload

    job = json.loads(os.environ.get("ZACTOR_RUNTIME_ENV") or "{}") \
        if os.environ.get("ZACTOR_JOB_ID") else {}
    if not env and not job:
        return
    core = _state.core
    try:
        core.runtime_env = _upload.resolve(core, _spec.merge_job(job, env)) or None
    except BaseException:
        shutdown()  # what init started stops, as on any error
        raise


def _anonymous_namespace() -> str:
    """A fresh namespace per driver, as Ray gives each job one."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _connect(address: str, namespace: str | None, log_to_driver: bool) -> ClusterContext:
    """Join a running cluster as one more driver: ``tcp://HOST:PORT`` (encrypted, with the
    cluster key), ``ipc://...`` or ``"auto"`` (this user's newest cluster on this machine)."""
    from zactor import _registry
    from zactor._session import host_id

    target, creds = _registry.resolve(address)
    if target.startswith("ipc://") and not os.path.exists(target[len("ipc://"):]):
        raise ConnectionError(f"no zactor head is listening at {target}")
    cwd = os.getcwd()
    ns = namespace or _anonymous_namespace()
    info = {"pid": os.getpid(), "namespace": ns, "host_id": host_id(),
            "sys_path": [os.path.abspath(p) if p else cwd for p in sys.path],
            "job_id": os.environ.get("ZACTOR_JOB_ID")}
    core = CoreClient(target, "driver", info=info, connect_timeout=10.0, creds=creds)
    core.log_to_driver = log_to_driver
    _state.core = core
    _state.driver = DriverState(ns, None, core.welcome["session"])
    _state.driver.address = target
    return _context_info()


class ClusterContext(Row):
    """What ``init`` returns: a dict (``ctx["dashboard_url"]``) whose keys are also
    attributes (``ctx.dashboard_url``), as Ray's context allows both; ``with zactor.init():``
    shuts down on leaving the block, as Ray's does."""

    __slots__ = ()

    @property
    def address_info(self) -> dict:
        """Ray's name for the addresses: the head's, and the dashboard's as ``webui_url``."""
        return {"address": self["address"], "webui_url": self["dashboard_url"],
                "session_dir": self["session"]}

    def __enter__(self) -> ClusterContext:
        return self

    def __exit__(self, *exc: object) -> None:
        shutdown()

    def disconnect(self) -> None:
        """Ray's name for ``zactor.shutdown()`` from a context."""
        shutdown()


def _context_info() -> ClusterContext:
    core = _state.core
    driver = _state.driver
    return ClusterContext({
        "address": driver.address if driver else None,
        "session": core.welcome.get("session") if core else None,
        "namespace": driver.namespace if driver else None,
        "dashboard_url": core.welcome.get("dashboard_url") if core else None,
        "python_version": "{}.{}.{}".format(*sys.version_info[:3]),
    })


def is_initialized() -> bool:
    """True once ``init`` has connected this process to a cluster."""
    return _state.core is not None


def shutdown() -> None:
    """Disconnect; an embedded cluster stops: every process ends, every object file goes."""
    with _init_lock:
        core = _state.core
        driver = _state.driver
        if core is None or _state.worker is not None:
            return
        _state.core = None
        _state.driver = None
        _state.shut_down = True
        stop_cluster = driver is not None and driver.cluster is not None
        metrics = sys.modules.get("zactor.util.metrics")
        if metrics is not None:  # what it recorded since its last report goes first
            metrics._flush(core)
        core.close(goodbye=(stop_cluster,))
        if stop_cluster:
            driver.cluster.stop()
        _refs.tracker.clear()


def _shutdown_at_exit() -> None:
    """At interpreter exit: let the work this driver started finish for a moment (its output
    reaches the terminal first, as with Ray), then shut down."""
    c = _state.core
    if c is not None and _state.worker is None and config.EXIT_GRACE_S > 0:
        deadline = time.monotonic() + config.EXIT_GRACE_S
        try:
            while c.request("outstanding", timeout=config.EXIT_GRACE_S) and \
                    time.monotonic() < deadline:
                time.sleep(0.01)
        except Exception:  # noqa: BLE001 - the cluster is gone already: nothing to wait for
            pass
    shutdown()


atexit.register(_shutdown_at_exit)


def core() -> CoreClient:
    """The current connection, starting an embedded cluster on first use (as Ray does).

    After a ``shutdown``, only the main thread starts one so: a library's background
    thread (a router's retry, a metrics report) that races the shutdown must not start a
    new cluster that nobody will stop."""
    c = _state.core
    if c is None:
        if _state.shut_down and threading.current_thread() is not threading.main_thread():
            raise RuntimeError("zactor is not initialized (it was shut down); this thread "
                               "will not start a new cluster: call zactor.init() first")
        init()
        c = _state.core
    return c


def get(object_refs: ObjectRef | list[ObjectRef], *, timeout: float | None = None) -> Any:
    """Wait for and return the value(s) of one ObjectRef or a list of them.

    A remote exception is re-raised as a ``TaskError`` that is also an instance of its
    original class; ``timeout`` (seconds) raises ``GetTimeoutError`` and does not cancel.

    Example::

        assert zactor.get([square.remote(i) for i in range(3)]) == [0, 1, 4]
    """
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be None or >= 0, got {timeout}")
    if type(object_refs) is ObjectRef:
        c = core()
        oid = object_refs._id
        return c.decode(oid, c.get_entries([oid], timeout)[0])
    if isinstance(object_refs, ObjectRefGenerator):
        return object_refs  # as Ray does: iterate it for the values' refs
    if not isinstance(object_refs, list):
        raise TypeError(
            f"get() expects an ObjectRef or a list of ObjectRefs, got "
            f"{type(object_refs).__name__}")
    for ref in object_refs:
        if not isinstance(ref, ObjectRef):
            raise TypeError(
                f"get() expects a list of ObjectRefs, but it contains a "
                f"{type(ref).__name__}")
    if not object_refs:
        return []
    c = core()
    ids = [r._id for r in object_refs]
    entries = c.get_entries(ids, timeout)
    return [c.decode(oid, e) for oid, e in zip(ids, entries, strict=False)]


def put(value: Any) -> ObjectRef:
    """Store ``value`` in the object store; return a reference to it.

    Large values (above ``ZACTOR_INLINE_OBJECT_MAX``) go to a shared-memory file; a numpy
    array read back with ``get`` is then a zero-copy read-only view.
    """
    if isinstance(value, ObjectRef):
        raise TypeError("Calling 'put' on an ObjectRef is not allowed. If you really want to "
                        "do this, you can wrap the ObjectRef in a list and call 'put' on it.")
    c = core()
    try:
        ser = serialize(value)
    except Exception as exc:  # noqa: BLE001
        raise TypeError(f"Could not serialize the value given to put() "
                        f"({type(value).__name__}): {type(exc).__name__}: {exc}") from exc
    return store(c, ser)


def store(c: CoreClient, ser) -> ObjectRef:
    """Register a serialized value as a new object owned by this process."""
    return store_as(c, put_object_id(), ser)


def store_as(c: CoreClient, oid: bytes, ser, status: int = 0) -> ObjectRef:
    """Register a serialized value as object ``oid``, owned by this process (``status`` 1:
    the value is an error that ``get`` raises)."""
    ref = ObjectRef(oid)
    if ser.is_large:
        loc = c.store.write(c, oid, ser)
        if c.store.local_reads:  # else its get() fetches it back from the cluster
            c.store_local(oid, status, loc, None)
        c.send(encode(Msg.PUT, oid, loc, ser.contained, ser.contained_actors, status))
    else:
        blob = ser.to_blob()
        c.store_local(oid, status, None, blob)
        c.send(encode(Msg.PUT, oid, None, ser.contained, ser.contained_actors, status),
               (blob,))
    return ref


def wait(
    object_refs: list[ObjectRef | ObjectRefGenerator],
    *,
    num_returns: int = 1,
    timeout: float | None = None,
    fetch_local: bool = True,
) -> tuple[list, list]:
    """Return ``(ready, not_ready)`` once ``num_returns`` refs are ready or ``timeout`` passes.

    Both lists keep the input order; ``ready`` holds at most ``num_returns`` refs. An
    ``ObjectRefGenerator`` is ready when ``next`` on it would not block.
    """
    if not isinstance(object_refs, (list, tuple)):
        raise TypeError(f"wait() expects a list of ObjectRefs, got {type(object_refs).__name__}")
    gens = False
    for ref in object_refs:
        if isinstance(ref, ObjectRefGenerator):
            gens = True
        elif not isinstance(ref, ObjectRef):
            raise TypeError(f"wait() expects a list of ObjectRefs, but it contains a "
                            f"{type(ref).__name__}")
    if gens:
        return _wait_with_generators(list(object_refs), num_returns, timeout)
    ids = [r._id for r in object_refs]
    if len(set(ids)) != len(ids):
        raise ValueError("Wait requires a list of unique object refs.")
    if isinstance(num_returns, bool) or not isinstance(num_returns, int) or num_returns < 0:
        raise ValueError(f"Invalid number of objects to return {num_returns!r}.")
    if num_returns > len(ids):
        raise ValueError(f"num_returns ({num_returns}) cannot be greater than the number of "
                         f"object refs provided ({len(ids)}).")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be None or >= 0, got {timeout}")
    if not ids:
        return [], []
    ready_ids = set(core().wait_objects(ids, num_returns, timeout)[:num_returns])
    ready = [r for r in object_refs if r._id in ready_ids]
    rest = [r for r in object_refs if r._id not in ready_ids]
    return ready, rest


def _wait_with_generators(waitables: list, num_returns: int, timeout: float | None) -> tuple:
    if len({id(w) for w in waitables}) != len(waitables):
        raise ValueError("Wait requires a list of unique object refs.")
    if num_returns > len(waitables):
        raise ValueError(f"num_returns ({num_returns}) cannot be greater than the number of "
                         f"object refs provided ({len(waitables)}).")
    c = core()
    deadline = None if timeout is None else time.monotonic() + timeout

    def is_ready(w) -> bool:
        return w.next_ready() if isinstance(w, ObjectRefGenerator) else w._id in c._objects

    while True:
        ready = [w for w in waitables if is_ready(w)][:num_returns]
        left = None if deadline is None else deadline - time.monotonic()
        if len(ready) >= num_returns or (left is not None and left <= 0):
            break
        awaited = [w._id for w in waitables if isinstance(w, ObjectRef)]
        for w in waitables:
            if isinstance(w, ObjectRefGenerator):
                awaited.extend(w._awaited())
        awaited = [i for i in dict.fromkeys(awaited) if i not in c._objects]
        if not awaited:
            break
        c.wait_objects(awaited, 1, left)  # something changed, or the time is up
    picked = {id(w) for w in ready}
    return ready, [w for w in waitables if id(w) not in picked]


def kill(actor: ActorHandle, *, no_restart: bool = True) -> None:
    """Kill an actor's process at once; its pending and later calls raise ActorDiedError."""
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"kill() expects an actor handle, got {type(actor).__name__}")
    client = core()
    # This process's later calls must reach the head after the kill, not the doomed process.
    client.routes.drop(actor._actor_id)
    client.send(encode(Msg.KILL_ACTOR, actor._actor_id, bool(no_restart)))


def cancel(object_ref: ObjectRef | ObjectRefGenerator, *, force: bool = False,
           recursive: bool = True) -> None:
    """Cancel the task that makes ``object_ref``; ``get`` then raises TaskCancelledError.

    A queued task is dropped at once; a running one is interrupted (``force=True`` kills its
    worker). ``recursive`` also cancels the tasks it submitted. Cancelling an
    ``ObjectRefGenerator`` stops its generator: the next item raises TaskCancelledError.
    """
    if isinstance(object_ref, ObjectRefGenerator):
        object_ref = object_ref.completed()
    if not isinstance(object_ref, ObjectRef):
        raise TypeError(f"cancel() expects an ObjectRef, got {type(object_ref).__name__}")
    core().send(encode(Msg.CANCEL, object_ref._id, bool(force), bool(recursive)))


def current_namespace() -> str:
    if _state.driver is not None:
        return _state.driver.namespace
    worker = _state.worker
    placement = worker.placement() if worker is not None else None
    return placement[2] if placement else ""


def get_actor(name: str, namespace: str | None = None) -> ActorHandle:
    """The handle of the named actor; ``ValueError`` if there is none in the namespace."""
    if not isinstance(name, str) or not name:
        raise ValueError("Please supply a non-empty actor name")
    ns = namespace if namespace is not None else current_namespace()
    actor_id, meta = core().request("get_actor", [name, ns])
    return ActorHandle(actor_id, meta, _owned=True)


def cluster_resources() -> dict[str, float]:
    """Total resources of the live nodes, e.g. ``{"CPU": 8.0, "memory": ...}``."""
    return core().request("cluster_resources")


def available_resources() -> dict[str, float]:
    """Resources not currently held by running tasks and actors."""
    return core().request("available_resources")


def nodes() -> list[dict]:
    """One dict per node: ``NodeID``, ``Alive``, ``NodeManagerAddress``, ``Resources``."""
    return core().request("nodes")


def warn_if_infeasible(what: str, req: dict[str, float]) -> None:
    """Warn (once per request shape) when no node could ever run ``req``, as Ray does."""
    c = _state.core
    if c is None:
        return
    totals = c.welcome.get("resources") or {}
    if all(totals.get(k, 0.0) + 1e-9 >= v for k, v in req.items()):
        return
    totals = c.welcome["resources"] = cluster_resources()  # nodes may have joined since
    if all(totals.get(k, 0.0) + 1e-9 >= v for k, v in req.items()):
        return
    key = (what, tuple(sorted(req.items())))
    driver = _state.driver
    seen = driver.warned_infeasible if driver is not None else set()
    if key in seen:
        return
    seen.add(key)
    msg = (f"{what} requests {req}, which no node in the cluster can provide "
           f"(cluster total: { {k: totals[k] for k in totals if not k.startswith('node:')} }). "
           "It stays pending until a node that can run it joins.")
    log.warning(msg)
    warnings.warn(msg, UserWarning, stacklevel=4)

