"""``zactor.get_runtime_context()``: who and where the calling code is."""

from __future__ import annotations

from typing import Any

from zactor import _state


class BaseID:
    """An id as Ray's ``JobID``/``NodeID``/``TaskID``/``ActorID``: ``hex()``, ``binary()``."""

    __slots__ = ("_bytes",)

    def __init__(self, raw: bytes) -> None:
        self._bytes = raw

    def binary(self) -> bytes:
        return self._bytes

    def hex(self) -> str:
        return self._bytes.hex()

    def is_nil(self) -> bool:
        return not any(self._bytes)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._bytes == self._bytes  # type: ignore

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._bytes))

    def __str__(self) -> str:
        return self.hex()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hex()})"


class JobID(BaseID):
    __slots__ = ()


class NodeID(BaseID):
    __slots__ = ()


class TaskID(BaseID):
    __slots__ = ()


class ActorID(BaseID):
    __slots__ = ()


class RuntimeContext:
    """Ray's RuntimeContext: ids of the job, node, worker, task and actor running this code."""

    def _worker(self) -> Any:
        return _state.worker

    @property
    def job_id(self) -> JobID:
        """The job's id (``get_job_id()`` gives it as hex)."""
        return JobID(bytes.fromhex(self.get_job_id()))

    @property
    def node_id(self) -> NodeID:
        """The id of the node this code runs on."""
        return NodeID(bytes.fromhex(self.get_node_id()))

    @property
    def task_id(self) -> TaskID | None:
        """The running task's id; None in a driver."""
        task = self.get_task_id()
        return None if task is None else TaskID(bytes.fromhex(task))

    @property
    def actor_id(self) -> ActorID | None:
        """The current actor's id; None outside an actor."""
        actor = self.get_actor_id()
        return None if actor is None else ActorID(bytes.fromhex(actor))

    def get(self) -> dict[str, Any]:
        """Ray's deprecated dict form: job, node and namespace, with task and actor ids in a
        worker."""
        out: dict[str, Any] = {"job_id": self.job_id, "node_id": self.node_id,
                               "namespace": self.namespace}
        if self._worker() is not None:
            if self.task_id is not None:
                out["task_id"] = self.task_id
            if self.actor_id is not None:
                out["actor_id"] = self.actor_id
        return out

    def get_task_name(self) -> str | None:
        worker = self._worker()
        return (worker.context.name or None) if worker is not None else None

    def is_canceled(self) -> bool:
        """Whether ``cancel`` was called on the running task (a sync actor method can poll
        this and return early; its caller then gets TaskCancelledError)."""
        worker = self._worker()
        if worker is None:
            raise RuntimeError("is_canceled() is only available in a task or an actor")
        if worker.aloop is not None:
            raise RuntimeError("is_canceled() is not supported in an async actor")
        return worker.is_canceled()

    @property
    def runtime_env(self):
        """The runtime environment of this task or actor (of the job, in a driver), in its
        resolved form: packages named by their URIs."""
        from zactor.runtime_env import RuntimeEnv

        core = _state.core
        return RuntimeEnv(_validate=False, **((core.runtime_env if core else None) or {}))

    def get_runtime_env_string(self) -> str:
        import json

        return json.dumps(dict(self.runtime_env))

    def get_job_id(self) -> str:
        core = _state.core
        return core.welcome.get("session", "").encode().hex() if core else ""

    def get_node_id(self) -> str:
        worker = self._worker()
        if worker is not None:
            return worker.node_id.hex()
        core = _state.core
        node = core.welcome.get("head_node_id") if core else None
        return node.hex() if node else ""

    def get_worker_id(self) -> str:
        core = _state.core
        return core.key.hex() if core else ""

    def get_task_id(self) -> str | None:
        worker = self._worker()
        if worker is None or worker.context.task_id is None:
            return None
        return worker.context.task_id.hex()

    def get_actor_id(self) -> str | None:
        worker = self._worker()
        if worker is None or worker.actor_id is None:
            return None
        return worker.actor_id.hex()

    def get_actor_name(self) -> str | None:
        worker = self._worker()
        return worker.actor_name or None if worker is not None else None

    @property
    def namespace(self) -> str:
        from zactor._api import current_namespace

        return current_namespace()

    def get_assigned_resources(self) -> dict[str, Any]:
        worker = self._worker()
        if worker is None:
            return {}
        placement = worker.placement()
        return dict(placement[0]) if placement else {}

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        return {"GPU": [str(i) for i in get_gpu_ids()]}

    @property
    def was_current_actor_reconstructed(self) -> bool:
        worker = self._worker()
        return bool(worker is not None and worker.actor_id is not None and worker.restarts)

    @property
    def current_actor(self) -> Any:
        worker = self._worker()
        if worker is None or worker.actor_id is None:
            raise RuntimeError("current_actor is only available inside an actor")
        from zactor._actor import ActorHandle

        return ActorHandle(worker.actor_id, worker.actor_meta, _owned=False)


def get_runtime_context() -> RuntimeContext:
    """The runtime context of the calling code (driver, task or actor)."""
    return RuntimeContext()


def get_gpu_ids() -> list[int]:
    """Indices of the GPUs assigned to the current task or actor (empty in a driver)."""
    worker = _state.worker
    if worker is None:
        return []
    placement = worker.placement()
    return list(placement[1]) if placement else []
