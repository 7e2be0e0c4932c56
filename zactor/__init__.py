"""zactor: a distributed actor and task runtime on ZeroMQ, with Ray Core's API.

Switch a Ray program over by changing its import: ``import zactor as ray``.

The names below load on first use (PEP 562), so the cluster's own processes — which import
this package too — never pay for the driver API they do not use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from zactor._version import __version__

if TYPE_CHECKING:
    import cloudpickle

    from zactor import actor, exceptions, remote_function, runtime_context, util
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
    from zactor._generator import DynamicObjectRefGenerator, ObjectRefGenerator
    from zactor._object_ref import ObjectRef
    from zactor._remote import remote
    from zactor._runtime_context import get_gpu_ids, get_runtime_context
    from zactor.util.state import timeline

_WHERE = {
    "ActorClass": "zactor._actor",
    "ActorHandle": "zactor._actor",
    "method": "zactor._actor",
    "DynamicObjectRefGenerator": "zactor._generator",
    "ObjectRefGenerator": "zactor._generator",
    "available_resources": "zactor._api",
    "cancel": "zactor._api",
    "cluster_resources": "zactor._api",
    "get": "zactor._api",
    "get_actor": "zactor._api",
    "init": "zactor._api",
    "is_initialized": "zactor._api",
    "kill": "zactor._api",
    "nodes": "zactor._api",
    "put": "zactor._api",
    "shutdown": "zactor._api",
    "wait": "zactor._api",
    "ObjectRef": "zactor._object_ref",
    "remote": "zactor._remote",
    "get_gpu_ids": "zactor._runtime_context",
    "get_runtime_context": "zactor._runtime_context",
    "timeline": "zactor.util.state",  # ray.timeline: recent tasks as a Chrome trace
    "actor": "zactor.actor",
    "exceptions": "zactor.exceptions",
    "remote_function": "zactor.remote_function",
    "runtime_context": "zactor.runtime_context",
    "runtime_env": "zactor.runtime_env",
    "data": "zactor.data",
    "train": "zactor.train",
    "tune": "zactor.tune",
    "serve": "zactor.serve",
    "util": "zactor.util",
    "cloudpickle": "cloudpickle",  # Ray re-exports the cloudpickle it uses: so do we
}

__all__ = [
    "ActorClass",
    "ActorHandle",
    "DynamicObjectRefGenerator",
    "ObjectRef",
    "ObjectRefGenerator",
    "__version__",
    "actor",
    "available_resources",
    "cancel",
    "cloudpickle",
    "cluster_resources",
    "data",
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
    "remote_function",
    "runtime_context",
    "runtime_env",
    "serve",
    "shutdown",
    "timeline",
    "train",
    "tune",
    "util",
    "wait",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'zactor' has no attribute {name!r}")
    module = importlib.import_module(where)
    value = module if where in (f"zactor.{name}", name) else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
