"""A capped object store: past ``object_store_memory`` the least recently used objects spill
to disk and come back on get; objects being read are never moved; nothing stays behind.

The cluster's store is 256 MiB; the working set is 1 GiB of 32 MiB arrays.
"""

from __future__ import annotations

import gc
import os
import threading

import numpy as np
import pytest
from remote_helpers import wait_until

import zactor
import zactor.testing

STORE = 256 << 20
ITEM = 32 << 20
COUNT = 32  # 1 GiB in all

CLUSTER_KWARGS = {"num_cpus": 2, "object_store_memory": STORE}
pytestmark = pytest.mark.usefixtures("cluster")


def arena() -> str:
    return os.path.join(zactor._state.core.welcome["shm_dir"], "arena")


def shm_bytes() -> int:
    """Shared memory held by this session's store directory (allocated pages)."""
    shm_dir = zactor._state.core.welcome["shm_dir"]
    return sum(os.stat(os.path.join(shm_dir, name)).st_blocks * 512
               for name in os.listdir(shm_dir))


def stats() -> dict:
    zactor._state.core.flush_refs()
    return zactor.testing.store_stats()[0]


def array(i: int) -> np.ndarray:
    return np.full(ITEM // 8, float(i))


class PeakSampler:
    """Samples the session's /dev/shm use every few milliseconds while it runs."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, shm_bytes())

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@zactor.remote
def first_and_sum(arr):
    return float(arr[0]), float(arr.sum())


@pytest.mark.timeout(240)
def test_a_working_set_four_times_the_store_spills_and_reads_back_in_both_orders():
    assert stats()["capacity"] == STORE
    before = stats()["spilled_total"]
    with PeakSampler() as shm:
        refs = [zactor.put(array(i)) for i in range(COUNT)]
        assert stats()["spilled_total"] - before >= COUNT - STORE // ITEM
        for order in (range(COUNT), reversed(range(COUNT))):
            for i in order:
                value = zactor.get(refs[i], timeout=60)
                assert value.shape == (ITEM // 8,) and value[0] == i and value[-1] == i
                assert np.array_equal(value, array(i))
                del value
    assert shm.peak <= STORE + ITEM, f"/dev/shm peaked at {shm.peak >> 20} MiB"
    s = stats()
    assert s["fallback_total"] == 0, "every array fit in the store once others were spilled"
    assert s["used"] <= STORE


@pytest.mark.timeout(240)
def test_tasks_read_spilled_arguments_and_their_results_spill_too():
    refs = [zactor.put(array(i)) for i in range(12)]
    sums = zactor.get([first_and_sum.remote(r) for r in refs], timeout=120)
    assert sums == [(float(i), float(i) * (ITEM // 8)) for i in range(12)]


@zactor.remote
def make(i: int):
    return array(i)


@pytest.mark.timeout(240)
def test_task_results_past_the_cap_spill_and_come_back():
    refs = [make.remote(i) for i in range(12)]
    for i, ref in enumerate(refs):
        assert zactor.get(ref, timeout=60)[0] == i


@pytest.mark.timeout(120)
def test_an_object_being_read_is_never_spilled_or_overwritten():
    held = zactor.get(zactor.put(array(7)), timeout=30)  # the ref is gone; the view is not
    address = held.__array_interface__["data"][0]
    gc.collect()
    churn = [zactor.put(array(100 + i)) for i in range(12)]  # 1.5x the store
    assert held[0] == 7 and held[-1] == 7 and np.array_equal(held, array(7))
    assert held.__array_interface__["data"][0] == address
    for i, ref in enumerate(churn):
        assert zactor.get(ref, timeout=60)[0] == 100 + i
    del held, churn
    gc.collect()
    wait_until(lambda: stats()["being_read_after_free"] == 0, timeout=20,
               message="the region of the dropped view to be reused")


@pytest.mark.timeout(120)
def test_spilled_files_are_removed_when_their_objects_are_freed():
    spill_dir = stats()["spill_dir"]
    refs = [zactor.put(array(i)) for i in range(12)]
    assert stats()["objects_on_disk"] >= 12 - STORE // ITEM
    assert os.listdir(spill_dir)
    del refs
    gc.collect()
    wait_until(lambda: stats()["objects_on_disk"] == 0 and not os.listdir(spill_dir),
               timeout=20, message="the spill files of freed objects to be removed")


@pytest.mark.timeout(120)
def test_an_object_larger_than_the_store_goes_to_disk():
    big = np.arange((STORE + ITEM) // 8, dtype=np.float64)
    ref = zactor.put(big)
    assert stats()["fallback_total"] >= 1
    back = zactor.get(ref, timeout=60)
    assert np.array_equal(back, big) and not back.flags.writeable
    assert zactor.get(first_and_sum.remote(ref), timeout=60) == (0.0, float(big.sum()))


def test_two_gets_of_one_object_share_memory():
    ref = zactor.put(array(3))
    a, b = zactor.get(ref), zactor.get(ref)
    assert a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
