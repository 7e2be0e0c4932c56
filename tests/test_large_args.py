"""Large task arguments: stored as objects of their own, once for all the tasks they are
passed to, and never stale when the caller changes them in between."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from remote_helpers import touch, wait_for_path, wait_until

import zactor
import zactor.testing

pytestmark = pytest.mark.usefixtures("cluster")

SIZE = 8 << 20


@zactor.remote
def first_after(gate: str, arr):
    wait_for_path(gate)
    return float(arr[0]), bool(arr.flags.writeable)


@zactor.remote
def first(arr, scale=1):
    return float(arr[0]) * scale


def used() -> int:
    gc.collect()
    zactor._state.core.flush_refs()
    return zactor.testing.store_stats()[0]["used"]


@pytest.mark.timeout(120)
def test_one_array_passed_to_many_pending_tasks_is_stored_once(tmp_path):
    gate = str(tmp_path / "gate")
    before = used()
    big = np.full(SIZE // 8, 7.0)
    refs = [first_after.remote(gate, big) for _ in range(20)]
    stored = used() - before
    # One copy, plus at most the writer's spare region of the same size (zactor._object_store)
    # where 20 copies would take 160 MiB.
    assert SIZE <= stored <= 2 * (SIZE + 8192), f"{stored >> 20} MiB stored for 8 MiB"
    assert zactor.testing.head_stats()["objects"] <= 1 + 20 + 5, "one object for the array"
    touch(gate)
    assert zactor.get(refs, timeout=60) == [(7.0, False)] * 20
    del refs
    wait_until(lambda: used() <= before, timeout=20,
               message="the argument's copy to be freed once its tasks are done")


@pytest.mark.timeout(120)
def test_an_array_changed_between_calls_is_stored_again(tmp_path):
    gate = str(tmp_path / "gate")
    big = np.zeros(SIZE // 8)
    refs = []
    for i in range(5):
        big[0] = i
        refs.append(first_after.remote(gate, big))
    touch(gate)
    assert [r[0] for r in zactor.get(refs, timeout=60)] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_large_and_small_arguments_mix():
    big = np.full(SIZE // 8, 3.0)
    assert zactor.get([first.remote(big, scale=s) for s in (1, 2, 3)], timeout=60) == \
        [3.0, 6.0, 9.0]
    # Called one at a time, each call may find the previous copy freed: it stores anew.
    assert [zactor.get(first.remote(big), timeout=30) for _ in range(5)] == [3.0] * 5
