"""What the page shows, asked of the head through its state API: one snapshot of the cluster
(nodes, actors, tasks, objects, jobs, placement groups), shared by every open page.

The head applies the row limits, so a snapshot stays small however long the cluster's
history is; the page builds the supervision trees from the actors' ``supervisor_id``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from zactor import config


def snapshot(client: Any, rows: int = config.DASHBOARD_ROWS_MAX) -> dict:
    """The cluster now, from one head, in a few requests (``client`` is a CoreClient).
    Task counts by state are since the head started (finished and failed ones included);
    ``total_tasks`` is what the head still lists."""
    ask = client.request
    status = ask("cluster_status")
    nodes = ask("state", ["nodes", None, rows])["rows"]
    actors = ask("state", ["actors", None, rows])
    tasks = ask("state", ["tasks", None, rows])
    memory = ask("memory", [None, rows])
    jobs = ask("state", ["jobs", None, rows])["rows"]
    groups = ask("state", ["placement_groups", None, rows])["rows"]
    # The counts by state: the head keeps them as it goes (zactor.head.metrics), where a
    # state summary would build a row for each of the thousands of finished tasks it
    # remembers, every second, in the head's loop.
    counts = ask("metrics")
    by_node = {n["node_id"]: n for n in status["nodes"]}
    for node in nodes:  # the state API's row, with the status report's load and store
        extra = by_node.get(node["node_id"], {})
        node["resources_available"] = extra.get("available", {})
        node["workers"] = extra.get("workers", 0)
        node["store_used"] = extra.get("store_used", 0)
        node["store_capacity"] = extra.get("store_capacity", 0)
        node["memory_total"] = extra.get("memory_total", 0.0)
        node["memory_available"] = extra.get("memory_available", 0.0)
        node["load_1m"] = extra.get("load_1m", 0.0)
    task_states = {state: n for state, n in counts["tasks"].items() if n}
    task_states["FINISHED"] = counts["tasks_finished_total"]
    task_states["FAILED"] = counts["tasks_failed_total"]
    return {
        "time": time.time(),
        "cluster": {
            "address": status["address"], "encrypted": status["encrypted"],
            "insecure": status["insecure"], "drivers": status["drivers"],
            "tasks_queued": status["tasks_queued"],
            "tasks_waiting_for_args": status["tasks_waiting_for_args"],
            "demand": status["demand"], "infeasible": status["infeasible"],
            "dropped_messages": status["dropped_messages"],
            "refused_connections": status["refused_connections"],
            "actors_by_state": status["actors_by_state"], "tasks_by_state": task_states,
            "total_tasks": tasks["total"],
        },
        "nodes": nodes,
        "actors": actors["rows"], "actors_total": actors["total"],
        "tasks": tasks["rows"], "tasks_total": tasks["total"],
        "tasks_forgotten": tasks["forgotten"],
        "objects": memory["objects"], "object_nodes": memory["nodes"],
        "jobs": jobs,
        "placement_groups": groups,
    }


class Hub:
    """One snapshot per refresh period, however many pages are open: the first page that
    asks after it is stale fetches it (in a thread: the client blocks), the others wait."""

    def __init__(self, client: Any, refresh_s: float = config.DASHBOARD_REFRESH_S) -> None:
        self.client = client
        self.refresh_s = refresh_s
        self._lock = asyncio.Lock()
        self._value: dict | None = None
        self._at = 0.0

    async def get(self) -> dict:
        async with self._lock:
            if self._value is None or time.monotonic() - self._at >= self.refresh_s * 0.9:
                self._value = await asyncio.to_thread(snapshot, self.client)
                self._at = time.monotonic()
            return self._value
