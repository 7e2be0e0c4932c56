"""zactor.serve: Ray Serve's API on zactor — deployments as supervised actor replicas behind
uvicorn and starlette.

    from zactor import serve

    @serve.deployment(num_replicas=2)
    class Doubler:
        async def __call__(self, request):
            return {"twice": 2 * (await request.json())["x"]}

    handle = serve.run(Doubler.bind(), route_prefix="/double")
    # curl -d '{"x": 21}' http://127.0.0.1:8000/double   ->   {"twice":42}

Each deployment's replicas are children of a one_for_one supervisor (zactor.supervision): a
replica whose process dies is rebuilt in place, one that fails its health check is replaced.
The controller (a detached actor) rolls replicas over on a redeploy and scales them; every
process with a handle routes its own requests (power of two choices, bounded queues).
"""

from __future__ import annotations

from zactor.serve.api import (
    delete,
    get_app_handle,
    get_deployment_handle,
    ingress,
    run,
    shutdown,
    start,
    status,
)
from zactor.serve.batching import batch
from zactor.serve.config import AutoscalingConfig, HTTPOptions, LoggingConfig
from zactor.serve.context import ReplicaContext, get_replica_context
from zactor.serve.deployment import Application, Deployment, deployment
from zactor.serve.handle import DeploymentHandle, DeploymentResponse

__all__ = [
    "Application",
    "AutoscalingConfig",
    "Deployment",
    "DeploymentHandle",
    "DeploymentResponse",
    "HTTPOptions",
    "LoggingConfig",
    "ReplicaContext",
    "batch",
    "delete",
    "deployment",
    "get_app_handle",
    "get_deployment_handle",
    "get_replica_context",
    "ingress",
    "run",
    "shutdown",
    "start",
    "status",
]
