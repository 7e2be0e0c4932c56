"""Lineage: an object whose only copy is lost is rebuilt by re-running the task that made it.

The copy is lost with ``zactor.testing.lose_object`` (the store drops it, as a dying node
would) once ``zactor.wait`` says the object is ready and before anyone read it (a reader may
keep what it read in memory). Results are large (8 MB) so that they live in the shared-memory
store, not inline. Attempts are counted in a file, one line per run.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
from remote_helpers import attempts_in, record_attempt, wait_until

import zactor
import zactor.testing
from zactor.exceptions import ObjectLostError

pytestmark = pytest.mark.usefixtures("cluster")

N = 1_000_000  # float64: 8 MB, far above the inline threshold




@zactor.remote
def make_big(path: str, fill: float = 1.0):
    record_attempt(path)
    return np.full(N, fill)


@zactor.remote
def plus_one(path: str, array):
    record_attempt(path)
    return array + 1


@zactor.remote
def total(array):
    return float(array.sum())


def lose(ref) -> None:
    """Wait until ``ref`` is ready, then drop its only copy."""
    ready, _ = zactor.wait([ref], num_returns=1, timeout=60)
    assert ready == [ref], "the object was not ready in time"
    assert zactor.testing.lose_object(ref), f"the store held no copy of {ref.hex()}"


@pytest.mark.timeout(90)
def test_lost_task_result_is_rebuilt_by_rerunning_its_task(tmp_path):
    attempts = tmp_path / "attempts"
    ref = make_big.remote(str(attempts), 2.0)
    lose(ref)
    assert attempts_in(attempts) == 1
    value = zactor.get(ref, timeout=60)
    assert value.shape == (N,) and float(value.sum()) == 2.0 * N
    assert attempts_in(attempts) == 2, "the task that made the object ran again"


@pytest.mark.timeout(90)
def test_lost_argument_of_a_new_task_is_rebuilt(tmp_path):
    attempts = tmp_path / "attempts"
    ref = make_big.remote(str(attempts))
    lose(ref)
    assert zactor.get(total.remote(ref), timeout=60) == float(N)
    assert attempts_in(attempts) == 2


@pytest.mark.timeout(90)
def test_rebuilding_is_recursive_when_the_argument_was_lost_too(tmp_path):
    made, plussed = tmp_path / "made", tmp_path / "plussed"
    base = make_big.remote(str(made))
    derived = plus_one.remote(str(plussed), base)
    lose(base)
    lose(derived)
    value = zactor.get(derived, timeout=60)
    assert float(value.sum()) == 2.0 * N
    assert attempts_in(plussed) == 2
    assert attempts_in(made) == 2, "the lost argument was rebuilt first"


@pytest.mark.timeout(90)
def test_lineage_outlives_the_driver_dropping_an_intermediate_ref(tmp_path):
    made, plussed = tmp_path / "made", tmp_path / "plussed"
    base = make_big.remote(str(made))
    derived = plus_one.remote(str(plussed), base)
    ready, _ = zactor.wait([derived], num_returns=1, timeout=60)
    assert ready == [derived]
    base_id = base.binary()
    del base
    gc.collect()
    # Nobody holds the intermediate object now: whether or not the store freed it already,
    # its copy goes away, and then the result is lost too.
    zactor.testing.lose_object(base_id)
    lose(derived)
    assert float(zactor.get(derived, timeout=60).sum()) == 2.0 * N
    assert attempts_in(made) == 2 and attempts_in(plussed) == 2


@pytest.mark.timeout(90)
def test_lost_object_of_a_task_without_retries_raises_object_lost_error(tmp_path):
    attempts = tmp_path / "attempts"
    ref = make_big.options(max_retries=0).remote(str(attempts))
    lose(ref)
    with pytest.raises(ObjectLostError):
        zactor.get(ref, timeout=60)
    assert attempts_in(attempts) == 1, "a task with max_retries=0 is not re-run"
    assert zactor.get(total.remote(zactor.put(np.ones(10))), timeout=30) == 10.0


@pytest.mark.timeout(90)
def test_task_depending_on_a_lost_unrebuildable_object_raises_object_lost_error(tmp_path):
    attempts = tmp_path / "attempts"
    ref = make_big.options(max_retries=0).remote(str(attempts))
    lose(ref)
    with pytest.raises(ObjectLostError):
        zactor.get(total.remote(ref), timeout=60)
    assert attempts_in(attempts) == 1


@pytest.mark.timeout(90)
def test_lost_put_object_cannot_be_rebuilt_and_the_error_says_it_came_from_put():
    ref = zactor.put(np.ones(N))
    lose(ref)
    # A worker has never read it, so it must go to the store: the only copy is gone.
    with pytest.raises(ObjectLostError) as info:
        zactor.get(total.remote(ref), timeout=60)
    assert "put" in str(info.value)
    # Other objects and tasks are not disturbed.
    assert zactor.get(total.remote(zactor.put(np.ones(N))), timeout=60) == float(N)


@pytest.mark.timeout(90)
def test_lost_put_object_read_by_the_driver_raises_object_lost_error():
    ref = zactor.put(np.ones(N))
    lose(ref)
    with pytest.raises(ObjectLostError) as info:
        zactor.get(ref, timeout=60)
    assert "put" in str(info.value)


@pytest.mark.timeout(120)
def test_many_lost_results_are_each_rebuilt_once(tmp_path):
    refs = [make_big.remote(str(tmp_path / f"a{i}"), float(i)) for i in range(4)]
    for ref in refs:
        lose(ref)
    values = zactor.get(refs, timeout=90)
    assert [float(v[0]) for v in values] == [0.0, 1.0, 2.0, 3.0]
    assert [attempts_in(tmp_path / f"a{i}") for i in range(4)] == [2, 2, 2, 2]


@zactor.remote
def fill_with(path: str, value):
    record_attempt(path)
    return np.full(N, float(value))


def freed(ref_id: bytes) -> bool:
    gc.collect()
    zactor._state.core.flush_refs()
    return not zactor.testing.objects_exist([ref_id])[0]


@pytest.mark.timeout(90)
def test_lineage_does_not_keep_arguments_alive(tmp_path):
    base = make_big.remote(str(tmp_path / "made"))
    derived = plus_one.remote(str(tmp_path / "plussed"), base)
    zactor.wait([derived], timeout=60)
    base_id = base.binary()
    del base
    wait_until(lambda: freed(base_id), timeout=20,
               message="the argument to be freed once no ref to it is left")


@pytest.mark.timeout(90)
def test_a_freed_small_argument_is_rebuilt_from_the_task_s_record(tmp_path):
    attempts = tmp_path / "attempts"
    small = zactor.put(5)
    ref = fill_with.remote(str(attempts), small)
    zactor.wait([ref], timeout=60)
    small_id = small.binary()
    del small
    wait_until(lambda: freed(small_id), timeout=20, message="the small argument to be freed")
    lose(ref)
    assert float(zactor.get(ref, timeout=60)[0]) == 5.0
    assert attempts_in(attempts) == 2


@pytest.mark.timeout(90)
def test_a_freed_large_put_argument_cannot_be_rebuilt_and_the_error_says_so(tmp_path):
    arg = zactor.put(np.ones(N))
    derived = plus_one.remote(str(tmp_path / "plussed"), arg)
    zactor.wait([derived], timeout=60)
    arg_id = arg.binary()
    del arg
    wait_until(lambda: freed(arg_id), timeout=20, message="the put argument to be freed")
    lose(derived)
    with pytest.raises(ObjectLostError) as info:
        zactor.get(derived, timeout=60)
    assert arg_id.hex() in str(info.value) and "put" in str(info.value)
