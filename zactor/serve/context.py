"""What a replica knows about itself (``serve.get_replica_context()``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zactor.serve.exceptions import RayServeException


@dataclass(frozen=True)
class DeploymentID:
    name: str
    app_name: str = "default"


@dataclass(frozen=True)
class ReplicaID:
    unique_id: str
    deployment_id: DeploymentID

    def to_full_id_str(self) -> str:
        return f"{self.deployment_id.app_name}#{self.deployment_id.name}#{self.unique_id}"


@dataclass
class ReplicaContext:
    """Ray's ``ReplicaContext``: which replica, of which deployment, in which application."""

    replica_id: ReplicaID
    servable_object: Any = None

    @property
    def app_name(self) -> str:
        return self.replica_id.deployment_id.app_name

    @property
    def deployment(self) -> str:
        return self.replica_id.deployment_id.name

    @property
    def replica_tag(self) -> str:
        return self.replica_id.unique_id


_current: ReplicaContext | None = None


def _set(context: ReplicaContext) -> None:
    global _current
    _current = context


def get_replica_context() -> ReplicaContext:
    """The context of the replica this code runs in; raises outside a replica.

        @serve.deployment
        class Model:
            def __call__(self):
                return serve.get_replica_context().replica_tag
    """
    if _current is None:
        raise RayServeException("get_replica_context() may only be called from within a "
                                "Serve replica")
    return _current
