"""Nothing leaks: 10,000 objects of 1 MB made and dropped every way an object can be made and
referenced; the store's usage, its shared memory and the head's memory come back to where
they started."""

from __future__ import annotations

import gc
import os
import time

import numpy as np
import psutil
import pytest
from remote_helpers import wait_until

import zactor
import zactor.testing

MB = 1 << 20
ROUNDS = 20
PER_ROUND = 500  # ROUNDS * PER_ROUND = 10,000 objects of 1 MB


@zactor.remote
def make(i: int):
    return np.full(MB // 8, float(i))


@zactor.remote
def make_nested(i: int):
    """A task result that holds a ref to an object the task put itself."""
    return [zactor.put(np.full(MB // 8, float(i)))]


@zactor.remote
def read_nested(boxed):
    return float(zactor.get(boxed[0])[0])


def settle() -> None:
    gc.collect()
    zactor._state.core.flush_refs()


def store() -> dict:
    settle()
    return zactor.testing.store_stats()[0]


def arena_bytes() -> int:
    arena = os.path.join(zactor._state.core.welcome["shm_dir"], "arena")
    return os.stat(arena).st_blocks * 512


def head_rss() -> int:
    return psutil.Process(zactor.testing.head_pid()).memory_info().rss


def one_round(r: int) -> None:
    """500 objects of 1 MB: puts, task results, refs nested in puts and in results."""
    base = r * PER_ROUND
    puts = [zactor.put(np.full(MB // 8, float(base + i))) for i in range(150)]
    results = [make.remote(base + i) for i in range(150)]
    nested_puts = [zactor.put([zactor.put(np.full(MB // 8, float(base + i)))])
                   for i in range(100)]
    nested_results = [make_nested.remote(base + i) for i in range(100)]
    assert zactor.get(puts[-1])[0] == base + 149
    assert zactor.get(results[-1], timeout=60)[0] == base + 149
    inner = zactor.get(nested_puts[-1])[0]
    assert zactor.get(read_nested.remote([inner]), timeout=60) == base + 99
    assert zactor.get(zactor.get(nested_results[-1], timeout=60)[0])[0] == base + 99
    zactor.wait(results + nested_results, num_returns=250, timeout=120)


@pytest.mark.timeout(300)
def test_ten_thousand_objects_made_and_dropped_leave_nothing_behind(fresh_driver,
                                                                     monkeypatch):
    monkeypatch.setenv("ZACTOR_ARENA_TRIM_S", "0.5")
    zactor.init(num_cpus=2)
    # Warm up the code paths (first imports, first workers) before taking the baseline.
    one_round(ROUNDS)
    settle()
    wait_until(lambda: store()["used"] == 0, timeout=30, message="an empty store")
    wait_until(lambda: arena_bytes() == 0, timeout=30, message="no shared memory held")
    objects_before = zactor.testing.head_stats()["objects"]
    rss_before = head_rss()
    started = time.monotonic()
    for r in range(ROUNDS):
        one_round(r)
    print(f"10,000 objects of 1 MB in {time.monotonic() - started:.1f} s")
    wait_until(lambda: store()["used"] == 0, timeout=30,
               message="the store's usage to come back to zero")
    wait_until(lambda: zactor.testing.head_stats()["objects"] <= objects_before, timeout=30,
               message="the head's object table to shrink back")
    wait_until(lambda: arena_bytes() == 0, timeout=30,
               message="the store's shared memory to be given back")
    s = store()
    assert s["objects_on_disk"] == 0 and s["pending_writes"] == 0
    growth = head_rss() - rss_before
    print(f"head RSS: {rss_before / MB:.1f} MB before, grew by {growth / MB:.1f} MB")
    assert growth < 8 * MB, f"the head's memory grew by {growth / MB:.1f} MB"
