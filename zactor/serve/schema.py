"""``serve.status()``'s shape (Ray's ``ray.serve.schema``): applications with their status,
deployments with theirs and how many replicas are in each state."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class _Status(str, enum.Enum):
    """A status that prints as its name, as Ray's do."""

    def __str__(self) -> str:
        return self.value


class ApplicationStatus(_Status):
    NOT_STARTED = "NOT_STARTED"
    DEPLOYING = "DEPLOYING"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    RUNNING = "RUNNING"
    UNHEALTHY = "UNHEALTHY"
    DELETING = "DELETING"



class DeploymentStatus(_Status):
    UPDATING = "UPDATING"
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    UPSCALING = "UPSCALING"
    DOWNSCALING = "DOWNSCALING"



class ReplicaState(_Status):
    STARTING = "STARTING"
    UPDATING = "UPDATING"
    RECOVERING = "RECOVERING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"



class ProxyStatus(_Status):
    STARTING = "STARTING"
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"



@dataclass
class DeploymentStatusOverview:
    status: DeploymentStatus
    status_trigger: str
    replica_states: dict[ReplicaState, int]
    message: str = ""


@dataclass
class ApplicationStatusOverview:
    status: ApplicationStatus
    message: str
    last_deployed_time_s: float
    deployments: dict[str, DeploymentStatusOverview]
    route_prefix: str | None = None


@dataclass
class ServeStatus:
    proxies: dict[str, ProxyStatus] = field(default_factory=dict)
    applications: dict[str, ApplicationStatusOverview] = field(default_factory=dict)
    target_capacity: float | None = None

    @classmethod
    def _from_dict(cls, raw: dict) -> ServeStatus:
        apps = {}
        for name, app in raw["applications"].items():
            deps = {d: DeploymentStatusOverview(
                status=DeploymentStatus(v["status"]), status_trigger=v["status_trigger"],
                replica_states={ReplicaState(k): n for k, n in v["replica_states"].items()},
                message=v["message"]) for d, v in app["deployments"].items()}
            apps[name] = ApplicationStatusOverview(
                status=ApplicationStatus(app["status"]), message=app["message"],
                last_deployed_time_s=app["last_deployed_time_s"], deployments=deps,
                route_prefix=app["route_prefix"])
        return cls(proxies={k: ProxyStatus(v) for k, v in raw["proxies"].items()},
                   applications=apps)

    def to_dict(self) -> dict:
        """Plain types (what ``zactor serve status`` prints as YAML)."""
        return {
            "proxies": {k: str(v) for k, v in self.proxies.items()},
            "applications": {name: {
                "status": str(app.status), "message": app.message,
                "route_prefix": app.route_prefix,
                "last_deployed_time_s": app.last_deployed_time_s,
                "deployments": {d: {"status": str(v.status),
                                    "status_trigger": v.status_trigger,
                                    "replica_states": {str(k): n for k, n in
                                                       v.replica_states.items()},
                                    "message": v.message}
                                for d, v in app.deployments.items()}}
                for name, app in self.applications.items()},
        }
