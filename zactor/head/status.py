"""What ``zactor status`` shows: nodes, actors by state, pending work and unmet demand, and
the head's security counters. Built on request from the head's own tables."""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

from zactor.head.scheduler import EPS

if TYPE_CHECKING:
    from zactor.head.broker import Broker


def report(head: Broker) -> dict[str, Any]:
    sched = head.scheduler
    nodes = []
    dashboard = head.dashboard
    for node in sched.nodes.values():
        store = node.agent.store.stats() if node.alive else {}
        metrics = node.info.get("metrics_address") or ""
        note = node.info.get("metrics_note") or ""
        if node is head.head_node and dashboard is not None:  # its numbers: the head's
            metrics = dashboard.url.split("/?")[0] + "/metrics"
            note = "asks for the cluster's token" if dashboard.token else ""
        nodes.append({
            "node_id": node.node_id.hex(), "ip": node.info.get("ip", ""),
            "hostname": node.info.get("hostname", ""), "alive": node.alive,
            "removed": node.info.get("removed"),
            "is_head": node is head.head_node,
            "total": {k: v for k, v in node.total.items() if not k.startswith("node:")},
            "available": {k: max(0.0, v) for k, v in node.available.items()
                          if not k.startswith("node:")},
            "workers": len(node.workers),
            "store_used": store.get("used", 0), "store_capacity": store.get("capacity", 0),
            # its Prometheus port (zactor worker --metrics-port), or why it has none
            "metrics_address": metrics, "metrics_note": note,
            # the machine itself, beside what the scheduler has handed out
            "memory_total": float(node.agent.total_memory) if node.alive else 0.0,
            "memory_available": node.agent.available_memory() if node.alive else 0.0,
            "load_1m": node.agent.load() if node.alive else 0.0,
        })
    by_state: collections.Counter = collections.Counter()
    actors = []
    for actor in head.actors.actors.values():
        by_state[actor.state] += 1
        worker = actor.worker
        actors.append({"actor_id": actor.actor_id.hex(), "class_name": actor.class_name,
                       "name": actor.name or "", "state": actor.state,
                       "node_id": worker.node.node_id.hex() if worker is not None else "",
                       "restarts": actor.restarts})
    waiting = sum(1 for t in head.tasks.tasks.values() if t.state == "waiting")
    alive = [n for n in sched.nodes.values() if n.alive]
    demand: collections.Counter = collections.Counter()
    infeasible: collections.Counter = collections.Counter()
    wanted = [(task.place, not any(_covers(n.total, task.place) for n in alive))
              for queue in sched.queues.values() for task in queue
              if not (type(task.strategy) is tuple and task.strategy[0] == "pg")]
    # a group's tasks take from its bundles: what waits is the bundles of unplaced groups
    for place, never in wanted + head.pgs.demand():
        shape = ", ".join(f"{k}: {v:g}" for k, v in sorted(place.items())) or "{}"
        (infeasible if never else demand)[shape] += 1
    groups = [{"placement_group_id": g.pg_id.hex(), "name": g.name, "strategy": g.strategy,
               "state": g.state, "bundles": len(g.bundles),
               "placed": sum(b.node is not None for b in g.bundles)}
              for g in head.pgs.groups.values() if g.state != "REMOVED"]
    return {
        "address": head.tcp_address or head.address,
        "dashboard_url": head.dashboard.url if head.dashboard is not None else None,
        "encrypted": head.tcp is not None and head.auth is not None,
        "insecure": bool(head.cfg.get("insecure")),
        "refused_connections": head.refusals.refused if head.refusals else 0,
        "refused_versions": head.refused_hellos,
        "dropped_messages": head.dropped,
        "nodes": nodes,
        "actors": actors,
        "actors_by_state": dict(by_state),
        "tasks_queued": sched.queued, "tasks_waiting_for_args": waiting,
        "demand": dict(demand), "infeasible": dict(infeasible),
        "drivers": len(head.drivers),
        "placement_groups": groups,
        "autoscaler": head.autoscaler.report() if head.autoscaler is not None else None,
    }


def _covers(total: dict, req: dict) -> bool:
    return all(total.get(k, 0.0) + EPS >= v for k, v in req.items())
