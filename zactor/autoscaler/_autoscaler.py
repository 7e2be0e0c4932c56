"""The autoscaler: it grows the cluster while demand waits and shrinks it when nodes idle.

It runs inside the head process: the demand it acts on is in the head's own tables (the
queued tasks and actors, the unplaced placement group bundles), and node joins and deaths
are the head's own events, so nothing needs polling over the network. Its decisions run
from the head's loop every UPDATE_S; every provider call (which may block: ``sbatch``, a
cloud API) runs in a thread of its own, and its outcome comes back through a queue.

Each round:
- launches that did not join within ``node_launch_timeout_s`` are failures: the node is
  stopped, and its type waits ``launch_backoff_s`` (doubled on each failure, up to
  BACKOFF_MAX_S) before the next launch; a provider that raises counts the same;
- the demand that the free resources of the nodes there are (and of the nodes on their way)
  cannot hold is bin-packed, largest first, onto new nodes of the types that can hold it,
  within each type's ``max_workers``, the cluster's ``max_workers`` and ``upscaling_speed``;
  types below their ``min_workers`` are topped up;
- a node the autoscaler started that has been idle (nothing running, all its resources
  free) for ``idle_timeout_s`` is stopped, down to its type's ``min_workers``.

Every decision is logged with its reason and kept, with the failures, for ``zactor status``.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import queue
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from zactor.autoscaler.node_provider import Launch, make_provider
from zactor.head.scheduler import EPS

if TYPE_CHECKING:
    from zactor.head.broker import Broker
    from zactor.head.scheduler import Node

log = logging.getLogger(__name__)

#: Seconds between the autoscaler's rounds.
UPDATE_S = 1.0
BACKOFF_MAX_S = 300.0
#: Seconds between asking the provider which of its launched nodes still run.
SURVEY_S = 2.0
#: Launches that may be in flight whatever ``upscaling_speed`` says (Ray's floor).
MIN_CONCURRENT_LAUNCHES = 5


class Managed:
    """A node the autoscaler started (or is starting)."""

    __slots__ = ("tag", "node_type", "state", "provider_id", "launched_at", "node",
                 "idle_since")

    def __init__(self, tag: str, node_type: str) -> None:
        self.tag = tag
        self.node_type = node_type
        self.state = "launching"  # -> running -> terminating
        self.provider_id: str | None = None
        self.launched_at = time.monotonic()
        self.node: Node | None = None
        self.idle_since: float | None = None


class Autoscaler:
    def __init__(self, head: Broker, config: dict) -> None:
        self.head = head
        self.config = config
        self.types = config["available_node_types"]
        self.provider = make_provider(config["provider"], config["cluster_name"])
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="zactor-autoscaler")
        self.results: queue.SimpleQueue = queue.SimpleQueue()
        self.managed: dict[str, Managed] = {}
        self.events: collections.deque = collections.deque(maxlen=20)
        self.failures: collections.deque = collections.deque(maxlen=20)
        self.failed_launches = 0
        self.backoff: dict[str, tuple[float, float]] = {}  # type -> (next try, delay)
        self._seq = 0
        self._why = ""  # what the last plan launches for, in words
        self._last_survey = 0.0
        self._surveying = False

    # -- the head's events -------------------------------------------------------------------

    def node_joined(self, tag: str | None, node: Node) -> None:
        managed = self.managed.get(tag) if tag else None
        if managed is None or managed.state != "launching":
            return
        managed.state, managed.node = "running", node
        self.backoff.pop(managed.node_type, None)
        self._event(f"node {node.node_id.hex()[:12]} of type {managed.node_type} joined "
                    f"({time.monotonic() - managed.launched_at:.1f} s after its launch)")

    def node_died(self, node: Node) -> None:
        for managed in list(self.managed.values()):
            if managed.node is node and managed.state == "running":
                self._event(f"node {node.node_id.hex()[:12]} of type {managed.node_type} "
                            "died")
                self._terminate(managed, None)

    # -- each round --------------------------------------------------------------------------

    def update(self) -> None:
        now = time.monotonic()
        try:
            self._collect()
            self._check_launches(now)
            self._scale_up(now)
            self._scale_down(now)
        except Exception:  # noqa: BLE001 - a bug here must not stop the head, nor scaling
            log.exception("autoscaler: this round failed")
        finally:
            self.head.later(UPDATE_S, self.update)

    def _collect(self) -> None:
        while True:
            try:
                what, tag, value = self.results.get_nowait()
            except queue.Empty:
                return
            if what == "survey":
                self._surveying = False
                asked, alive = value
                if alive is not None:
                    for managed in list(self.managed.values()):
                        if managed.state == "launching" and managed.provider_id in asked \
                                and managed.provider_id not in alive:
                            self._launch_failed(managed, "its node ended before it joined")
                continue
            managed = self.managed.get(tag)
            if managed is None:
                continue
            if what == "created":
                managed.provider_id = value
                if managed.state == "terminating":  # given up on while it was starting
                    self._terminate(managed, None)
            elif what == "failed":
                self._launch_failed(managed, f"the provider could not start it: {value}")
            elif what == "terminated":
                self.managed.pop(tag, None)

    def _check_launches(self, now: float) -> None:
        timeout = self.config["node_launch_timeout_s"]
        for managed in list(self.managed.values()):
            if managed.state == "launching" and now - managed.launched_at > timeout:
                self._launch_failed(managed, f"it did not join within {timeout:g} s")
        # A launch whose node ended before it joined failed now, not at the timeout: ask the
        # provider which of its nodes still run, every few rounds (in its thread).
        waiting = [m.provider_id for m in self.managed.values()
                   if m.state == "launching" and m.provider_id is not None]
        if waiting and now - self._last_survey > SURVEY_S and not self._surveying:
            self._last_survey = now
            self._surveying = True

            def survey() -> None:
                try:
                    alive = set(self.provider.non_terminated_nodes())
                except Exception as exc:  # noqa: BLE001 - only a shortcut: timeouts remain
                    log.debug("autoscaler: asking the provider which nodes run failed: %s",
                              exc)
                    alive = None
                self.results.put(("survey", None, (set(waiting), alive)))

            self.pool.submit(survey)

    def _launch_failed(self, managed: Managed, why: str) -> None:
        if managed.provider_id is not None:
            try:
                tail = self.provider.log_tail(managed.provider_id)
            except Exception as exc:  # noqa: BLE001 - the reason stands without the log
                tail = f"(its log could not be read: {exc})"
            if tail:
                why = f"{why}; its output ends:\n{tail}"
        self.failed_launches += 1
        kind = managed.node_type
        _, delay = self.backoff.get(kind, (0.0, 0.0))
        delay = min(BACKOFF_MAX_S, delay * 2 if delay else self.config["launch_backoff_s"])
        self.backoff[kind] = (time.monotonic() + delay, delay)
        text = f"launch {managed.tag} of type {kind} failed: {why}; retrying in {delay:g} s"
        self.failures.append({"time": time.time(), "node_type": kind, "error": why})
        log.warning("autoscaler: %s", text)
        self._event(text)
        self._terminate(managed, None)

    def _scale_up(self, now: float) -> None:
        plan = self._plan()
        for kind, count in self._min_workers().items():
            plan[kind] = max(plan.get(kind, 0), count)
        if not plan:
            return
        running = sum(1 for n in self.head.scheduler.nodes.values() if n.alive)
        launching = sum(m.state == "launching" for m in self.managed.values())
        room = max(MIN_CONCURRENT_LAUNCHES,
                   math.ceil(self.config["upscaling_speed"] * running)) - launching
        total = sum(m.state != "terminating" for m in self.managed.values())
        room = min(room, self.config["max_workers"] - total)
        for kind, count in plan.items():
            next_try, _ = self.backoff.get(kind, (0.0, 0.0))
            if now < next_try:
                continue
            have = sum(m.node_type == kind and m.state != "terminating"
                       for m in self.managed.values())
            count = min(count, self.types[kind]["max_workers"] - have, room)
            if count <= 0:
                continue
            room -= count
            self._event(f"launching {count} node(s) of type {kind}: {self._why}")
            for _ in range(count):
                self._launch(kind)

    def _min_workers(self) -> dict[str, int]:
        out = {}
        for kind, spec in self.types.items():
            have = sum(m.node_type == kind and m.state != "terminating"
                       for m in self.managed.values())
            if have < spec["min_workers"]:
                out[kind] = spec["min_workers"] - have
        return out

    def _plan(self) -> dict[str, int]:
        """Nodes of each type to launch so that the waiting demand fits."""
        head = self.head
        free = [dict(n.available) for n in head.scheduler.nodes.values() if n.alive]
        free += [dict(self.types[m.node_type]["resources"]) for m in self.managed.values()
                 if m.state == "launching"]
        shapes = _demand(head)
        left = []
        for shape, group in sorted(shapes, key=lambda s: -sum(s[0].values())):
            for have in free:
                if _covers(have, shape):
                    _take(have, shape)
                    break
            else:
                left.append((shape, group))
        plan: dict[str, int] = {}
        new: list[tuple[dict, set]] = []  # planned nodes: free resources, groups on them
        unmet = collections.Counter()
        for shape, group in left:
            for have, groups in new:
                if _covers(have, shape) and (group is None or group not in groups):
                    _take(have, shape)
                    if group is not None:
                        groups.add(group)
                    break
            else:
                kind = next((k for k, t in self.types.items()
                             if _covers(t["resources"], shape)), None)
                if kind is None:
                    continue  # no node type can hold it: infeasible, as status says
                have = dict(self.types[kind]["resources"])
                _take(have, shape)
                new.append((have, {group} if group is not None else set()))
                plan[kind] = plan.get(kind, 0) + 1
            unmet[", ".join(f"{k}: {v:g}" for k, v in sorted(shape.items()))] += 1
        self._why = "unmet demand " + "; ".join(f"{{{k}}} x{n}" for k, n in unmet.items()) \
            if unmet else f"min_workers {self._min_workers()}"
        return plan

    def _launch(self, kind: str) -> None:
        self._seq += 1
        tag = f"{self.config['cluster_name']}-{kind}-{os.getpid()}-{self._seq}"
        spec = self.types[kind]
        managed = self.managed[tag] = Managed(tag, kind)
        resources = spec["resources"]
        custom = {k: v for k, v in resources.items() if k not in ("CPU", "GPU")}
        head = self.head
        command = [sys.executable, "-m", "zactor_cli.main", "worker",
                   "--address", head.tcp_address,
                   "--num-cpus", str(int(resources["CPU"])),
                   "--num-gpus", str(int(resources.get("GPU", 0)))]
        if custom:
            command += ["--resources", json.dumps(custom)]
        env = {"ZACTOR_NODE_TAG": tag}
        if head.cfg.get("insecure"):
            env["ZACTOR_CLUSTER_KEY"] = "insecure"
        else:
            env["ZACTOR_CLUSTER_KEY_FILE"] = head.cfg["key_file"]
        launch = Launch(tag, kind, dict(resources), spec["node_config"], command, env)
        log.info("autoscaler: launching %s (%s)", tag, resources)

        def create() -> None:
            try:
                self.results.put(("created", tag, self.provider.create_node(launch)))
            except Exception as exc:  # noqa: BLE001 - any failure of the provider is reported
                self.results.put(("failed", tag, f"{type(exc).__name__}: {exc}"))

        managed.launched_at = time.monotonic()
        self.pool.submit(create)

    def _scale_down(self, now: float) -> None:
        timeout = self.config["idle_timeout_s"]
        count = collections.Counter(m.node_type for m in self.managed.values()
                                    if m.state != "terminating")
        for managed in list(self.managed.values()):
            node = managed.node
            if managed.state != "running" or node is None:
                continue
            if not _idle(node):
                managed.idle_since = None
                continue
            if managed.idle_since is None:
                managed.idle_since = now
            kind = managed.node_type
            if now - managed.idle_since >= timeout and \
                    count[kind] > self.types[kind]["min_workers"]:
                count[kind] -= 1
                self._event(f"removing node {node.node_id.hex()[:12]} of type {kind}: idle "
                            f"for {now - managed.idle_since:.0f} s")
                self._terminate(managed, f"idle for {now - managed.idle_since:.0f} s")

    def _terminate(self, managed: Managed, why: str | None) -> None:
        """Stop a node: the head lets it go (if it joined), the provider stops it."""
        managed.state = "terminating"
        if managed.node is not None and why is not None:
            self.head.retire_node(managed.node, f"scaled down by the autoscaler ({why})")
        if managed.provider_id is None:
            return  # its launch has not returned yet: stopped once it does (_collect)
        provider_id, tag = managed.provider_id, managed.tag

        def stop() -> None:
            try:
                self.provider.terminate_node(provider_id)
            except Exception as exc:  # noqa: BLE001 - reported; the node may be gone already
                log.warning("autoscaler: stopping %s failed: %s", provider_id, exc)
            self.results.put(("terminated", tag, None))

        self.pool.submit(stop)

    def _event(self, text: str) -> None:
        log.info("autoscaler: %s", text)
        self.events.append({"time": time.time(), "event": text})

    # -- status and end ----------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        types = []
        for kind, spec in self.types.items():
            mine = [m for m in self.managed.values() if m.node_type == kind]
            types.append({"node_type": kind, "resources": spec["resources"],
                          "running": sum(m.state == "running" for m in mine),
                          "launching": sum(m.state == "launching" for m in mine),
                          "min_workers": spec["min_workers"],
                          "max_workers": spec["max_workers"]})
        return {"node_types": types, "failed_launches": self.failed_launches,
                "recent_failures": list(self.failures)[-5:],
                "events": list(self.events)[-10:],
                "pending_launches": [m.tag for m in self.managed.values()
                                     if m.state == "launching"]}

    def shutdown(self) -> None:
        """The cluster stops: so does every node the provider started."""
        self.pool.shutdown(wait=True)
        try:
            self.provider.shutdown()
        except Exception as exc:  # noqa: BLE001 - the head stops regardless
            log.warning("autoscaler: stopping the provider's nodes failed: %s", exc)


def _demand(head: Broker) -> list[tuple[dict, Any]]:
    """Resource shapes that wait: queued tasks and actors (those of placement groups take
    from their bundles), and the bundles of unplaced groups. A STRICT_SPREAD group's
    bundles carry its id (no two on one node); a STRICT_PACK group is one shape."""
    out = []
    for q in head.scheduler.queues.values():
        for task in q:
            strategy = task.strategy
            if not (type(strategy) is tuple and strategy[0] == "pg"):
                out.append((task.place, None))
    for group in head.pgs.waiting:
        todo = [b.spec for b in group.bundles if b.node is None]
        if group.strategy == "STRICT_PACK":
            total: dict[str, float] = {}
            for spec in todo:
                for k, v in spec.items():
                    total[k] = total.get(k, 0.0) + v
            out.append((total, None))
        else:
            tag = group.pg_id if group.strategy == "STRICT_SPREAD" else None
            out += [(spec, tag) for spec in todo]
    return out


def _covers(have: dict, need: dict) -> bool:
    return all(have.get(k, 0.0) + EPS >= v for k, v in need.items())


def _take(have: dict, need: dict) -> None:
    for k, v in need.items():
        have[k] = have.get(k, 0.0) - v


def _idle(node: Node) -> bool:
    """Nothing runs on ``node`` (no actor, no task) and nothing holds its resources (a
    placement group bundle, say)."""
    if node.busy_actors or any(w.task is not None for w in node.workers.values()):
        return False
    return all(node.available.get(k, 0.0) + EPS >= v for k, v in node.total.items()
               if not k.startswith("node:"))
