"""The head's side of the state API (zactor.util.state, ``zactor list|summary|timeline``).

Two parts:

- ``TaskHistory``: a fixed-size ring of the tasks and actor calls that ended (plus the dead
  actors no handle reaches any more). ``TaskManager.finish`` appends one tuple per task — no
  dict, no formatting, no extra message: the hot path pays a clock read and an append, and
  the ring's bound (``config.TASK_HISTORY_MAX``) caps the memory whatever the workload.
- ``query``: builds Ray's rows (``ray.util.state`` field names) on request, from the live
  tables and the ring, filters them and applies the limit here, so that a client never pulls
  the whole history.

Errors the head made itself (a dead actor, a failed argument) are kept as their blobs and
read here only when listed, with an unpickler that admits zactor's own exception classes and
nothing else: the head still never unpickles user payloads.
"""

from __future__ import annotations

import collections
import io
import pickle
import time
from typing import TYPE_CHECKING, Any

from zactor import config
from zactor.protocol import S, TaskKind

if TYPE_CHECKING:
    from zactor.head.broker import Broker
    from zactor.head.records import ActorRecord, TaskRecord

_now = time.time

#: Ray's TaskType names, by zactor's task kinds.
TYPES = {TaskKind.TASK: "NORMAL_TASK", TaskKind.ACTOR_CREATE: "ACTOR_CREATION_TASK",
         TaskKind.ACTOR_CALL: "ACTOR_TASK"}
#: Ray's ErrorType names of zactor's exceptions; anything else a task raised is
#: TASK_EXECUTION_EXCEPTION.
ERROR_TYPES = {
    "WorkerCrashedError": "WORKER_DIED", "ActorDiedError": "ACTOR_DIED",
    "ActorUnavailableError": "ACTOR_UNAVAILABLE", "TaskCancelledError": "TASK_CANCELLED",
    "ObjectLostError": "OBJECT_LOST", "NodeDiedError": "NODE_DIED",
    "RuntimeEnvSetupError": "RUNTIME_ENV_SETUP_FAILED",
    "TaskUnschedulableError": "TASK_UNSCHEDULABLE_ERROR",
    "ActorUnschedulableError": "ACTOR_UNSCHEDULABLE_ERROR",
    "TaskPlacementGroupRemoved": "TASK_PLACEMENT_GROUP_REMOVED",
    "ActorPlacementGroupRemoved": "ACTOR_PLACEMENT_GROUP_REMOVED",
    "HeadRestartedError": "OWNER_DIED",
}
#: Characters of an error message a row carries.
MESSAGE_MAX = 1000

# Fields of a history tuple (see TaskHistory.record).
(H_ID, H_NAME, H_KIND, H_ACTOR, H_PARENT, H_NODE, H_PID, H_WORKER, H_CREATED, H_STARTED,
 H_ENDED, H_ERROR, H_ATTEMPT) = range(13)


class TaskHistory:
    """The tasks that ended, newest last, at most ``maxlen`` of them."""

    def __init__(self, maxlen: int, dead_actors_max: int | None = None) -> None:
        self.done: collections.deque = collections.deque(maxlen=max(1, maxlen))
        self.recorded = 0  # ever, to tell how many the ring forgot
        self.failed = 0  # of those, the ones that ended in an error (zactor.head.metrics)
        self.dead_actors: collections.deque = collections.deque(
            maxlen=max(1, dead_actors_max or config.DEAD_ACTORS_MAX))

    def record(self, task: TaskRecord) -> None:
        """``task`` ended (its error, if any, is on it). O(1): one tuple into the ring."""
        spec = task.spec
        worker = task.worker
        end = _now()
        start = task.started
        if worker is None:
            node = task.node
            pid = 0
            key = None
        else:
            node = worker.node
            pid = worker.pid
            key = worker.client.key
            if worker.actor is not None and spec[S.KIND] == TaskKind.ACTOR_CALL:
                # A one-at-a-time actor runs a call forwarded while it was busy only once
                # the previous one ends.
                if start < worker.last_end:
                    options = worker.actor.options
                    if not options.get("is_async") and (options.get("max_concurrency")
                                                        or 1) <= 1:
                        start = worker.last_end
                worker.last_end = end
        self.recorded += 1
        if task.error is not None:
            self.failed += 1
        self.done.append((task.task_id, spec[S.NAME], spec[S.KIND], spec[S.ACTOR_ID],
                          task.parent, node.node_id if node is not None else None, pid, key,
                          task.created, start, end, task.error, task.attempt))

    def actor_gone(self, head: Broker, actor: ActorRecord) -> None:
        """A dead actor left the actor table: its row is kept, a while (actors die rarely,
        so the row is built now)."""
        self.dead_actors.append(actor_row(head, actor))


# -- errors -------------------------------------------------------------------------------


class _ZactorOnly(pickle.Unpickler):
    """Unpickles zactor's own exceptions and the builtins they are made of; refuses every
    other class (a user's exception is never loaded in the head)."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "zactor.exceptions" or (module == "builtins" and name in {
                "Exception", "BaseException", "ValueError", "TimeoutError", "dict", "tuple",
                "list", "str", "int", "getattr"}):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not zactor's")


def _blob_error(blob: Any) -> tuple[str, str]:
    """(class name, message) of an error blob zactor made, or a placeholder."""
    try:
        from zactor import _serialization

        view = memoryview(blob)
        if view.nbytes and view[0] == _serialization._FLAG_LZ4:
            import lz4.block

            view = memoryview(lz4.block.decompress(view[1:]))
        _, nbuf, plen = _serialization._HEAD.unpack_from(view, 0)
        if nbuf:
            raise ValueError("buffers")
        off = _serialization._HEAD.size
        exc = _ZactorOnly(io.BytesIO(bytes(view[off:off + plen]))).load()
        name = getattr(exc, "cause_type_name", "") or type(exc).__name__
        return name, str(exc)
    except Exception:  # noqa: BLE001 - a user's error (a failed argument's): not read here
        return "TaskError", "it failed with the error of one of its arguments"


def error_fields(error: tuple | list | None) -> tuple[str | None, str | None]:
    """Ray's (error_type, error_message) of a history entry's error."""
    if error is None:
        return None, None
    name, message = error[0], error[1]
    if name is None:
        name, message = _blob_error(message)
    text = f"{name}: {message}" if message else name
    return ERROR_TYPES.get(name, "TASK_EXECUTION_EXCEPTION"), text[:MESSAGE_MAX]


# -- rows ---------------------------------------------------------------------------------


def _hex(value: bytes | None) -> str | None:
    return value.hex() if value else None


def _ms(seconds: float) -> int | None:
    return int(seconds * 1000) if seconds else None


def _job_id(head: Broker) -> str:
    # As get_runtime_context().get_job_id() says, in every driver of this cluster.
    return head.cfg["session"].encode().hex()


def _done_row(entry: tuple, job: str) -> dict:
    error_type, error_message = error_fields(entry[H_ERROR])
    name = entry[H_NAME]
    return {
        "task_id": entry[H_ID].hex(), "attempt_number": entry[H_ATTEMPT], "name": name,
        "state": "FAILED" if error_type else "FINISHED", "job_id": job,
        "actor_id": _hex(entry[H_ACTOR]), "type": TYPES.get(entry[H_KIND], "NORMAL_TASK"),
        "func_or_class_name": name, "parent_task_id": _hex(entry[H_PARENT]),
        "node_id": _hex(entry[H_NODE]), "worker_id": _hex(entry[H_WORKER]),
        "worker_pid": entry[H_PID] or None, "error_type": error_type,
        "error_message": error_message, "language": "PYTHON",
        "creation_time_ms": _ms(entry[H_CREATED]), "start_time_ms": _ms(entry[H_STARTED]),
        "end_time_ms": _ms(entry[H_ENDED]),
    }


def _live_state(task: TaskRecord) -> str:
    state = task.state
    if state == "running":
        return "RUNNING"
    if state == "waiting":
        return "PENDING_ARGS_AVAIL"
    if task.spec[S.KIND] == TaskKind.ACTOR_CALL:  # queued for its actor, or held in order
        return "PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY"
    return "PENDING_NODE_ASSIGNMENT"


def _live_row(task: TaskRecord, job: str) -> dict:
    spec = task.spec
    worker = task.worker
    node = worker.node if worker is not None else task.node
    name = spec[S.NAME]
    return {
        "task_id": task.task_id.hex(), "attempt_number": task.attempt, "name": name,
        "state": _live_state(task), "job_id": job, "actor_id": _hex(spec[S.ACTOR_ID]),
        "type": TYPES.get(spec[S.KIND], "NORMAL_TASK"), "func_or_class_name": name,
        "parent_task_id": _hex(task.parent),
        "node_id": node.node_id.hex() if node is not None else None,
        "worker_id": worker.client.key.hex() if worker is not None else None,
        "worker_pid": worker.pid if worker is not None else None, "error_type": None,
        "error_message": None, "language": "PYTHON",
        "creation_time_ms": _ms(task.created), "start_time_ms": _ms(task.started),
        "end_time_ms": None, "required_resources": dict(task.hold),
    }


def _actor_state(actor: ActorRecord) -> str:
    state = actor.state
    if state == "alive":
        return "ALIVE"
    if state == "dead":
        return "DEAD"
    if state == "pending":
        return "DEPENDENCIES_UNREADY" if actor.create.state == "waiting" else \
            "PENDING_CREATION"
    return "RESTARTING"  # restarting, stopping, stopped (its supervisor decides), recovering


def actor_row(head: Broker, actor: ActorRecord) -> dict:
    worker = actor.worker
    create = actor.create
    node = worker.node if worker is not None else create.node
    strategy = create.strategy
    death = None
    if actor.state == "dead" and actor.death_blob is not None:
        name, message = _blob_error(actor.death_blob)
        death = {"actor_died_error_context": {
            "error_message": f"{name}: {message}"[:MESSAGE_MAX],
            "actor_id": actor.actor_id.hex(), "class_name": actor.class_name,
            "name": actor.name or "", "ray_namespace": actor.namespace or ""}}
    return {
        "actor_id": actor.actor_id.hex(), "class_name": actor.class_name,
        "state": _actor_state(actor), "job_id": _job_id(head), "name": actor.name or "",
        "namespace": actor.namespace or "", "pid": worker.pid if worker is not None else None,
        "node_id": node.node_id.hex() if node is not None else None,
        "num_restarts": actor.restarts, "death_cause": death, "is_detached": actor.detached,
        "placement_group_id": strategy[1].hex() if strategy and strategy[0] == "pg" and
        isinstance(strategy[1], bytes) else None,
        "required_resources": dict(create.hold), "repr_name": "",
        # zactor's own: the supervision tree (zactor.supervision), drawn by the dashboard
        "supervisor_id": actor.supervisor.hex() if actor.supervisor is not None else None,
    }


def _node_rows(head: Broker) -> list[dict]:
    out = []
    for n in head.scheduler.nodes.values():
        out.append({
            "node_id": n.node_id.hex(), "node_ip": n.info.get("ip", "127.0.0.1"),
            "is_head_node": n is head.head_node, "state": "ALIVE" if n.alive else "DEAD",
            "state_message": n.info.get("removed"), "node_name": n.info.get("ip", "127.0.0.1"),
            "resources_total": dict(n.total), "labels": {},
            "hostname": n.info.get("hostname", ""),
        })
    return out


def _worker_rows(head: Broker) -> list[dict]:
    out = []
    for client in head.clients.values():
        if client.kind == "observer":
            continue
        node = client.node
        worker = client.worker
        out.append({
            "worker_id": client.key.hex(), "is_alive": True,
            "worker_type": "WORKER" if worker is not None else "DRIVER",
            "pid": client.pid, "node_id": node.node_id.hex() if node is not None else None,
            "ip": node.info.get("ip", "127.0.0.1") if node is not None else None,
            "actor_id": worker.actor.actor_id.hex() if worker is not None and
            worker.actor is not None else None,
            "task_id": worker.task.task_id.hex() if worker is not None and
            worker.task is not None else None,
        })
    return out


def _job_rows(head: Broker) -> list[dict]:
    out = [dict(info) for info in head.jobs.list()]
    job = _job_id(head)
    submitted = {info.get("driver_pid") for info in out}
    for client in head.drivers.values():
        if client.pid in submitted:
            continue
        out.append({"job_id": job, "submission_id": None, "type": "DRIVER",
                    "status": "RUNNING", "entrypoint": "", "driver_pid": client.pid,
                    "driver_info": {"id": client.key.hex(), "pid": str(client.pid)}})
    return out


def _pg_rows(head: Broker) -> list[dict]:
    out = []
    for info in head.pgs.table(None).values():
        out.append({
            "placement_group_id": info["placement_group_id"], "name": info["name"] or "",
            "state": info["state"], "strategy": info["strategy"],
            "bundles": [{"bundle_id": f"{info['placement_group_id']}-{i}",
                         "node_id": info["bundles_to_node_id"].get(i),
                         "unit_resources": spec} for i, spec in info["bundles"].items()],
            "is_detached": info["detached"], "namespace": info.get("namespace") or "",
        })
    return out


# -- queries ------------------------------------------------------------------------------


def _matcher(filters: list | None):
    """A predicate on rows for Ray's filters: [(key, "=" or "!=", value)], compared as
    strings, case-insensitively (as Ray compares string filter values)."""
    if not filters:
        return None
    tests = []
    for item in filters:
        if not isinstance(item, (list, tuple)) or len(item) != 3:
            raise ValueError(f"a filter is (key, predicate, value), got {item!r}")
        key, op, value = item
        if op not in ("=", "!="):
            raise ValueError(f"unsupported filter predicate {op!r}: use '=' or '!='")
        tests.append((str(key), op == "=", str(value).lower()))

    def match(row: dict) -> bool:
        for key, equal, value in tests:
            if key not in row:
                raise ValueError(f"cannot filter on {key!r}: the columns are "
                                 f"{', '.join(sorted(row))}")
            cell = row[key]
            cell = "" if cell is None else str(cell).lower()
            if (cell == value) != equal:
                return False
        return True

    return match


def select(rows: list[dict], filters: list | None, limit: int | None) -> list[dict]:
    """The ``rows`` that pass ``filters``, at most ``limit`` of them."""
    match = _matcher(filters)
    if match is not None:
        rows = [row for row in rows if match(row)]
    return rows if limit is None or limit < 0 else rows[:limit]


def _tasks(head: Broker):
    """Rows of every task known, live ones first, then the finished ones, newest first."""
    job = _job_id(head)
    for task in list(head.tasks.tasks.values()):
        yield _live_row(task, job)
    for entry in reversed(head.tasks.history.done):
        yield _done_row(entry, job)


def _actors(head: Broker):
    for actor in head.actors.actors.values():
        yield actor_row(head, actor)
    yield from reversed(head.tasks.history.dead_actors)


SOURCES = {
    "tasks": _tasks,
    "actors": _actors,
    "nodes": _node_rows,
    "workers": _worker_rows,
    "jobs": _job_rows,
    "placement_groups": _pg_rows,
}


def query(head: Broker, args: Any) -> dict:
    """``[resource, filters, limit]`` → ``{"rows", "total", "truncated"}``: at most
    ``limit`` matching rows, and how many matched in all."""
    resource, filters, limit = args
    source = SOURCES.get(resource)
    if source is None:
        raise ValueError(f"unknown resource {resource!r}: one of {', '.join(SOURCES)}")
    match = _matcher(filters)
    limit = None if limit is None or int(limit) < 0 else int(limit)
    rows: list[dict] = []
    total = 0
    for row in source(head):
        if match is not None and not match(row):
            continue
        total += 1
        if limit is None or len(rows) < limit:
            rows.append(row)
        elif match is None and resource == "tasks":
            # Unfiltered: the count is known without building the other rows.
            total = len(head.tasks.tasks) + len(head.tasks.history.done)
            break
    return {"rows": rows, "total": total, "truncated": len(rows) < total,
            "forgotten": head.tasks.history.recorded - len(head.tasks.history.done)
            if resource == "tasks" else 0}


def summary(head: Broker, args: Any) -> dict:
    """Ray's summarize_tasks / summarize_actors: counts by state per function or class."""
    resource = args[0]
    groups: dict[str, dict] = {}
    if resource == "tasks":
        total = actor_tasks = scheduled = 0
        for row in _tasks(head):
            total += 1
            if row["type"] == "ACTOR_TASK":
                actor_tasks += 1
            elif row["type"] == "ACTOR_CREATION_TASK":
                scheduled += 1
            name = row["func_or_class_name"]
            group = groups.get(name)
            if group is None:
                group = groups[name] = {"func_or_class_name": name, "type": row["type"],
                                        "state_counts": {}}
            counts = group["state_counts"]
            counts[row["state"]] = counts.get(row["state"], 0) + 1
        return {"cluster": {"summary": groups, "total_tasks": total,
                            "total_actor_tasks": actor_tasks,
                            "total_actor_scheduled": scheduled, "summary_by": "func_name"}}
    if resource == "actors":
        total = 0
        for row in _actors(head):
            total += 1
            name = row["class_name"]
            group = groups.get(name)
            if group is None:
                group = groups[name] = {"class_name": name, "state_counts": {}}
            counts = group["state_counts"]
            counts[row["state"]] = counts.get(row["state"], 0) + 1
        return {"cluster": {"summary": groups, "total_actors": total, "summary_by": "class"}}
    raise ValueError(f"cannot summarize {resource!r}: 'tasks' or 'actors'")


def timeline(head: Broker, args: Any) -> list[list]:
    """The finished tasks of the history, oldest first, compactly: [task id, name, state,
    node id, worker pid, start, end, type, attempt] (times in epoch seconds)."""
    out = []
    for entry in head.tasks.history.done:
        start = entry[H_STARTED] or entry[H_CREATED]
        error_type = None if entry[H_ERROR] is None else "FAILED"
        out.append([entry[H_ID].hex(), entry[H_NAME], error_type or "FINISHED",
                    _hex(entry[H_NODE]) or "", entry[H_PID], start, entry[H_ENDED],
                    TYPES.get(entry[H_KIND], "NORMAL_TASK"), entry[H_ATTEMPT]])
    return out
