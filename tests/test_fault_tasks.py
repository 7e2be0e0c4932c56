"""Fault tolerance of tasks: worker deaths are replayed, the pool heals, bad output is reported.

Attempts are counted in a file: each attempt appends its worker's pid on a line of its own, so
the test knows how many times a task ran and which process to kill.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from remote_helpers import (
    attempt_pids,
    pid_is_gone,
    record_attempt,
    touch,
    wait_for_path,
    wait_until,
)

import zactor
import zactor.testing
from zactor.exceptions import TaskCancelledError, TaskError, WorkerCrashedError

pytestmark = pytest.mark.usefixtures("cluster")

POOL_SIZE = 2  # the default CLUSTER_KWARGS of conftest: num_cpus=2


def wait_for_attempts(path, n: int, timeout: float = 30) -> list[int]:
    wait_until(lambda: len(attempt_pids(path)) >= n, timeout=timeout,
               message=f"{n} attempt(s) recorded in {path}")
    return attempt_pids(path)


def wait_for_full_pool(excluding: set[int], timeout: float = 30) -> list[int]:
    """Poll until the pool has POOL_SIZE live workers again, none of them in ``excluding``."""

    def healed():
        pids = zactor.testing.worker_pids()
        return pids if len(pids) == POOL_SIZE and not set(pids) & excluding else None

    return wait_until(healed, timeout=timeout, interval=0.1,
                      message=f"pool back to {POOL_SIZE} workers without {sorted(excluding)}")


@zactor.remote
def add(a, b):
    return a + b


@zactor.remote
def exit_until_attempt(path: str, succeed_on: int):
    """``os._exit(1)`` on every attempt before attempt number ``succeed_on``."""
    n = record_attempt(path)
    if n < succeed_on:
        os._exit(1)
    return f"survived attempt {n}"


@zactor.remote
def hang_on_first_attempt(path: str, never: str):
    """The first attempt blocks (to be killed from outside); later attempts return at once."""
    n = record_attempt(path)
    if n == 1:
        wait_for_path(never, timeout=90)
        return "first attempt was not killed"
    return f"attempt {n}"


@zactor.remote
def raise_until_attempt(path: str, succeed_on: int, exc_name: str):
    n = record_attempt(path)
    if n < succeed_on:
        raise {"KeyError": KeyError, "ValueError": ValueError}[exc_name](f"attempt {n} failed")
    return f"attempt {n}"


# ---------------------------------------------------------------------------------------------
# Worker deaths are replayed up to max_retries.


@pytest.mark.timeout(60)
def test_task_whose_worker_exits_twice_succeeds_with_the_default_max_retries(tmp_path):
    attempts = tmp_path / "attempts"
    ref = exit_until_attempt.remote(str(attempts), 3)  # no max_retries: the default is 3
    assert zactor.get(ref, timeout=45) == "survived attempt 3"
    pids = attempt_pids(attempts)
    assert len(pids) == 3
    assert len(set(pids)) == 3, "each attempt ran in a different (fresh) worker"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("max_retries", [0, 1])
def test_worker_crashed_error_once_retries_are_used_up_names_the_task(tmp_path, max_retries):
    attempts = tmp_path / "attempts"
    ref = exit_until_attempt.options(max_retries=max_retries).remote(str(attempts), 3)
    with pytest.raises(WorkerCrashedError) as info:
        zactor.get(ref, timeout=45)
    assert "exit_until_attempt" in str(info.value), "the error names the task"
    assert len(attempt_pids(attempts)) == max_retries + 1
    # Other work is not disturbed.
    assert zactor.get([add.remote(i, i) for i in range(4)], timeout=30) == [0, 2, 4, 6]


@pytest.mark.timeout(90)
def test_max_retries_minus_one_retries_without_limit(tmp_path):
    attempts = tmp_path / "attempts"
    ref = exit_until_attempt.options(max_retries=-1).remote(str(attempts), 6)
    assert zactor.get(ref, timeout=75) == "survived attempt 6"
    assert len(attempt_pids(attempts)) == 6


@pytest.mark.timeout(60)
def test_worker_killed_from_outside_is_noticed_at_once_and_the_task_replayed(tmp_path):
    attempts = tmp_path / "attempts"
    ref = hang_on_first_attempt.remote(str(attempts), str(tmp_path / "never"))
    [victim] = wait_for_attempts(attempts, 1)
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    assert zactor.get(ref, timeout=30) == "attempt 2"
    assert time.monotonic() - killed_at < 5, "the death of a worker is noticed at once"
    pids = attempt_pids(attempts)
    assert len(pids) == 2 and pids[1] != victim


@pytest.mark.timeout(60)
def test_worker_killed_from_outside_without_retries_raises_worker_crashed_error(tmp_path):
    attempts = tmp_path / "attempts"
    ref = hang_on_first_attempt.options(max_retries=0).remote(str(attempts),
                                                               str(tmp_path / "never"))
    [victim] = wait_for_attempts(attempts, 1)
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(WorkerCrashedError) as info:
        zactor.get(ref, timeout=30)
    assert time.monotonic() - killed_at < 5, "the death of a worker is noticed at once"
    assert "hang_on_first_attempt" in str(info.value)
    assert len(attempt_pids(attempts)) == 1


# ---------------------------------------------------------------------------------------------
# Application errors: retried only when retry_exceptions asks for it.


@pytest.mark.timeout(60)
def test_retry_exceptions_true_retries_application_errors(tmp_path):
    attempts = tmp_path / "attempts"
    ref = raise_until_attempt.options(retry_exceptions=True).remote(str(attempts), 3, "ValueError")
    assert zactor.get(ref, timeout=45) == "attempt 3"
    assert len(attempt_pids(attempts)) == 3


@pytest.mark.timeout(60)
def test_retry_exceptions_true_gives_up_after_max_retries(tmp_path):
    attempts = tmp_path / "attempts"
    ref = raise_until_attempt.options(retry_exceptions=True, max_retries=1).remote(
        str(attempts), 10, "ValueError")
    with pytest.raises(ValueError, match="attempt 2 failed") as info:
        zactor.get(ref, timeout=45)
    assert isinstance(info.value, TaskError)
    assert len(attempt_pids(attempts)) == 2


@pytest.mark.timeout(60)
def test_retry_exceptions_list_retries_a_listed_class(tmp_path):
    attempts = tmp_path / "attempts"
    ref = raise_until_attempt.options(retry_exceptions=[KeyError]).remote(
        str(attempts), 3, "KeyError")
    assert zactor.get(ref, timeout=45) == "attempt 3"
    assert len(attempt_pids(attempts)) == 3


@pytest.mark.timeout(60)
def test_retry_exceptions_list_does_not_retry_an_unlisted_class(tmp_path):
    attempts = tmp_path / "attempts"
    ref = raise_until_attempt.options(retry_exceptions=[KeyError]).remote(
        str(attempts), 3, "ValueError")
    with pytest.raises(ValueError, match="attempt 1 failed"):
        zactor.get(ref, timeout=45)
    assert len(attempt_pids(attempts)) == 1


@pytest.mark.timeout(60)
def test_retry_exceptions_in_the_decorator_applies_to_every_call(tmp_path):
    @zactor.remote(retry_exceptions=[KeyError], max_retries=2)
    def flaky(path):
        n = record_attempt(path)
        if n < 3:
            raise KeyError(f"attempt {n}")
        return n

    attempts = tmp_path / "attempts"
    assert zactor.get(flaky.remote(str(attempts)), timeout=45) == 3


# ---------------------------------------------------------------------------------------------
# The pool heals.


@pytest.mark.timeout(60)
def test_idle_worker_killed_from_outside_is_replaced():
    before = wait_for_full_pool(set())
    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    after = wait_for_full_pool({victim})
    assert victim not in after
    wait_until(lambda: pid_is_gone(victim), timeout=10, message="killed worker reaped")
    assert zactor.get([add.remote(i, 1) for i in range(6)], timeout=30) == [1, 2, 3, 4, 5, 6]


@pytest.mark.timeout(60)
def test_all_busy_workers_killed_at_once_are_replaced_and_their_tasks_replayed(tmp_path):
    paths = [tmp_path / f"attempts{i}" for i in range(POOL_SIZE)]
    never = str(tmp_path / "never")
    refs = [hang_on_first_attempt.remote(str(p), never) for p in paths]
    victims = [wait_for_attempts(p, 1)[0] for p in paths]
    assert len(set(victims)) == POOL_SIZE, "the tasks ran in parallel, one per worker"
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    assert zactor.get(refs, timeout=45) == ["attempt 2"] * POOL_SIZE
    after = wait_for_full_pool(set(victims))
    assert not set(after) & set(victims)


@pytest.mark.timeout(60)
def test_worker_that_exits_inside_a_task_is_replaced(tmp_path):
    before = set(wait_for_full_pool(set()))
    attempts = tmp_path / "attempts"
    with pytest.raises(WorkerCrashedError):
        zactor.get(exit_until_attempt.options(max_retries=0).remote(str(attempts), 2), timeout=30)
    [dead] = attempt_pids(attempts)
    assert dead in before
    after = wait_for_full_pool({dead})
    assert len(after) == POOL_SIZE


# ---------------------------------------------------------------------------------------------
# Exactly one value per ObjectRef.


@pytest.mark.timeout(60)
def test_result_of_a_task_that_ran_twice_is_delivered_once_and_never_changes(tmp_path):
    """The first attempt returns and its worker dies right after: one value, seen by everyone."""

    @zactor.remote
    def racy(path):
        n = record_attempt(path)
        if n == 1:
            threading.Timer(0.05, os._exit, args=(1,)).start()
        return n

    attempts = tmp_path / "attempts"
    ref = racy.remote(str(attempts))
    value = zactor.get(ref, timeout=30)
    first_pid = wait_for_attempts(attempts, 1)[0]
    wait_until(lambda: pid_is_gone(first_pid), timeout=20, message="first worker's exit")
    wait_for_full_pool({first_pid})
    assert value in (1, 2)
    # Everyone that reads the ref sees that one value, also after the worker died.
    ready, not_ready = zactor.wait([ref], num_returns=1, timeout=10)
    assert ready == [ref] and not_ready == []
    assert zactor.get([add.remote(ref, 0) for _ in range(4)], timeout=30) == [value] * 4
    assert zactor.get(ref, timeout=10) == value


@pytest.mark.timeout(90)
def test_many_tasks_replayed_after_a_crash_each_deliver_exactly_one_result(tmp_path):
    """Each task crashes its worker once; every ref still resolves to its own single value."""

    @zactor.remote
    def crash_once(path, i):
        if record_attempt(path) == 1:
            os._exit(1)
        return i * 10

    refs = [crash_once.remote(str(tmp_path / f"a{i}"), i) for i in range(10)]
    assert zactor.get(refs, timeout=75) == [i * 10 for i in range(10)]
    ready, not_ready = zactor.wait(refs, num_returns=len(refs), timeout=10)
    assert ready == refs and not not_ready
    for i in range(10):
        assert len(attempt_pids(tmp_path / f"a{i}")) == 2


# ---------------------------------------------------------------------------------------------
# Cancel: what tests/test_tasks.py does not cover.


@pytest.mark.timeout(60)
def test_cancel_interrupts_a_task_in_time_sleep_and_keeps_its_worker(tmp_path):
    @zactor.remote
    def sleeper(path):
        record_attempt(path)
        time.sleep(60)
        return "slept"

    attempts = tmp_path / "attempts"
    ref = sleeper.remote(str(attempts))
    [worker] = wait_for_attempts(attempts, 1)
    cancelled_at = time.monotonic()
    zactor.cancel(ref)
    with pytest.raises(TaskCancelledError):
        zactor.get(ref, timeout=30)
    assert time.monotonic() - cancelled_at < 10, "time.sleep(60) was interrupted"
    assert not pid_is_gone(worker), "a cancel without force keeps the worker"
    assert worker in zactor.testing.worker_pids()
    assert zactor.get([add.remote(i, 1) for i in range(4)], timeout=30) == [1, 2, 3, 4]
    assert len(attempt_pids(attempts)) == 1, "a cancelled task is not retried"


@pytest.mark.timeout(60)
def test_force_cancel_replaces_the_killed_worker_and_does_not_retry(tmp_path):
    @zactor.remote  # default max_retries=3: a forced cancel must still not replay it
    def stubborn(path):
        record_attempt(path)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # swallows KeyboardInterrupt
            try:
                time.sleep(0.05)
            except KeyboardInterrupt:
                pass
        return "not killed"

    attempts = tmp_path / "attempts"
    ref = stubborn.remote(str(attempts))
    [worker] = wait_for_attempts(attempts, 1)
    zactor.cancel(ref, force=True)
    with pytest.raises(TaskCancelledError):
        zactor.get(ref, timeout=30)
    wait_until(lambda: pid_is_gone(worker), timeout=10, message="force-cancelled worker exit")
    after = wait_for_full_pool({worker})
    assert worker not in after
    assert zactor.get([add.remote(i, 1) for i in range(4)], timeout=30) == [1, 2, 3, 4]
    assert len(attempt_pids(attempts)) == 1, "a cancelled task is not retried"


@pytest.mark.timeout(60)
def test_cancel_of_a_finished_task_keeps_its_result():
    ref = add.remote(20, 22)
    assert zactor.get(ref, timeout=30) == 42
    zactor.cancel(ref)
    assert zactor.get(ref, timeout=10) == 42
    assert zactor.get(add.remote(1, 1), timeout=30) == 2


# ---------------------------------------------------------------------------------------------
# Bad output: a clear error, and other work goes on.


@pytest.mark.timeout(60)
def test_task_returning_an_unpicklable_value_raises_a_type_error_naming_the_problem():
    @zactor.remote
    def returns_lock():
        return threading.Lock()

    ref = returns_lock.remote()
    with pytest.raises(TypeError) as info:
        zactor.get(ref, timeout=30)
    assert not isinstance(info.value, WorkerCrashedError)
    text = str(info.value).lower()
    assert "lock" in text
    assert "pickl" in text or "serializ" in text
    assert "returns_lock" in str(info.value), "the error names the task"
    assert zactor.get(add.remote(2, 3), timeout=30) == 5


@pytest.mark.timeout(60)
def test_exception_whose_class_cannot_be_pickled_still_arrives():
    @zactor.remote
    def raise_local_class():
        import threading

        class Unshippable(Exception):
            # A class attribute that cloudpickle cannot pickle: the class (defined in a
            # function, so pickled by value) cannot travel, nor can its instances.
            guard = threading.Lock()

        raise Unshippable("unshippable failure 314")

    with pytest.raises(TaskError) as info:
        zactor.get(raise_local_class.remote(), timeout=30)
    text = str(info.value)
    assert "Unshippable" in text
    assert "unshippable failure 314" in text
    assert "raise_local_class" in text
    assert zactor.get(add.remote(2, 3), timeout=30) == 5


@pytest.mark.timeout(60)
def test_unpicklable_result_does_not_disturb_tasks_running_next_to_it(tmp_path):
    @zactor.remote
    def returns_lock():
        return threading.Lock()

    release = str(tmp_path / "release")
    started = str(tmp_path / "started")

    @zactor.remote
    def waits(release, started):
        touch(started)
        wait_for_path(release, timeout=30)
        return "fine"

    neighbour = waits.remote(release, started)
    wait_for_path(started, timeout=30)
    bad = returns_lock.remote()
    with pytest.raises(TypeError):
        zactor.get(bad, timeout=30)
    touch(release)
    assert zactor.get(neighbour, timeout=30) == "fine"


# ---------------------------------------------------------------------------------------------
# Replays with arguments and nesting.


@pytest.mark.timeout(60)
def test_replayed_task_still_gets_its_large_arguments(tmp_path):
    import numpy as np

    @zactor.remote
    def crash_then_sum(path, put_array, task_array):
        if record_attempt(path) == 1:
            os._exit(1)
        return float(put_array.sum() + task_array.sum())

    @zactor.remote
    def make(n):
        return np.ones(n)

    n = 1_000_000
    attempts = tmp_path / "attempts"
    ref = crash_then_sum.remote(str(attempts), zactor.put(np.ones(n)), make.remote(n))
    assert zactor.get(ref, timeout=45) == 2.0 * n
    assert len(attempt_pids(attempts)) == 2


@pytest.mark.timeout(60)
def test_nested_child_whose_worker_dies_is_replayed_for_its_parent(tmp_path):
    @zactor.remote
    def parent(path):
        return zactor.get(exit_until_attempt.remote(path, 2), timeout=40)

    attempts = tmp_path / "attempts"
    assert zactor.get(parent.remote(str(attempts)), timeout=45) == "survived attempt 2"


@pytest.mark.timeout(60)
def test_parent_killed_while_waiting_for_its_child_is_replayed(tmp_path):
    @zactor.remote
    def child(release):
        wait_for_path(release, timeout=40)
        return 21

    @zactor.remote
    def parent(path, release):
        record_attempt(path)
        return 2 * zactor.get(child.remote(release), timeout=40)

    attempts = tmp_path / "attempts"
    release = str(tmp_path / "release")
    ref = parent.remote(str(attempts), release)
    [victim] = wait_for_attempts(attempts, 1)
    os.kill(victim, signal.SIGKILL)
    wait_for_attempts(attempts, 2)
    touch(release)
    assert zactor.get(ref, timeout=45) == 42


@pytest.mark.timeout(60)
def test_cancel_a_task_waiting_for_its_argument_leaves_the_argument_alone(tmp_path):
    release = str(tmp_path / "release")
    started = str(tmp_path / "started")

    @zactor.remote
    def slow(release, started):
        touch(started)
        wait_for_path(release, timeout=30)
        return 5

    dependency = slow.remote(release, started)
    dependent = add.remote(dependency, 1)
    wait_for_path(started, timeout=30)
    zactor.cancel(dependent)
    with pytest.raises(TaskCancelledError):
        zactor.get(dependent, timeout=30)
    touch(release)
    assert zactor.get(dependency, timeout=30) == 5
    assert zactor.get(add.remote(dependency, 2), timeout=30) == 7
