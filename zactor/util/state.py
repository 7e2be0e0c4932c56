"""The state of a running cluster, at Ray's path (``ray.util.state``): its nodes, actors,
tasks (live ones and a bounded history of finished ones), objects, jobs, placement groups and
workers, with Ray's functions, keyword arguments and field names.

Works from any process on the machine: inside a driver it asks that driver's cluster; from
elsewhere (``address="auto"``, the default) it finds this user's newest running cluster and
asks it over a short-lived connection that submits nothing. A ``tcp://HOST:PORT`` address
asks that ``zactor head`` (with the cluster's key, as ``zactor status`` does).

Filters and limits are applied by the head, so that a list never pulls the whole history::

    from zactor.util.state import list_tasks, list_objects, memory_summary
    list_tasks(filters=[("state", "=", "FAILED")], limit=10)
    print(memory_summary())                     # what `zactor memory` prints
    big = [o for o in list_objects() if o["size"] > 10 << 20]

Rows are dicts whose keys are also attributes (``task.state`` as ``task["state"]``), as
Ray's state dataclasses allow both.
"""

from __future__ import annotations

import json
from typing import Any

from zactor import _state
from zactor._tables import human_bytes, table

__all__ = [
    "StateRow", "get_actor", "get_node", "get_placement_group", "get_task", "get_worker",
    "list_actors", "list_jobs", "list_nodes", "list_objects", "list_placement_groups",
    "list_tasks", "list_workers", "memory_summary", "summarize_actors", "summarize_objects",
    "summarize_tasks", "timeline",
]

GROUPS = ("node", "owner")
#: Ray's default ``limit`` for its list functions.
DEFAULT_LIMIT = 100
#: Ray's default ``timeout`` (seconds) for a state request.
DEFAULT_TIMEOUT = 30

Filter = tuple  # (key, "=" or "!=", value)


class StateRow(dict):
    """One entry of a list: a dict whose keys are also attributes (``row.state``), as
    Ray's state dataclasses allow both. It serialises as the dict it is."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _ask(what: str, address: str | None, args: Any = None,
         timeout: float | None = DEFAULT_TIMEOUT) -> Any:
    core = _state.core
    driver = _state.driver
    if core is not None and (address in (None, "auto") or
                             (driver is not None and address == driver.address)):
        return core.request(what, args, timeout=timeout)
    from zactor import _registry
    from zactor._client import CoreClient

    target, creds = _registry.resolve(address)
    client = CoreClient(target, "observer", connect_timeout=10.0, creds=creds)
    try:
        return client.request(what, args, timeout=timeout)
    finally:
        client.close(goodbye=(False,))


def _filters(filters: list[Filter] | None) -> list | None:
    """Filters as they travel (strings); the head checks them and answers ValueError."""
    if not filters:
        return None
    return [[str(x) for x in item] if isinstance(item, (list, tuple)) else item
            for item in filters]


def _list(resource: str, address: str | None, filters: list[Filter] | None, limit: int | None,
          timeout: float | None) -> list[StateRow]:
    reply = _ask("state", address, [resource, _filters(filters), limit], timeout)
    return [StateRow(row) for row in reply["rows"]]


def _one(resource: str, key: str, ident: str, address: str | None,
         timeout: float | None) -> StateRow | None:
    rows = _list(resource, address, [(key, "=", ident)], 1, timeout)
    return rows[0] if rows else None


def list_tasks(address: str | None = None, filters: list[Filter] | None = None,
               limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_TIMEOUT, detail: bool = False,
               raise_on_missing_output: bool = True, _explain: bool = False) -> list[StateRow]:
    """Tasks and actor calls: the live ones first, then the finished ones the head still
    keeps (the newest ``ZACTOR_TASK_HISTORY_MAX``), newest first. Ray's TaskState fields:
    ``task_id``, ``attempt_number``, ``name``, ``state`` (PENDING_ARGS_AVAIL,
    PENDING_NODE_ASSIGNMENT, RUNNING, FINISHED, FAILED...), ``type`` (NORMAL_TASK,
    ACTOR_CREATION_TASK, ACTOR_TASK), ``job_id``, ``actor_id``, ``node_id``, ``worker_id``,
    ``worker_pid``, ``error_type``, ``error_message``, ``creation_time_ms``,
    ``start_time_ms``, ``end_time_ms``. ``detail`` and ``raise_on_missing_output`` are
    accepted for Ray's sake: every field is always there."""
    return _list("tasks", address, filters, limit, timeout)


def list_actors(address: str | None = None, filters: list[Filter] | None = None,
                limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_TIMEOUT, detail: bool = False,
                raise_on_missing_output: bool = True, _explain: bool = False) -> list[StateRow]:
    """Actors, with Ray's ActorState fields: ``actor_id``, ``class_name``, ``state`` (ALIVE,
    DEAD, RESTARTING, PENDING_CREATION, DEPENDENCIES_UNREADY), ``name``, ``namespace``,
    ``pid``, ``node_id``, ``num_restarts``, ``death_cause``, ``is_detached``... Dead actors
    are listed while a handle reaches them, and the last ``ZACTOR_DEAD_ACTORS_MAX`` after."""
    return _list("actors", address, filters, limit, timeout)


def list_nodes(address: str | None = None, filters: list[Filter] | None = None,
               limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_TIMEOUT, detail: bool = False,
               raise_on_missing_output: bool = True, _explain: bool = False) -> list[StateRow]:
    """Nodes, alive and dead: ``node_id``, ``node_ip``, ``is_head_node``, ``state`` (ALIVE,
    DEAD), ``node_name``, ``resources_total``, ``labels``."""
    return _list("nodes", address, filters, limit, timeout)


def list_workers(address: str | None = None, filters: list[Filter] | None = None,
                 limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_TIMEOUT,
                 detail: bool = False, raise_on_missing_output: bool = True,
                 _explain: bool = False) -> list[StateRow]:
    """Connected worker and driver processes: ``worker_id``, ``worker_type`` (WORKER,
    DRIVER), ``pid``, ``node_id``, ``ip``, ``is_alive``, and the actor or task each runs."""
    return _list("workers", address, filters, limit, timeout)


def list_jobs(address: str | None = None, filters: list[Filter] | None = None,
              limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_TIMEOUT, detail: bool = False,
              raise_on_missing_output: bool = True, _explain: bool = False) -> list[StateRow]:
    """Submitted jobs (``type`` SUBMISSION, with Ray's JobInfo fields) and the other drivers
    connected now (``type`` DRIVER)."""
    return _list("jobs", address, filters, limit, timeout)


def list_placement_groups(address: str | None = None, filters: list[Filter] | None = None,
                          limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_TIMEOUT,
                          detail: bool = False, raise_on_missing_output: bool = True,
                          _explain: bool = False) -> list[StateRow]:
    """Placement groups: ``placement_group_id``, ``name``, ``state`` (PENDING, CREATED,
    REMOVED, RESCHEDULING), ``strategy``, ``bundles``, ``is_detached``."""
    return _list("placement_groups", address, filters, limit, timeout)


def get_task(id: str, address: str | None = None, timeout: int = DEFAULT_TIMEOUT,
             _explain: bool = False) -> StateRow | None:
    """The task (its latest attempt) with this hex id, or None."""
    return _one("tasks", "task_id", id, address, timeout)


def get_actor(id: str, address: str | None = None, timeout: int = DEFAULT_TIMEOUT,
              _explain: bool = False) -> StateRow | None:
    """The actor with this hex id, or None."""
    return _one("actors", "actor_id", id, address, timeout)


def get_node(id: str, address: str | None = None, timeout: int = DEFAULT_TIMEOUT,
             _explain: bool = False) -> StateRow | None:
    """The node with this hex id, or None."""
    return _one("nodes", "node_id", id, address, timeout)


def get_worker(id: str, address: str | None = None, timeout: int = DEFAULT_TIMEOUT,
               _explain: bool = False) -> StateRow | None:
    """The worker or driver with this hex id, or None."""
    return _one("workers", "worker_id", id, address, timeout)


def get_placement_group(id: str, address: str | None = None, timeout: int = DEFAULT_TIMEOUT,
                        _explain: bool = False) -> StateRow | None:
    """The placement group with this hex id, or None."""
    return _one("placement_groups", "placement_group_id", id, address, timeout)


def summarize_tasks(address: str | None = None, timeout: int = DEFAULT_TIMEOUT,
                    raise_on_missing_output: bool = True, _explain: bool = False) -> dict:
    """Ray's task summary: ``{"cluster": {"summary": {name: {"func_or_class_name", "type",
    "state_counts"}}, "total_tasks", "total_actor_tasks", "total_actor_scheduled",
    "summary_by"}}``, over the live tasks and the history."""
    return _ask("state_summary", address, ["tasks"], timeout)


def summarize_actors(address: str | None = None, timeout: int = DEFAULT_TIMEOUT,
                     raise_on_missing_output: bool = True, _explain: bool = False) -> dict:
    """Ray's actor summary: ``{"cluster": {"summary": {class name: {"class_name",
    "state_counts"}}, "total_actors", "summary_by"}}``."""
    return _ask("state_summary", address, ["actors"], timeout)


def chrome_trace(address: str | None = None, timeout: int = DEFAULT_TIMEOUT) -> list[dict]:
    """The finished tasks of the head's history as Chrome trace events (what
    chrome://tracing and Perfetto read): one complete ("X") event per task, ``ts`` and
    ``dur`` in microseconds, one process per node and one thread per worker (named by
    metadata events), the task's id, state and attempt in ``args``."""
    entries = _ask("timeline", address, None, timeout)
    nodes: dict[str, int] = {}
    threads: set[tuple[int, int]] = set()
    events: list[dict] = []
    meta: list[dict] = []
    for task_id, name, state, node, pid, start, end, kind, attempt in entries:
        if node not in nodes:
            nodes[node] = len(nodes) + 1
            meta.append({"ph": "M", "name": "process_name", "pid": nodes[node], "tid": 0,
                         "args": {"name": f"Node {node[:12]}" if node else "Node (none)"}})
        tid = int(pid or 0)
        if (nodes[node], tid) not in threads:
            threads.add((nodes[node], tid))
            meta.append({"ph": "M", "name": "thread_name", "pid": nodes[node], "tid": tid,
                         "args": {"name": f"worker pid {tid}" if tid else "no worker"}})
        events.append({
            "cat": kind.lower(), "name": name, "ph": "X", "pid": nodes[node], "tid": tid,
            "ts": start * 1e6, "dur": max(0.0, end - start) * 1e6,
            "cname": "rail_animation" if state == "FAILED" else "generic_work",
            "args": {"task_id": task_id, "state": state, "type": kind,
                     "attempt_number": attempt, "node_id": node},
        })
    return meta + events


def timeline(filename: str | None = None, address: str | None = None) -> list[dict] | None:
    """``ray.timeline``: the recent finished tasks as a Chrome trace. With ``filename`` it
    is written there as JSON (open it in chrome://tracing or ui.perfetto.dev) and None is
    returned; else the list of events is."""
    events = chrome_trace(address)
    if filename is None:
        return events
    with open(filename, "w") as f:
        json.dump(events, f)
    return None


def list_objects(address: str | None = "auto", filters: list[Filter] | None = None, *,
                 limit: int | None = None, timeout: int = DEFAULT_TIMEOUT, detail: bool = False,
                 raise_on_missing_output: bool = True,
                 _explain: bool = False) -> list[StateRow]:
    """Every object of the cluster, largest first: ``object_id``, ``size`` (bytes),
    ``where`` ("inline" in the head, "shared memory", "spilled to disk", "pending"),
    ``references`` (the processes holding it, the pending tasks it is an argument of, the
    objects it is nested in), ``pinned`` (a process is reading it, so it cannot be spilled),
    ``owner`` (who made it), ``node`` and ``status``. Unlike Ray's, ``limit`` defaults to
    all of them (as it always did here)."""
    args = [_filters(filters), limit] if filters or limit is not None else None
    objects = _ask("memory", address, args, timeout)["objects"]
    return [StateRow(o) for o in objects]


def summarize_objects(address: str | None = "auto") -> list[dict]:
    """Totals per node: objects, and count and bytes by where they are; the store's use."""
    return _ask("memory", address)["nodes"]


def memory_summary(address: str | None = "auto", *, group_by: str = "node",
                   limit: int | None = None) -> str:
    """``zactor memory`` as a string: a table of the objects, grouped by node or by owner,
    largest first, then totals per node."""
    if group_by not in GROUPS:
        raise ValueError(f"group_by must be one of {GROUPS}, got {group_by!r}")
    report = _ask("memory", address)
    objects = report["objects"]
    out = []
    groups: dict[str, list[dict]] = {}
    for obj in objects:
        groups.setdefault(obj[group_by], []).append(obj)
    total = sum(o["size"] for o in objects)
    out.append(f"{len(objects)} object(s), {human_bytes(total)} in all, grouped by {group_by}")
    for key, members in sorted(groups.items(), key=lambda kv: -sum(o["size"] for o in kv[1])):
        label = f"node {key[:12]}" if group_by == "node" else f"owner: {key}"
        shown = members if limit is None else members[:limit]
        out.append("")
        out.append(f"== {label}: {len(members)} object(s), "
                   f"{human_bytes(sum(o['size'] for o in members))}")
        rows = [[o["object_id"], human_bytes(o["size"]), o["where"],
                 "yes" if o["pinned"] else "no",
                 o["owner"] if group_by != "owner" else o["node"][:12],
                 "; ".join(o["references"]) or "-"] for o in shown]
        fourth = "OWNER" if group_by != "owner" else "NODE"
        out.append(table(["OBJECT ID", "SIZE", "WHERE", "PINNED", fourth, "REFERENCED BY"],
                         rows, right={1}))
        if len(shown) < len(members):
            out.append(f"... and {len(members) - len(shown)} more")
    out.append("")
    out.append("== totals per node")
    rows = []
    for node in report["nodes"]:
        by = node["by_where"]

        def cell(where: str, by: dict = by) -> str:
            count, size = by.get(where, (0, 0))
            return f"{count} / {human_bytes(size)}"

        rows.append([node["node"][:12], node["objects"], cell("inline"), cell("shared memory"),
                     cell("spilled to disk"),
                     f"{human_bytes(node['store_used'])} / "
                     f"{human_bytes(node['store_capacity'])}"])
    out.append(table(["NODE", "OBJECTS", "INLINE", "SHARED MEMORY", "SPILLED", "STORE USED"],
                     rows, right={1, 2, 3, 4, 5}))
    return "\n".join(out)
