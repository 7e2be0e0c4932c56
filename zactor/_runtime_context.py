"""``zactor.get_runtime_context()``: who and where the calling code is."""

from __future__ import annotations

from typing import Any

from zactor import _state


class RuntimeContext:
    """Ray's RuntimeContext: ids of the job, node, worker, task and actor running this code."""

    def _worker(self) -> Any:
        return _state.worker

    def get_job_id(self) -> str:
        core = _state.core
        return core.welcome.get("session", "") if core else ""

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
