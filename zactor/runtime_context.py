"""The runtime context at Ray's path (``ray.runtime_context``)."""

from zactor._runtime_context import RuntimeContext, get_runtime_context

__all__ = ["RuntimeContext", "get_runtime_context"]
