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


def head_pid() -> int:
    """Process id of the head of the embedded cluster this driver started."""
    driver = _state.driver
    if driver is None or driver.cluster is None or driver.cluster.proc is None:
        raise RuntimeError("this driver did not start an embedded cluster")
    return driver.cluster.proc.pid
