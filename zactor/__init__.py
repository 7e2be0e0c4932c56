"""zactor: a distributed actor and task runtime on ZeroMQ, with Ray Core's API.

Switch a Ray program over by changing its import: ``import zactor as ray``.
"""

from zactor import exceptions, util
from zactor._actor import ActorClass, ActorHandle, method
from zactor._api import (
    available_resources,
    cancel,
    cluster_resources,
    get,
    get_actor,
    init,
    is_initialized,
    kill,
    nodes,
    put,
    shutdown,
    wait,
)
from zactor._object_ref import ObjectRef
from zactor._remote import remote
from zactor._runtime_context import get_gpu_ids, get_runtime_context
from zactor._version import __version__

__all__ = [
    "ActorClass",
    "ActorHandle",
    "ObjectRef",
    "__version__",
    "available_resources",
    "cancel",
    "cluster_resources",
    "exceptions",
    "get",
    "get_actor",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "kill",
    "method",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "util",
    "wait",
]
