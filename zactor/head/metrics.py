"""The head's numbers as metrics: ``snapshot(head)`` for the ``"metrics"`` request, and the
table of user metrics (``zactor.util.metrics``) that processes report to the head.

The snapshot is plain data (dicts, lists, numbers, strings: msgpack travels it as is), built
on request from the head's own tables, so nothing is counted twice and the hot path pays
nothing for it but the broker's two message counters. ``zactor._metrics_export`` turns it
into Prometheus families; the dashboard serves those at ``/metrics``.

User metrics arrive as ``"metrics_report"`` requests (sent with ``tell``: no reply is
waited for), as plain msgpack lists — never pickles, the head unpickles nothing::

    [[kind, name, description, boundaries, [[tags, value], ...]], ...]

``kind`` is ``"counter"``, ``"gauge"`` or ``"histogram"``; ``tags`` a list of ``[key,
value]`` strings, sorted; ``value`` what changed since the process's last report (a
counter's increment; a histogram's ``[bucket counts, sum, count]``, one count per boundary
and one above the last) or, for a gauge, its last value. The head adds them up in a table of
at most ``config.METRICS_SERIES_MAX`` series; records of further series are counted and
dropped, with one warning in its log.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any

from zactor import config
from zactor.head import state

if TYPE_CHECKING:
    from zactor.head.broker import Broker

log = logging.getLogger(__name__)

KINDS = ("counter", "gauge", "histogram")
#: Prometheus's rule for metric names (Ray applies the same, and discards the others).
NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
#: Bounds on what one record may carry (a report is data from any process of the cluster).
NAME_MAX = 200
TEXT_MAX = 1000
TAGS_MAX = 32
BOUNDARIES_MAX = 200

#: The states the snapshot always lists (at 0 when none is in them), as the state API names
#: them; others are listed when they occur.
TASK_STATES = ("PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT",
               "PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY", "RUNNING")
ACTOR_STATES = ("DEPENDENCIES_UNREADY", "PENDING_CREATION", "ALIVE", "RESTARTING", "DEAD")


class UserMetrics:
    """The totals of every user metric series reported to this head, bounded."""

    def __init__(self, max_series: int | None = None) -> None:
        self.max_series = config.METRICS_SERIES_MAX if max_series is None else max_series
        # name -> [kind, description, boundaries or None, {tags tuple: value}]
        self.metrics: dict[str, list] = {}
        self.series = 0
        self.dropped_series = 0  # records of series past the cap
        self.rejected = 0  # records that were malformed or disagreed with their metric
        self._warned_full = False
        self._warned_bad = False

    def report(self, records: Any) -> None:
        """Add one process's report (see the module's docstring for its shape)."""
        if not isinstance(records, list):
            self._reject("a report is not a list")
            return
        for record in records:
            try:
                self._add(record)
            except (TypeError, ValueError, IndexError) as exc:
                self._reject(str(exc))

    def _reject(self, why: str) -> None:
        self.rejected += 1
        if not self._warned_bad:
            self._warned_bad = True
            log.warning("dropped a user metric record: %s (further ones are only counted)",
                        why)

    def _add(self, record: list) -> None:
        kind, name, description, boundaries, series = record
        if kind not in KINDS:
            raise ValueError(f"unknown metric kind {kind!r}")
        if not isinstance(name, str) or len(name) > NAME_MAX or not NAME_RE.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        if not isinstance(description, str):
            raise TypeError("the description is not a string")
        if kind == "histogram":
            if not (isinstance(boundaries, list) and 0 < len(boundaries) <= BOUNDARIES_MAX
                    and all(isinstance(b, (int, float)) for b in boundaries)
                    and all(boundaries[i - 1] < boundaries[i] for i in range(1, len(boundaries)))):
                raise ValueError(f"{name}: bad histogram boundaries")
            boundaries = [float(b) for b in boundaries]
        else:
            boundaries = None
        if not isinstance(series, list):
            raise TypeError(f"{name}: the series are not a list")
        metric = self.metrics.get(name)
        if metric is not None and (metric[0] != kind or metric[2] != boundaries):
            raise ValueError(f"{name} was reported as a {kind} of other boundaries or kind "
                             f"than before ({metric[0]})")
        for tags, value in series:
            key = _tags_key(tags)
            if kind == "histogram":
                buckets, total, count = value
                if not (isinstance(buckets, list) and len(buckets) == len(boundaries) + 1
                        and all(isinstance(b, int) and b >= 0 for b in buckets)
                        and isinstance(total, (int, float)) and isinstance(count, int)):
                    raise ValueError(f"{name}: a malformed histogram value")
            elif not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"{name}: a value is not a number")
            elif kind == "counter" and not value >= 0:
                raise ValueError(f"{name}: a counter's increment is negative")
            if metric is None:
                if self.series >= self.max_series:
                    self._full(name)
                    continue
                metric = self.metrics[name] = [kind, description[:TEXT_MAX], boundaries, {}]
            values = metric[3]
            old = values.get(key)
            if old is None:
                if self.series >= self.max_series:
                    self._full(name)
                    continue
                self.series += 1
                if kind == "histogram":
                    values[key] = [list(buckets), float(total), count]
                else:
                    values[key] = float(value)
            elif kind == "counter":
                values[key] = old + value
            elif kind == "gauge":
                values[key] = float(value)
            else:
                old_buckets = old[0]
                for i, n in enumerate(buckets):
                    old_buckets[i] += n
                old[1] += total
                old[2] += count

    def _full(self, name: str) -> None:
        self.dropped_series += 1
        if not self._warned_full:
            self._warned_full = True
            log.warning("the head keeps %d user metric series at most "
                        "(ZACTOR_METRICS_SERIES_MAX): records of further series, from %s on, "
                        "are dropped and counted in zactor_metrics_series_dropped_total",
                        self.max_series, name)

    def rows(self) -> list[list]:
        """Every metric with its series, in the report's shape (totals instead of deltas)."""
        out = []
        for name, (kind, description, boundaries, values) in self.metrics.items():
            series = [[[list(kv) for kv in key], list(v) if kind == "histogram" else v]
                      for key, v in values.items()]
            out.append([kind, name, description, boundaries, series])
        return out


def _tags_key(tags: Any) -> tuple:
    if not isinstance(tags, list) or len(tags) > TAGS_MAX:
        raise ValueError("the tags are not a list of at most "
                         f"{TAGS_MAX} [key, value] pairs")
    pairs = []
    for pair in tags:
        key, value = pair
        if not (isinstance(key, str) and isinstance(value, str) and len(key) <= NAME_MAX
                and len(value) <= TEXT_MAX):
            raise ValueError("a tag is not a pair of short strings")
        pairs.append((key, value))
    pairs.sort()
    return tuple(pairs)


def snapshot(head: Broker) -> dict[str, Any]:
    """The head's numbers now, for ``zactor._metrics_export`` (and the dashboard)."""
    now = time.monotonic()
    sched = head.scheduler
    tasks = dict.fromkeys(TASK_STATES, 0)
    for task in list(head.tasks.tasks.values()):
        name = state._live_state(task)
        tasks[name] = tasks.get(name, 0) + 1
    history = head.tasks.history
    actors = dict.fromkeys(ACTOR_STATES, 0)
    for actor in head.actors.actors.values():
        name = state._actor_state(actor)
        actors[name] = actors.get(name, 0) + 1
    actors["DEAD"] += len(history.dead_actors)  # as zactor list actors shows them
    nodes = []
    for node in sched.nodes.values():
        agent = node.agent
        store = node.agent.store.stats() if node.alive else {}
        row = {
            "node_id": node.node_id.hex(), "ip": node.info.get("ip", ""),
            "alive": node.alive, "is_head": node is head.head_node,
            "workers": len(node.workers),
            "store_used_bytes": store.get("used", 0),
            "store_capacity_bytes": store.get("capacity", 0),
            "objects_in_memory": store.get("objects_in_memory", 0),
            "objects_on_disk": store.get("objects_on_disk", 0),
            "bytes_on_disk": store.get("bytes_on_disk", 0),
            "spilled_objects_total": store.get("spilled_total", 0),
            "spilled_bytes_total": store.get("spilled_bytes_total", 0),
            "metrics_address": node.info.get("metrics_address") or "",
        }
        if node is not head.head_node:  # a node agent of its own: it sends heartbeats
            row["heartbeats_total"] = agent.heartbeats
            row["heartbeat_age_s"] = max(0.0, now - agent.last_heartbeat)
        nodes.append(row)
    clients = {"driver": 0, "worker": 0, "observer": 0}
    for client in head.clients.values():
        clients[client.kind] = clients.get(client.kind, 0) + 1
    user = head.user_metrics
    return {
        "time": time.time(),
        "uptime_s": now - head.started_at,
        "tasks": tasks,
        "tasks_waiting_for_args": tasks["PENDING_ARGS_AVAIL"],
        "tasks_finished_total": history.recorded - history.failed,
        "tasks_failed_total": history.failed,
        "actors": actors,
        "nodes": nodes,
        "scheduler_queue_length": sched.queued,
        "objects": len(head.objects.entries),
        "messages_received_total": head.messages_received,
        "messages_sent_total": head.messages_sent,
        "dropped_messages_total": head.dropped,
        "refused_connections_total": head.refusals.refused if head.refusals else 0,
        "refused_versions_total": head.refused_hellos,
        "clients": clients,
        "user_metrics": user.rows(),
        "user_series": user.series,
        "user_series_max": user.max_series,
        "user_series_dropped_total": user.dropped_series,
        "user_records_rejected_total": user.rejected,
    }
