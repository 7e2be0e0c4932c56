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

Logs, as Ray's log API: ``list_logs`` names a node's log files (its workers' output, one
file per worker), ``get_log`` yields the lines of one, or only one task's or one actor's
lines, cut out of their worker's file by the markers it writes (zactor.node.logs)::

    for line in get_log(task_id=ref.task_id().hex()):
        print(line)
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from zactor import _state
from zactor._tables import Row, human_bytes, table

__all__ = [
    "StateRow", "get_actor", "get_log", "get_node", "get_placement_group", "get_task",
    "get_worker", "list_actors", "list_jobs", "list_logs", "list_nodes", "list_objects",
    "list_placement_groups", "list_tasks", "list_workers", "memory_summary",
    "summarize_actors", "summarize_objects", "summarize_tasks", "timeline",
]

GROUPS = ("node", "owner")
#: Ray's default ``limit`` for its list functions.
DEFAULT_LIMIT = 100
#: Ray's default ``timeout`` (seconds) for a state request.
DEFAULT_TIMEOUT = 30

Filter = tuple  # (key, "=" or "!=", value)


class StateRow(Row):
    """One entry of a list: a dict whose keys are also attributes (``row.state``), as
    Ray's state dataclasses allow both. It serialises as the dict it is."""

    __slots__ = ()


class _Session:
    """A connection to the head for one or more requests: this process's own, inside a
    driver or a worker; else an observer's, made here and closed by :meth:`close` (a
    followed log asks many times: it connects once)."""

    def __init__(self, address: str | None, timeout: float | None) -> None:
        self.timeout = timeout
        self._own = None
        core = _state.core
        driver = _state.driver
        if core is not None and (address in (None, "auto") or
                                 (driver is not None and address == driver.address)):
            self.core = core
            return
        from zactor import _registry
        from zactor._client import CoreClient

        target, creds = _registry.resolve(address)
        self.core = self._own = CoreClient(target, "observer", connect_timeout=10.0,
                                           creds=creds)

    def ask(self, what: str, args: Any = None) -> Any:
        return self.core.request(what, args, timeout=self.timeout)

    def rows(self, resource: str, filters: list[Filter] | None,
             limit: int | None = DEFAULT_LIMIT) -> list[StateRow]:
        reply = self.ask("state", [resource, _filters(filters), limit])
        return [StateRow(row) for row in reply["rows"]]

    def close(self) -> None:
        if self._own is not None:
            self._own.close(goodbye=(False,))
            self._own = None


def _ask(what: str, address: str | None, args: Any = None,
         timeout: float | None = DEFAULT_TIMEOUT) -> Any:
    session = _Session(address, timeout)
    try:
        return session.ask(what, args)
    finally:
        session.close()


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


# -- logs ---------------------------------------------------------------------------------

_ANSI = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")
_ENDED = {"task": ("FINISHED", "FAILED"), "actor": ("DEAD",)}


def _node_id(session: _Session, node_id: str | None, node_ip: str | None) -> str | None:
    """The full hex id of the node given by id, by the start of its id (as tables show
    them) or by its address; None (the head's node) if neither is given."""
    if node_id is None and node_ip is None:
        return None
    nodes = session.rows("nodes", None, None)
    if node_id is not None:
        found = [n for n in nodes if n["node_id"].startswith(str(node_id).lower())]
        if len(found) != 1:
            raise ValueError(f"no node with id {node_id}" if not found else
                             f"{node_id} is the start of several nodes' ids: give more of it")
        return found[0]["node_id"]
    found = [n for n in nodes if n["node_ip"] == node_ip and n["state"] == "ALIVE"]
    if not found:
        raise ValueError(f"no live node has the address {node_ip}")
    return found[0]["node_id"]


def _log_files(session: _Session, node_id: str | None, glob: str | None) -> list[dict]:
    return session.ask("logs", [node_id, "list", [glob]])


def list_logs(address: str | None = None, node_id: str | None = None,
              node_ip: str | None = None, glob_filter: str | None = None,
              timeout: int = DEFAULT_TIMEOUT) -> dict[str, list[str]]:
    """Ray's ``list_logs``: the log files of a node (by ``node_id``, a unique start of
    one, or ``node_ip``; the head's node if neither is given), as ``{group: [file names]}``
    (``"worker"``: ``worker-<pid>.log`` and its rotated ``.1``), those matching
    ``glob_filter`` only when given (``"worker-12*"``)."""
    session = _Session(address, timeout)
    try:
        node_id = _node_id(session, node_id, node_ip)
        out: dict[str, list[str]] = {}
        for row in _log_files(session, node_id, glob_filter):
            name = row["filename"]
            group = "worker" if name.startswith("worker-") else "internal"
            out.setdefault(group, []).append(name)
        return out
    finally:
        session.close()


class _Source:
    """What get_log reads: a file of a node, maybe only the lines of one task or actor."""

    def __init__(self, node_id: str | None, filename: str, cut: tuple[str, str] | None,
                 ended=None, rotated: bool = True) -> None:
        self.node_id = node_id
        self.filename = filename
        self.cut = cut  # ("task" | "actor", hex id), or None: every line
        self.ended = ended  # () -> True once what is followed can write no more
        self.rotated = rotated  # read the rotated backup (.1) first
        self.inside = False  # within the cut's lines, as of the last line read

    def keep(self, line: bytes) -> bool:
        """Whether ``line`` is one to show; follows the markers of a cut."""
        if self.cut is None:
            return True
        from zactor.node.logs import parse_marker

        if line[:1] != b":":
            return self.inside
        mark = parse_marker(line.decode("utf-8", "replace"))
        if mark is None:
            return self.inside
        kind, ident = mark
        if self.cut[0] == "task":
            self.inside = kind == "task" and ident == self.cut[1]
        elif kind == "actor":  # a worker hosts one actor for the rest of its life
            self.inside = ident == self.cut[1]
        return False


def _resolve(session: _Session, node_id: str | None, filename: str | None,
             actor_id: str | None, task_id: str | None, pid: int | None) -> _Source:
    from zactor.node.logs import check_name, worker_file

    if filename is not None:
        return _Source(node_id, check_name(filename), None, rotated=False)
    if pid is not None:
        pid = int(pid)
        filters: list = [("pid", "=", pid), ("worker_type", "=", "WORKER")]
        if node_id is None:
            live = session.rows("workers", filters, None)
            if len(live) == 1:
                node_id = live[0]["node_id"]
        if node_id is not None:
            filters.append(("node_id", "=", node_id))

        def worker_gone() -> bool:
            return not session.rows("workers", filters, 1)

        return _Source(node_id, worker_file(pid), None, worker_gone)
    if task_id is not None:
        task_id = task_id.lower()
        rows = session.rows("tasks", [("task_id", "=", task_id)], 1)
        if not rows:
            raise ValueError(f"no task with id {task_id} (the head keeps the live tasks and "
                             "the last ZACTOR_TASK_HISTORY_MAX finished ones)")
        row = rows[0]
        if not row["worker_pid"]:
            raise ValueError(f"task {task_id} has not run on a worker yet (it is "
                             f"{row['state']})")

        def task_ended() -> bool:
            now = session.rows("tasks", [("task_id", "=", task_id)], 1)
            return not now or now[0]["state"] in _ENDED["task"] or \
                now[0]["worker_pid"] != row["worker_pid"]

        return _Source(row["node_id"], worker_file(row["worker_pid"]), ("task", task_id),
                       task_ended)
    actor_id = str(actor_id).lower()
    rows = session.rows("actors", [("actor_id", "=", actor_id)], 1)
    if not rows:
        raise ValueError(f"no actor with id {actor_id}")
    row = rows[0]
    node, worker_pid = row["node_id"], row["pid"]
    if not worker_pid:  # dead (or restarting): its last worker ran its last calls
        ran = [t for t in session.rows("tasks", [("actor_id", "=", actor_id)], 100)
               if t["worker_pid"]]
        if not ran:
            raise ValueError(f"actor {actor_id} has no worker whose log is known (it is "
                             f"{row['state']})")
        node, worker_pid = ran[0]["node_id"], ran[0]["worker_pid"]

    def actor_ended() -> bool:
        now = session.rows("actors", [("actor_id", "=", actor_id)], 1)
        return not now or now[0]["state"] in _ENDED["actor"] or now[0]["pid"] != worker_pid

    return _Source(node, worker_file(worker_pid), ("actor", actor_id), actor_ended)


def _read(session: _Session, source: _Source, filename: str, offset: int | None,
          tail: int | None = None) -> dict:
    return session.ask("logs", [source.node_id, "read", [filename, offset, None, tail]])


def _chunks(session: _Session, source: _Source, filename: str, offset: int = 0,
            missing_ok: bool = False) -> Iterator[tuple[bytes, int, int]]:
    """The bytes of a file from ``offset`` to its end, as (chunk, end offset, the file's
    inode) triples."""
    while True:
        try:
            reply = _read(session, source, filename, offset)
        except ValueError as exc:
            if missing_ok and "no log file" in str(exc):
                return
            raise
        data = reply["data"]
        if not data:
            return
        offset = reply["offset"] + len(data)
        yield data, offset, reply.get("inode")
        if offset >= reply["size"]:
            return


class _Lines:
    """Bytes in, complete lines out (a partial last line waits for the rest)."""

    def __init__(self, source: _Source, ansi: bool) -> None:
        self.source = source
        self.ansi = ansi
        self.rest = b""

    def feed(self, data: bytes, final: bool = False) -> list[bytes]:
        data = self.rest + data
        lines = data.split(b"\n")
        self.rest = b"" if final else lines.pop()
        if final and lines and lines[-1] == b"":
            lines.pop()
        keep = self.source.keep
        out = [line for line in lines if keep(line)]
        if self.ansi:
            out = [_ANSI.sub(b"", line) for line in out]
        return out


def get_log(address: str | None = None, node_id: str | None = None,
            node_ip: str | None = None, filename: str | None = None,
            actor_id: str | None = None, task_id: str | None = None, pid: int | None = None,
            follow: bool = False, tail: int = -1, timeout: int = DEFAULT_TIMEOUT,
            suffix: str = "out", encoding: str | None = "utf-8", errors: str | None = "strict",
            submission_id: str | None = None, attempt_number: int = 0,
            _interval: float | None = None, filter_ansi_code: bool = False) -> Iterator[str]:
    """Ray's ``get_log``: the lines (without their newline) of one log, as a generator.

    Which log: exactly one of ``filename`` (a file of ``list_logs``, on ``node_id`` or
    ``node_ip``, else the head's node), ``pid`` (that worker's file: its stdout and stderr,
    with the marker lines that say which task wrote what), ``task_id`` (only that task's
    lines, from the worker that ran its latest attempt) or ``actor_id`` (only that actor's
    lines, from its current worker, or its last one if it is dead). Ids are hex, as
    ``list_tasks`` and ``list_actors`` show them.

    ``tail``: only the last so many lines (-1: all, from the rotated ``.1`` on). ``follow``:
    then keep yielding new lines as they are written, reading again every ``_interval``
    seconds (``ZACTOR_LOG_FOLLOW_INTERVAL_S``), until the generator is closed or, for a
    task, an actor or a worker, once it ended and its file stopped growing. An unknown id, a
    missing file, a name that is not one (``"../x"``) or a dead node raise ValueError.
    ``suffix`` and ``attempt_number`` are accepted for Ray's sake (one file has both
    streams; the latest attempt is read); ``submission_id``: use ``zactor job logs``."""
    if sum(x is not None for x in (filename, actor_id, task_id, pid)) != 1:
        raise ValueError("get_log needs exactly one of filename, actor_id, task_id or pid")
    if submission_id is not None:
        raise ValueError("a job's output: zactor job logs, or "
                         "JobSubmissionClient.get_job_logs")
    from zactor import config

    interval = config.LOG_FOLLOW_INTERVAL_S if _interval is None else float(_interval)
    session = _Session(address, timeout)
    try:
        node_id = _node_id(session, node_id, node_ip)
        source = _resolve(session, node_id, filename, actor_id, task_id, pid)
        for line in _follow(session, source, tail, follow, interval, filter_ansi_code):
            yield line if encoding is None else line.decode(encoding, errors or "strict")
    finally:
        session.close()


def _follow(session: _Session, source: _Source, tail: int, follow: bool, interval: float,
            ansi: bool) -> Iterator[bytes]:
    name = source.filename
    lines = _Lines(source, ansi)
    offset = 0
    inode = None  # of the file followed: another one means it was rotated
    if tail is not None and tail >= 0 and source.cut is None:
        reply = _read(session, source, name, None, tail)
        got = lines.feed(reply["data"], final=not follow)
        offset = reply["offset"] + len(reply["data"])
        inode = reply.get("inode")
        if source.rotated and reply["offset"] == 0 and len(got) < tail:
            older = _Lines(source, ansi)
            try:
                before = _read(session, source, name + ".1", None, tail - len(got))
                got = older.feed(before["data"], final=True) + got
            except ValueError as exc:
                if "no log file" not in str(exc):
                    raise
        yield from got[-tail:] if tail else []
    else:
        kept: deque | None = deque(maxlen=tail) if tail is not None and tail >= 0 else None
        files = [name + ".1", name] if source.rotated else [name]
        for index, filename in enumerate(files):
            last = index == len(files) - 1
            for data, end, ino in _chunks(session, source, filename, missing_ok=not last):
                if last:
                    offset, inode = end, ino
                for line in lines.feed(data):
                    if kept is None:
                        yield line
                    else:
                        kept.append(line)
            if last and follow:
                break  # a partial last line waits for its end
            for line in lines.feed(b"", final=True):  # a file's last line, newline or not
                if kept is None:
                    yield line
                else:
                    kept.append(line)
        if kept is not None:
            yield from kept
    if not follow:
        return
    ended_once = False
    while True:
        reply = _read(session, source, name, offset)
        if inode is None:
            inode = reply.get("inode")
        if reply["size"] < offset or reply.get("inode") != inode:
            # Rotated: what followed our offset is in .1 now, then the new file from its start.
            if source.rotated:
                for data, _end, _ino in _chunks(session, source, name + ".1", offset, True):
                    yield from lines.feed(data)
                yield from lines.feed(b"", final=True)
            offset = 0
            inode = reply.get("inode")
            continue
        data = reply["data"]
        if data:
            offset = reply["offset"] + len(data)
            ended_once = False
            yield from lines.feed(data)
            continue
        if source.ended is not None and source.ended():
            if ended_once:  # ended, and nothing came after: all of it was read
                yield from lines.feed(b"", final=True)
                return
            ended_once = True
            continue
        time.sleep(interval)
