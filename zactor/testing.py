"""Tools for testing programs that use zactor (and zactor itself)."""

from __future__ import annotations

from zactor import _api, _state


def head_address() -> str:
    """The head's ZeroMQ endpoint of the current embedded cluster."""
    driver = _state.driver
    if driver is None or driver.address is None:
        raise RuntimeError("not connected to a cluster")
    return driver.address


def head_stats() -> dict:
    """Counters from the head: ``dropped_messages``, ``tasks``, ``objects``, ``workers``..."""
    return _api.core().request("stats")


def worker_pids() -> list[int]:
    """Process ids of the cluster's live workers."""
    return _api.core().request("worker_pids")


def lose_object(ref) -> bool:
    """Fault injection: drop the stored copy of a large object (an ``ObjectRef`` or its id),
    as a failing node would; the next read finds it gone. False if there was no such copy
    (small objects live in the head and cannot be lost this way).

    Example::

        ref = make_big_array.remote()
        zactor.wait([ref])
        zactor.testing.lose_object(ref)
        zactor.get(ref)   # rebuilt by re-running make_big_array (its lineage)
    """
    object_id = ref if isinstance(ref, bytes) else ref.binary()
    return bool(_api.core().request("lose_object", object_id))


def objects_exist(ids: list) -> list[bool]:
    """For each ``ObjectRef`` (or object id), whether the head still keeps the object."""
    return _api.core().request("objects_exist",
                               [i if isinstance(i, bytes) else i.binary() for i in ids])


def store_stats() -> list[dict]:
    """Per node: the object store's ``capacity`` and ``used`` bytes, objects in memory and
    on disk, and spilling counters."""
    return _api.core().request("store_stats")


def head_pid() -> int:
    """Process id of the head of the embedded cluster this driver started."""
    driver = _state.driver
    if driver is None or driver.cluster is None or driver.cluster.proc is None:
        raise RuntimeError("this driver did not start an embedded cluster")
    return driver.cluster.proc.pid


from zactor._cluster_utils import Cluster, ClusterNode  # noqa: E402 - re-exported

__all__ = ["Cluster", "ClusterNode", "head_address", "head_pid", "head_stats", "lose_object",
           "objects_exist", "store_stats", "worker_pids"]
