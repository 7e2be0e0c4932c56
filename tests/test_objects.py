"""Objects: put/get of many types, large numpy arrays through shared memory, wait semantics."""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import gc
import mmap
import os
import pickle
import time
import uuid

import numpy as np
import pytest
from remote_helpers import Point, block_until, identity, square, touch, wait_until

import zactor
import zactor.testing
from zactor import config
from zactor.exceptions import GetTimeoutError

pytestmark = pytest.mark.usefixtures("cluster")

HUNDRED_MB = 100 * 1024 * 1024


@zactor.remote
def checksum(arr):
    return int(arr.shape[0]), int(arr[::4096].astype(np.int64).sum()), bool(arr.flags.writeable)


@zactor.remote
def make_array(n):
    arr = np.arange(n, dtype=np.uint8)
    return arr


ROUNDTRIP_VALUES = [
    0, -1, 2**100, 3.25, float("inf"), complex(1, -2), True, None, "", "text", "ünïcødé ✓",
    b"", b"\x00\xffbytes", bytearray(b"mutable"), [], [1, [2, [3]]], (), (1, "two", 3.0),
    {}, {"a": 1, 2: "b", (3, 4): [5]}, {1, 2, 3}, frozenset({"x"}), range(3, 30, 3),
    collections.OrderedDict(a=1, b=2), collections.Counter("hello"),
    datetime.datetime(2024, 1, 2, 3, 4, 5), datetime.timedelta(days=3),
    decimal.Decimal("1.10"), fractions.Fraction(3, 7), uuid.UUID(int=12345),
    Point(1, 2), np.arange(10), np.float32(1.5), np.array(["a", "bc"]),
    b"x" * (1 << 20), list(range(100_000)),
]


@pytest.mark.parametrize("value", ROUNDTRIP_VALUES, ids=lambda v: type(v).__name__)
def test_put_get_roundtrip_preserves_value_and_type(value):
    out = zactor.get(zactor.put(value))
    assert type(out) is type(value)
    if isinstance(value, np.ndarray):
        assert np.array_equal(out, value) and out.dtype == value.dtype
    else:
        assert out == value


def test_values_roundtrip_through_a_task():
    values = [v for v in ROUNDTRIP_VALUES if not isinstance(v, np.ndarray)]
    assert zactor.get(identity.remote(values)) == values


def test_put_returns_an_object_ref_that_tasks_accept():
    ref = zactor.put([1, 2, 3])
    assert isinstance(ref, zactor.ObjectRef)
    assert zactor.get(identity.remote(ref)) == [1, 2, 3]


def test_get_of_a_list_returns_values_in_order_including_duplicates():
    refs = [zactor.put(i) for i in range(5)]
    assert zactor.get(refs + refs[:2]) == [0, 1, 2, 3, 4, 0, 1]
    assert zactor.get([]) == []


def test_object_refs_are_hashable_and_distinct_per_object():
    a, b = zactor.put(1), zactor.put(1)
    assert a != b
    assert len({a, b, a}) == 2


def test_object_ref_survives_pickling_inside_the_driver():
    ref = zactor.put("pickled")
    assert zactor.get(pickle.loads(pickle.dumps(ref))) == "pickled"


@pytest.mark.timeout(120)
def test_hundred_megabyte_array_roundtrips_through_put():
    arr = np.random.default_rng(0).integers(0, 255, HUNDRED_MB, dtype=np.uint8)
    out = zactor.get(zactor.put(arr), timeout=60)
    assert out.shape == arr.shape and out.dtype == arr.dtype
    assert np.array_equal(out, arr)


@pytest.mark.timeout(120)
def test_hundred_megabyte_array_as_task_argument():
    arr = np.full(HUNDRED_MB, 3, dtype=np.uint8)
    expected = int(arr[::4096].astype(np.int64).sum())
    # Large arguments reach the task as read-only zero-copy views, as in Ray.
    assert zactor.get(checksum.remote(arr), timeout=60) == (HUNDRED_MB, expected, False)
    ref = zactor.put(arr)
    results = zactor.get([checksum.remote(ref) for _ in range(3)], timeout=60)
    assert results == [(HUNDRED_MB, expected, False)] * 3


@pytest.mark.timeout(120)
def test_hundred_megabyte_array_as_task_result():
    out = zactor.get(make_array.remote(HUNDRED_MB), timeout=60)
    assert out.shape == (HUNDRED_MB,)
    assert np.array_equal(out[:512], np.arange(512, dtype=np.uint8))
    assert int(out[-1]) == (HUNDRED_MB - 1) % 256
    assert not out.flags.writeable


def _base_chain_end(arr: np.ndarray):
    base = arr
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return base


def test_get_of_a_put_numpy_array_is_a_read_only_zero_copy_view():
    arr = np.arange(2_000_000, dtype=np.float64)  # 16 MB: well above the inline threshold
    out = zactor.get(zactor.put(arr))
    assert np.array_equal(out, arr)
    assert not out.flags.writeable
    assert out.flags.owndata is False
    end = _base_chain_end(out)
    assert isinstance(end, (mmap.mmap, memoryview, pickle.PickleBuffer)), type(end)
    with pytest.raises(ValueError):
        out[0] = 1.0


def test_large_array_inside_a_structure_is_zero_copy_too():
    payload = {"weights": np.ones((1000, 1000)), "name": "model"}
    out = zactor.get(zactor.put(payload))
    assert out["name"] == "model"
    assert not out["weights"].flags.writeable
    assert out["weights"].flags.owndata is False
    assert np.array_equal(out["weights"], payload["weights"])


@pytest.mark.timeout(60)
def test_wait_returns_ready_and_not_ready_lists_in_input_order(tmp_path):
    gates = [str(tmp_path / f"gate{i}") for i in range(3)]
    refs = [block_until.options(num_cpus=0).remote(g, i) for i, g in enumerate(gates)]
    try:
        touch(gates[1])
        ready, not_ready = zactor.wait(refs, num_returns=1, timeout=30)
        assert ready == [refs[1]]
        assert not_ready == [refs[0], refs[2]]
        touch(gates[2])
        ready, not_ready = zactor.wait(refs, num_returns=2, timeout=30)
        assert ready == [refs[1], refs[2]]
        assert not_ready == [refs[0]]
    finally:
        for g in gates:
            touch(g)
    ready, not_ready = zactor.wait(refs, num_returns=3, timeout=30)
    assert ready == refs and not_ready == []


def test_wait_keeps_input_order_when_many_are_ready():
    refs = [zactor.put(i) for i in range(10)]
    shuffled = [refs[i] for i in (7, 2, 9, 0, 5, 1, 8, 3, 6, 4)]
    ready, not_ready = zactor.wait(shuffled, num_returns=10, timeout=10)
    assert ready == shuffled and not_ready == []
    ready, not_ready = zactor.wait(shuffled, num_returns=4, timeout=10)
    assert len(ready) == 4 and len(not_ready) == 6
    assert ready == [r for r in shuffled if r in ready]
    assert not_ready == [r for r in shuffled if r in not_ready]


def test_wait_default_returns_one_ready_ref():
    refs = [zactor.put(i) for i in range(3)]
    ready, not_ready = zactor.wait(refs)
    assert len(ready) == 1 and len(not_ready) == 2
    assert set(ready) | set(not_ready) == set(refs)


@pytest.mark.timeout(60)
def test_wait_timeout_returns_what_is_ready_so_far(tmp_path):
    release = str(tmp_path / "release")
    slow = block_until.options(num_cpus=0).remote(release, "slow")
    fast = zactor.put("fast")
    try:
        start = time.monotonic()
        ready, not_ready = zactor.wait([slow, fast], num_returns=2, timeout=0.5)
        elapsed = time.monotonic() - start
        assert ready == [fast] and not_ready == [slow]
        assert 0.4 <= elapsed < 10
        ready, not_ready = zactor.wait([slow], timeout=0)
        assert ready == [] and not_ready == [slow]
    finally:
        touch(release)
    assert zactor.get(slow, timeout=30) == "slow"


def test_wait_rejects_duplicate_refs():
    ref = zactor.put(1)
    with pytest.raises(ValueError):
        zactor.wait([ref, ref], num_returns=1)


def test_wait_rejects_num_returns_larger_than_the_list():
    refs = [zactor.put(1), zactor.put(2)]
    with pytest.raises(ValueError):
        zactor.wait(refs, num_returns=3)


@pytest.mark.timeout(60)
def test_get_list_with_timeout_raises_when_one_is_not_ready(tmp_path):
    release = str(tmp_path / "release")
    slow = block_until.options(num_cpus=0).remote(release, 1)
    try:
        with pytest.raises(GetTimeoutError):
            zactor.get([zactor.put(0), slow], timeout=0.3)
    finally:
        touch(release)
    assert zactor.get([zactor.put(0), slow], timeout=30) == [0, 1]


def test_many_small_puts_and_gets():
    refs = [zactor.put({"i": i, "s": str(i) * 10}) for i in range(500)]
    assert zactor.get(refs) == [{"i": i, "s": str(i) * 10} for i in range(500)]


def arena_path() -> str:
    return os.path.join(zactor._state.core.welcome["shm_dir"], "arena")


def arena_bytes() -> int:
    """Shared memory the store's arena holds now (allocated pages, not its size)."""
    return os.stat(arena_path()).st_blocks * 512


def store_used() -> int:
    zactor._state.core.flush_refs()  # releases of earlier tests' objects land first
    return zactor.testing.store_stats()[0]["used"]


def test_the_object_store_lives_under_dev_shm():
    arr = np.ones(4 << 20, dtype=np.uint8)
    ref = zactor.put(arr)
    zactor.get(ref)
    assert arena_path().startswith("/dev/shm/zactor-")
    assert arena_bytes() >= arr.nbytes, "a large object's bytes are in the shm arena"


@pytest.mark.timeout(60)
def test_dropping_the_last_ref_to_a_large_object_gives_its_memory_back():
    gc.collect()
    used = store_used()
    ref = zactor.put(np.ones(8 << 20, dtype=np.uint8))
    assert store_used() >= used + (8 << 20)
    held = arena_bytes()
    assert held >= 8 << 20
    del ref
    gc.collect()
    wait_until(lambda: store_used() <= used, timeout=20,
               message="the dropped object's room in the store to be free again")
    # Free room stays mapped for reuse a while (ARENA_TRIM_S), then goes back to the kernel.
    wait_until(lambda: arena_bytes() <= held - (8 << 20), timeout=config.ARENA_TRIM_S + 20,
               message="the dropped object's shared memory to be given back")


def test_task_returning_an_object_ref_gives_back_the_ref_not_its_value():
    @zactor.remote
    def make_ref():
        return zactor.put("inner value")

    outer = zactor.get(make_ref.remote())
    assert isinstance(outer, zactor.ObjectRef)
    assert zactor.get(outer) == "inner value"


@pytest.mark.timeout(60)
def test_large_object_put_by_a_task_outlives_the_task():
    @zactor.remote
    def put_big():
        return [zactor.put(np.full(4 << 20, 7, dtype=np.uint8))]

    [ref] = zactor.get(put_big.remote(), timeout=30)
    gc.collect()
    out = zactor.get(ref, timeout=30)
    assert out.shape == (4 << 20,) and int(out[0]) == 7 and int(out[-1]) == 7


@zactor.remote
class _RefKeeper:
    def keep(self, refs):
        self.refs = refs
        return True

    def give(self):
        return self.refs


@pytest.mark.timeout(60)
def test_a_ref_released_and_received_again_can_still_be_read():
    ref = zactor.remote(square).remote(7)
    assert zactor.get(ref, timeout=30) == 49
    keeper = _RefKeeper.remote()
    assert zactor.get(keeper.keep.remote([ref]), timeout=30)
    del ref
    zactor._state.core.flush_refs()  # the release reaches the head now, not in 50 ms
    [again] = zactor.get(keeper.give.remote(), timeout=30)
    assert zactor.get(again, timeout=10) == 49
