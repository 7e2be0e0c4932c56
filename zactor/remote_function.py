"""The remote function type at Ray's path (``ray.remote_function``)."""

from zactor._remote_function import RemoteFunction

__all__ = ["RemoteFunction"]
