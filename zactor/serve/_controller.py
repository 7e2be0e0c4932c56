"""The Serve controller: one detached actor that owns every application. A reconcile loop
moves each deployment toward its target — replicas started under the deployment's
supervisor, health-checked, replaced, rolled over to new code, scaled — and publishes the
routing tables that routers and the proxy long-poll."""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
import uuid
from typing import Any

import zactor
from zactor import supervision
from zactor.exceptions import ActorDiedError, ActorUnavailableError, TaskError
from zactor.serve import config
from zactor.serve._replica import Replica
from zactor.serve.config import DeploymentConfig
from zactor.serve.schema import ApplicationStatus as AS
from zactor.serve.schema import DeploymentStatus as DS
from zactor.serve.schema import ReplicaState as RS

log = logging.getLogger(__name__)


_RETIRE_FIRST = {RS.STARTING: 0, RS.UPDATING: 1, RS.RECOVERING: 2, RS.RUNNING: 3}


def _retire_order(r: _Replica) -> int:
    """Replicas that serve nothing yet go first when some must go."""
    return _RETIRE_FIRST[r.state]


_UNPUBLISHED = object()  # a deployment's table before its first publication


def _supervisor(app: str, deployment: str) -> supervision.Supervisor:
    """A deployment's replicas' supervisor (a new name each time: an old one may still be
    going away)."""
    return supervision.start(
        [], name=f"SERVE_REPLICAS::{app}#{deployment}#{uuid.uuid4().hex[:6]}",
        namespace=config.NAMESPACE, strategy="one_for_one", max_restarts=50, period=60.0,
        backoff_max=1.0)


class _Replica:
    def __init__(self, tag: str, version: str, start: Any) -> None:
        self.tag = tag
        self.version = version
        self.state = RS.STARTING
        self.handle: Any = None
        self.start = start  # future of the supervisor's start_child
        self.reconf: Any = None
        self.reconf_version: int | None = None
        self.config_version: int | None = None
        self.stats: Any = None
        self.stats_sent = 0.0
        self.next_stats = 0.0
        self.health: Any = None
        self.health_sent = 0.0
        self.next_health = 0.0
        self.drain: Any = None
        self.drain_deadline = 0.0
        self.supervisor: supervision.Supervisor | None = None  # the one that started it


class _Deployment:
    def __init__(self, app: str, name: str, spec: dict, supervisor: supervision.Supervisor):
        self.app = app
        self.name = name
        self.supervisor = supervisor
        self.replicas: dict[str, _Replica] = {}
        self.config_version = 0
        self.failed: str | None = None
        self.deleting = False
        self.samples: collections.deque = collections.deque()
        self.metrics: dict[str, tuple[float, int]] = {}
        self.scale_since: float | None = None
        self.scale_direction = 0
        self.trigger = "CONFIG_UPDATE_STARTED"
        self.published: Any = _UNPUBLISHED
        self.apply(spec)
        auto = self.config.autoscaling_config
        self.target = self.config.num_replicas if auto is None else (
            auto.initial_replicas if auto.initial_replicas is not None else auto.min_replicas)

    def apply(self, spec: dict) -> None:
        cfg: DeploymentConfig = spec["config"]
        old = getattr(self, "config", None)
        self.blob = spec["blob"]
        self.version = spec["version"]
        self.config = cfg
        self.failed = None
        if old is not None:
            if cfg.user_config != old.user_config:
                self.config_version += 1
            if cfg.autoscaling_config is None:
                self.target = cfg.num_replicas
            else:
                a = cfg.autoscaling_config
                self.target = min(max(self.target, a.min_replicas), a.max_replicas)
            self.trigger = "CONFIG_UPDATE_STARTED"

    def table(self) -> dict:
        return {"replicas": [(r.tag, r.handle) for r in self.replicas.values()
                             if r.state == RS.RUNNING],
                "max_ongoing_requests": self.config.max_ongoing_requests,
                "queue_bound": self.config.queue_bound,
                "autoscaling": self.config.autoscaling_config is not None}


class _App:
    def __init__(self, name: str) -> None:
        self.name = name
        self.route_prefix: str | None = None
        self.ingress = ""
        self.deployments: dict[str, _Deployment] = {}
        self.deleting = False
        self.deployed_at = 0.0
        self.reached_running = False


@zactor.remote
class Controller:
    def __init__(self, http_options: dict, logging_config: dict) -> None:
        self.http_options = http_options
        self.logging_config = logging_config
        self.lock = threading.RLock()
        self.cond = threading.Condition()
        self.values: dict[tuple, Any] = {("routes",): {}}
        self.versions: dict[tuple, int] = {("routes",): 1}
        self.kicked: set[str] = set()
        self.apps: dict[str, _App] = {}
        self.proxy: Any = None
        self.address: tuple[str, int] | None = None
        self.stopping = False
        threading.Thread(target=self._loop, daemon=True, name="zactor-serve-control").start()

    # -- start ---------------------------------------------------------------------------

    def start_proxy(self) -> tuple[str, int]:
        from zactor.serve._proxy import Proxy

        if self.address is None:
            proxy = Proxy.options(name=config.PROXY_NAME, namespace=config.NAMESPACE,
                                  max_concurrency=8).remote(self.http_options,
                                                            self.logging_config)
            try:
                self.address = zactor.get(proxy.ready.remote())
            except BaseException:
                zactor.kill(proxy)
                raise
            self.proxy = proxy
        return self.address

    def http_address(self) -> tuple[str, int] | None:
        return self.address

    # -- routing tables (long poll) ------------------------------------------------------

    def _publish(self, key: tuple, value: Any) -> None:
        with self.cond:
            self.values[key] = value
            self.versions[key] = self.versions.get(key, 0) + 1
            self.cond.notify_all()

    def snapshot(self, key: tuple) -> tuple[int, Any]:
        with self.cond:
            return self.versions.get(key, 0), self.values.get(key)

    def kick(self, client_id: str) -> None:
        with self.cond:
            self.kicked.add(client_id)
            self.cond.notify_all()

    def listen(self, known: dict, timeout: float, client_id: str) -> dict:
        """Block until a key in ``known`` has a newer version (or ``timeout``); return the
        changed keys with their (version, value)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                changes = {k: (self.versions.get(k, 0), self.values.get(k))
                           for k, v in known.items() if self.versions.get(k, 0) != v}
                left = deadline - time.monotonic()
                if changes or left <= 0 or client_id in self.kicked or self.stopping:
                    self.kicked.discard(client_id)
                    return changes
                self.cond.wait(left)

    def _publish_routes(self) -> None:
        table = {a.route_prefix: (a.name, a.ingress) for a in self.apps.values()
                 if not a.deleting and a.route_prefix is not None}
        if table != self.values.get(("routes",)):
            self._publish(("routes",), table)

    def _publish_replicas(self, d: _Deployment) -> None:
        table = None if d.deleting else d.table()
        if d.published is _UNPUBLISHED or table != d.published:
            d.published = table
            self._publish(("replicas", d.app, d.name), table)

    # -- applications --------------------------------------------------------------------

    def deploy_application(self, name: str, route_prefix: str | None, specs: list[dict],
                           ingress: str) -> bool:
        with self.lock:
            for other in self.apps.values():
                if other.name != name and not other.deleting and route_prefix is not None \
                        and other.route_prefix == route_prefix:
                    raise ValueError(f"Prefix {route_prefix} is being used by application "
                                     f"{other.name!r}: choose another route_prefix")
            app = self.apps.get(name)
            if app is not None and app.deleting:
                raise RuntimeError(f"application {name!r} is being deleted; deploy it again "
                                   "once serve.delete() has returned")
            if app is None:
                app = self.apps[name] = _App(name)
            names = {s["name"] for s in specs}
            for d in app.deployments.values():
                if d.name not in names:
                    self._retire_all(d)
            for spec in specs:
                d = app.deployments.get(spec["name"])
                if d is None or d.deleting:
                    app.deployments[spec["name"]] = _Deployment(
                        name, spec["name"], spec, _supervisor(name, spec["name"]))
                else:
                    d.apply(spec)
            app.route_prefix = route_prefix
            app.ingress = ingress
            app.deployed_at = time.time()
            app.reached_running = False
            for d in app.deployments.values():
                self._publish_replicas(d)
            self._publish_routes()
        return True

    def delete_application(self, name: str) -> bool:
        with self.lock:
            app = self.apps.get(name)
            if app is None:
                return False
            app.deleting = True
            for d in app.deployments.values():
                self._retire_all(d)
            self._publish_routes()
        return True

    def _retire_all(self, d: _Deployment) -> None:
        d.deleting = True
        for r in list(d.replicas.values()):
            self._retire(d, r)
        self._publish_replicas(d)

    def record_handle_metrics(self, app: str, deployment: str, router_id: str,
                              load: int) -> None:
        with self.lock:
            a = self.apps.get(app)
            d = a.deployments.get(deployment) if a else None
            if d is not None:
                d.metrics[router_id] = (time.monotonic(), load)

    def has_deployment(self, app: str, deployment: str | None) -> str | None:
        """The deployment's name (the ingress for None) if it exists, else None."""
        with self.lock:
            a = self.apps.get(app)
            if a is None or a.deleting:
                return None
            name = deployment or a.ingress
            d = a.deployments.get(name)
            return name if d is not None and not d.deleting else None

    def shutdown(self, timeout_s: float = 60.0) -> bool:
        with self.lock:
            for name in list(self.apps):
                self.delete_application(name)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if not self.apps:
                    break
            time.sleep(0.02)
        self.stopping = True
        with self.cond:
            self.cond.notify_all()
        if self.proxy is not None:
            try:
                zactor.get(self.proxy.stop.remote(), timeout=15)
            except Exception:  # noqa: BLE001 - it is killed next anyway
                pass
            zactor.kill(self.proxy)
        return True

    # -- status --------------------------------------------------------------------------

    def status(self) -> dict:
        with self.lock:
            apps = {}
            for app in self.apps.values():
                deps = {}
                for d in app.deployments.values():
                    if d.deleting and not app.deleting:
                        continue
                    counts: dict[str, int] = collections.Counter(
                        str(r.state) for r in d.replicas.values())
                    status, message = self._deployment_status(d)
                    deps[d.name] = {"status": str(status), "status_trigger": d.trigger,
                                    "replica_states": dict(counts), "message": message}
                status, message = self._app_status(app, deps)
                apps[app.name] = {"status": str(status), "message": message,
                                  "route_prefix": app.route_prefix,
                                  "last_deployed_time_s": app.deployed_at,
                                  "deployments": deps}
            proxies = {"head": "HEALTHY"} if self.address is not None else {}
            return {"applications": apps, "proxies": proxies}

    def _deployment_status(self, d: _Deployment) -> tuple[DS, str]:
        if d.failed:
            return DS.DEPLOY_FAILED, d.failed
        live = [r for r in d.replicas.values() if r.state != RS.STOPPING]
        running = [r for r in live if r.state == RS.RUNNING and r.version == d.version]
        if any(r.state == RS.RECOVERING for r in live):
            return DS.UNHEALTHY, "a replica is not responding (restarting, or hung)"
        settled = len(running) == len(live) == d.target and all(
            d.config.user_config is None or r.config_version == d.config_version
            for r in running)
        if settled:
            return DS.HEALTHY, ""
        if d.trigger == "AUTOSCALING":
            return (DS.UPSCALING if len(running) < d.target else DS.DOWNSCALING), \
                f"scaling to {d.target} replica(s)"
        return DS.UPDATING, f"{len(running)} of {d.target} replica(s) running the new version"

    def _app_status(self, app: _App, deps: dict) -> tuple[AS, str]:
        if app.deleting:
            return AS.DELETING, ""
        states = [v["status"] for v in deps.values()]
        if DS.DEPLOY_FAILED in states:
            return AS.DEPLOY_FAILED, "; ".join(f"{n}: {v['message']}" for n, v in deps.items()
                                               if v["status"] == DS.DEPLOY_FAILED)
        if all(s in (DS.HEALTHY, DS.UPSCALING, DS.DOWNSCALING) for s in states):
            app.reached_running = True
            return AS.RUNNING, ""
        if not app.reached_running:
            return AS.DEPLOYING, ""
        if DS.UNHEALTHY in states:
            return AS.UNHEALTHY, "; ".join(f"{n}: {v['message']}" for n, v in deps.items()
                                           if v["status"] == DS.UNHEALTHY)
        return AS.RUNNING, ""

    def app_status(self, name: str) -> tuple[str, str] | None:
        raw = self.status()["applications"].get(name)
        return None if raw is None else (raw["status"], raw["message"])

    # -- the reconcile loop --------------------------------------------------------------

    def _loop(self) -> None:
        while not self.stopping:
            time.sleep(config.CONTROL_LOOP_S)
            try:
                with self.lock:
                    now = time.monotonic()
                    for app in list(self.apps.values()):
                        for d in list(app.deployments.values()):
                            self._step(d, now)
                            if d.deleting and not d.replicas:
                                self._stop_supervisor(d)
                                del app.deployments[d.name]
                        if app.deleting and not app.deployments:
                            del self.apps[app.name]
            except Exception:  # noqa: BLE001 - the loop must go on
                log.exception("serve controller: reconcile failed")

    def _new_supervisor(self, d: _Deployment, dead: supervision.Supervisor) -> None:
        if d.supervisor is not dead:  # another replica's failed start replaced it already
            return
        log.warning("serve: the supervisor of %s#%s is gone; starting a new one", d.app, d.name)
        d.supervisor = _supervisor(d.app, d.name)

    def _stop_supervisor(self, d: _Deployment) -> None:
        try:
            d.supervisor.handle.stop.remote()
            zactor.kill(d.supervisor.handle)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def _step(self, d: _Deployment, now: float) -> None:
        for r in list(d.replicas.values()):
            self._progress(d, r, now)
        if not d.deleting:
            self._autoscale(d, now)
            self._converge(d, now)
        self._publish_replicas(d)

    def _progress(self, d: _Deployment, r: _Replica, now: float) -> None:
        cfg = d.config
        if r.state == RS.STARTING:
            if not r.start.done():
                return
            exc = r.start.exception()
            if exc is not None:
                del d.replicas[r.tag]
                # A TaskError is start_child's own error (the replica's constructor raised);
                # a bare ActorDiedError says the supervisor itself is dead.
                if isinstance(exc, ActorDiedError) and not isinstance(exc, TaskError):
                    # The supervisor is gone (it gave up after too many restarts, or its
                    # process died), and its replicas with it: start the deployment a new one.
                    self._new_supervisor(d, r.supervisor)
                    return
                d.failed = f"replica {r.tag} failed to start: {exc}"
                log.error("serve: deployment %s#%s: %s", d.app, d.name, d.failed)
                return
            r.handle = r.start.result()
            r.next_stats = now + config.STATS_PERIOD_S
            r.next_health = now + cfg.health_check_period_s
            if cfg.user_config is None:
                r.state = RS.RUNNING
            else:
                r.state = RS.UPDATING
                self._reconfigure(d, r)
            return
        if r.state == RS.STOPPING:
            if (r.drain is None or r.drain.done() or now > r.drain_deadline):
                if r.handle is not None:
                    r.supervisor.handle.terminate_child.remote(r.tag)
                elif not r.start.done():
                    return  # still starting: stop it once it is there
                else:
                    if r.start.exception() is None:
                        r.supervisor.handle.terminate_child.remote(r.tag)
                del d.replicas[r.tag]
            return
        if r.reconf is not None and r.reconf.done():
            exc = r.reconf.exception()
            r.reconf = None
            if exc is not None:
                d.failed = f"replica {r.tag}: reconfigure(user_config) failed: {exc}"
                self._retire(d, r, drain=False)
                return
            r.config_version = r.reconf_version
            if r.state == RS.UPDATING:
                r.state = RS.RUNNING
        if r.state == RS.UPDATING:
            return
        if r.reconf is None and cfg.user_config is not None and \
                r.config_version != d.config_version:
            self._reconfigure(d, r)
        # stats: is it answering (it may be restarting), and what config does it run
        if r.stats is None:
            if now >= r.next_stats:
                r.stats = r.handle.stats.remote().future()
                r.stats_sent = now
        elif r.stats.done():
            done, r.stats = r.stats, None
            exc = done.exception()
            r.next_stats = now + config.STATS_PERIOD_S
            if isinstance(exc, ActorDiedError):
                log.warning("serve: replica %s of %s#%s is gone: %s", r.tag, d.app, d.name, exc)
                del d.replicas[r.tag]
                return
            if exc is None:
                # A replica its supervisor restarted runs no user_config yet (None): the
                # next step sends it the current one.
                r.config_version = done.result()[1]
            if r.state == RS.RECOVERING and exc is None:
                r.state = RS.RUNNING
                r.next_health = now
        elif now - r.stats_sent > config.UNRESPONSIVE_S and r.state == RS.RUNNING:
            r.state = RS.RECOVERING
        # health checks
        if r.health is None:
            if now >= r.next_health and r.state == RS.RUNNING:
                r.health = r.handle.check_health.remote().future()
                r.health_sent = now
        elif r.health.done():
            exc = r.health.exception()
            r.health = None
            r.next_health = now + cfg.health_check_period_s
            if exc is not None and not isinstance(exc, (ActorDiedError,
                                                        ActorUnavailableError)):
                self._replace(d, r, f"its health check failed: {exc}")
        elif now - r.health_sent > cfg.health_check_timeout_s:
            self._replace(d, r, f"its health check did not answer within "
                                f"{cfg.health_check_timeout_s} s")

    def _reconfigure(self, d: _Deployment, r: _Replica) -> None:
        r.reconf_version = d.config_version
        r.reconf = r.handle.reconfigure.remote(d.config.user_config, d.config_version).future()

    def _replace(self, d: _Deployment, r: _Replica, why: str) -> None:
        log.warning("serve: replacing replica %s of %s#%s: %s", r.tag, d.app, d.name, why)
        self._retire(d, r, drain=False)

    def _retire(self, d: _Deployment, r: _Replica, drain: bool = True) -> None:
        if r.state == RS.STOPPING:
            return
        was_running = r.state in (RS.RUNNING, RS.RECOVERING, RS.UPDATING)
        r.state = RS.STOPPING
        if drain and was_running and r.handle is not None:
            cfg = d.config
            r.drain = r.handle.drain.remote(cfg.graceful_shutdown_wait_loop_s,
                                                    cfg.graceful_shutdown_timeout_s).future()
            r.drain_deadline = time.monotonic() + cfg.graceful_shutdown_wait_loop_s + \
                cfg.graceful_shutdown_timeout_s + 5.0

    def _start_replica(self, d: _Deployment) -> None:
        tag = uuid.uuid4().hex[:8]
        options = dict(d.config.ray_actor_options)
        options["max_concurrency"] = d.config.max_ongoing_requests + \
            config.REPLICA_CONTROL_SLOTS
        spec = supervision.ChildSpec(tag, Replica, args=(d.app, d.name, tag, d.blob),
                                     options=options)
        r = d.replicas[tag] = _Replica(tag, d.version,
                                       d.supervisor.handle.start_child.remote(spec).future())
        r.supervisor = d.supervisor

    def _converge(self, d: _Deployment, now: float) -> None:
        live = [r for r in d.replicas.values() if r.state != RS.STOPPING]
        new = [r for r in live if r.version == d.version]
        old = [r for r in live if r.version != d.version]
        if d.failed is None:
            for _ in range(d.target - len(new)):
                self._start_replica(d)
        if len(new) > d.target:
            for r in sorted(new, key=_retire_order)[:len(new) - d.target]:
                self._retire(d, r)
        # Rolling update: an old replica goes only once a new one runs in its place.
        running_new = sum(1 for r in new if r.state == RS.RUNNING)
        keep_old = max(0, d.target - running_new) if d.failed is None else len(old)
        for r in sorted(old, key=_retire_order)[:max(0, len(old) - keep_old)]:
            self._retire(d, r)
        if d.trigger != "AUTOSCALING" and not old and len(new) == d.target and \
                running_new == d.target:
            d.trigger = "CONFIG_UPDATE_COMPLETED"

    def _autoscale(self, d: _Deployment, now: float) -> None:
        auto = d.config.autoscaling_config
        if auto is None:
            return
        fresh = now - 1.0 - 4 * config.METRICS_PUSH_S
        total = sum(load for t, load in d.metrics.values() if t >= fresh)
        for rid in [rid for rid, (t, _) in d.metrics.items() if t < fresh]:
            del d.metrics[rid]
        samples = d.samples
        samples.append((now, total))
        while samples and now - samples[0][0] > auto.look_back_period_s:
            samples.popleft()
        average = sum(v for _, v in samples) / len(samples)
        desired = math.ceil(average / auto.target_ongoing_requests)
        desired = min(max(desired, auto.min_replicas), auto.max_replicas)
        if total > 0 and desired == 0:
            desired = 1
        if desired == d.target:
            d.scale_since = None
            return
        if d.scale_since is None or (desired > d.target) != (d.scale_direction > 0):
            d.scale_since = now
            d.scale_direction = 1 if desired > d.target else -1
            return
        delay = auto.upscale_delay_s if desired > d.target else auto.downscale_delay_s
        if now - d.scale_since >= delay:
            log.info("serve: autoscaling %s#%s from %d to %d replica(s) (%.1f ongoing "
                     "requests on average)", d.app, d.name, d.target, desired, average)
            d.target = desired
            d.trigger = "AUTOSCALING"
            d.scale_since = None
