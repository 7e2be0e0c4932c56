"""Nested tasks never deadlock a full pool: a task blocked in get lends its CPU and its children
get workers of their own, however deep the recursion (DESIGN §2). The number of such workers is
bounded by memory, not by a count, and the drivers hear of it when it grows or hits the bound.
"""

from __future__ import annotations

import logging

import pytest
from remote_helpers import wait_until

import zactor
import zactor.testing
from zactor import config

DEPTH = 120


@zactor.remote
def descend(depth: int) -> int:
    if depth == 0:
        return 0
    return zactor.get(descend.remote(depth - 1)) + 1


@zactor.remote
def quick_sort(values: list) -> list:
    """The recursive quicksort of Ray's documentation (pattern_tree_of_tasks.py), smaller."""
    if len(values) <= 2000:
        return sorted(values)
    pivot = values.pop()
    lesser = [v for v in values if v <= pivot]
    greater = [v for v in values if v > pivot]
    return zactor.get(quick_sort.remote(lesser)) + [pivot] + zactor.get(quick_sort.remote(greater))


@pytest.mark.timeout(180)
def test_a_recursion_deeper_than_the_worker_cap_finishes_on_two_cpus(fresh_driver, caplog):
    zactor.init(num_cpus=2)
    cap = 2 * config.MAX_WORKERS_PER_CPU
    assert DEPTH > 5 * cap, "the recursion must go well past the per-CPU worker cap"
    with caplog.at_level(logging.WARNING, logger="zactor._client"):
        assert zactor.get(descend.remote(DEPTH), timeout=150) == DEPTH
        wait_until(lambda: any("worker processes have been started" in r.getMessage()
                               for r in caplog.records), timeout=10,
                   message="the driver warned of the growing worker count")
    warning = next(r for r in caplog.records if "worker processes have been started" in
                   r.getMessage())
    assert warning.levelno == logging.WARNING and "blocked in get()" in warning.getMessage()


@pytest.mark.timeout(120)
def test_the_tree_of_tasks_pattern_sorts(fresh_driver):
    import random

    zactor.init(num_cpus=2)
    values = [random.randrange(1_000_000) for _ in range(200_000)]
    assert zactor.get(quick_sort.remote(list(values)), timeout=100) == sorted(values)


@pytest.mark.timeout(120)
def test_when_memory_bounds_the_workers_the_driver_is_told_loudly(fresh_driver, caplog,
                                                                   monkeypatch):
    # Pretend each worker needs more memory than the machine has: no worker may start past the
    # cap, so the recursion stalls there, and the driver must hear why.
    monkeypatch.setenv("ZACTOR_WORKER_MEMORY_ESTIMATE", str(1 << 50))
    zactor.init(num_cpus=2)
    cap = 2 * config.MAX_WORKERS_PER_CPU
    with caplog.at_level(logging.ERROR, logger="zactor._client"):
        ref = descend.remote(cap + 10)
        wait_until(lambda: any("Cannot start" in r.getMessage() for r in caplog.records),
                   timeout=60, message="an error saying workers cannot start")
    message = next(r.getMessage() for r in caplog.records if "Cannot start" in r.getMessage())
    assert "memory" in message and "blocked in get()" in message
    assert len(zactor.testing.worker_pids()) <= cap
    zactor.cancel(ref, force=True)
