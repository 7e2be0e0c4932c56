"""Remote functions: options, arguments, nesting, retries, cancellation, scheduling corners."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
import remote_helpers
from remote_helpers import block_until, touch, wait_for_path, wait_until

import zactor
from zactor.exceptions import (
    GetTimeoutError,
    TaskCancelledError,
    TaskError,
    WorkerCrashedError,
)

pytestmark = pytest.mark.usefixtures("cluster")


@zactor.remote
def add(a, b):
    return a + b


@zactor.remote
def describe(x):
    return type(x).__name__, x


@zactor.remote
def three_values():
    return 1, 2, 3


@zactor.remote(num_returns=2)
def pair(x):
    return x, x * 10


@zactor.remote
def pid():
    return os.getpid()


def test_remote_function_returns_object_ref_whose_value_is_the_result():
    ref = add.remote(2, 3)
    assert isinstance(ref, zactor.ObjectRef)
    assert zactor.get(ref) == 5


def test_keyword_arguments_reach_the_remote_function():
    assert zactor.get(add.remote(a="x", b="y")) == "xy"


def test_calling_a_remote_function_directly_raises_type_error():
    with pytest.raises(TypeError):
        add(1, 2)


def test_num_returns_in_options_gives_one_ref_per_value():
    refs = three_values.options(num_returns=3).remote()
    assert isinstance(refs, list) and len(refs) == 3
    assert all(isinstance(r, zactor.ObjectRef) for r in refs)
    assert zactor.get(refs) == [1, 2, 3]


def test_num_returns_in_the_decorator_gives_one_ref_per_value():
    first, second = pair.remote(4)
    assert zactor.get(first) == 4
    assert zactor.get(second) == 40


def test_num_returns_one_returns_a_single_ref_holding_the_tuple():
    ref = three_values.options(num_returns=1).remote()
    assert isinstance(ref, zactor.ObjectRef)
    assert zactor.get(ref) == (1, 2, 3)


def test_options_do_not_change_the_original_function():
    assert isinstance(three_values.options(num_returns=3).remote(), list)
    assert zactor.get(three_values.remote()) == (1, 2, 3)


def test_object_ref_argument_at_top_level_is_resolved_to_its_value():
    ref = zactor.put(21)
    assert zactor.get(describe.remote(ref)) == ("int", 21)
    assert zactor.get(add.remote(add.remote(1, 2), ref)) == 24


def test_object_ref_nested_in_a_container_stays_an_object_ref():
    ref = zactor.put(21)

    @zactor.remote
    def inspect(container):
        inner = container[0]
        return isinstance(inner, zactor.ObjectRef), zactor.get(inner)

    assert zactor.get(inspect.remote([ref])) == (True, 21)

    @zactor.remote
    def inspect_dict(d):
        return isinstance(d["r"], zactor.ObjectRef), zactor.get(d["r"])

    assert zactor.get(inspect_dict.remote({"r": add.remote(1, 1)})) == (True, 2)


def test_functions_from_a_module_next_to_the_driver_run_remotely():
    assert zactor.get(remote_helpers.helper_add.remote(2, 5)) == 7
    # Plain functions and classes from the module travel as arguments and results.
    assert zactor.get(remote_helpers.identity.remote(remote_helpers.square))(7) == 49
    point = remote_helpers.Point(3, -4)

    @zactor.remote
    def norm(p):
        return p.norm1(), type(p).__name__

    assert zactor.get(norm.remote(point)) == (7, "Point")
    assert zactor.get(remote_helpers.identity.remote(point)) == point


@pytest.mark.timeout(90)
def test_functions_from_a_module_next_to_a_script_run_remotely(tmp_path):
    script_dir = tmp_path / "project"
    script_dir.mkdir()
    (script_dir / "mylib_for_zactor.py").write_text(textwrap.dedent(
        """
        import zactor

        def triple(x):
            return 3 * x

        @zactor.remote
        def remote_triple(x):
            return triple(x)
        """
    ))
    (script_dir / "main.py").write_text(textwrap.dedent(
        """
        import zactor
        import mylib_for_zactor

        @zactor.remote
        def apply(fn, x):
            return fn(x)

        zactor.init(num_cpus=1)
        print(zactor.get(mylib_for_zactor.remote_triple.remote(5)),
              zactor.get(apply.remote(mylib_for_zactor.triple, 7)))
        zactor.shutdown()
        """
    ))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    proc = subprocess.run([sys.executable, str(script_dir / "main.py")], cwd=elsewhere,
                          capture_output=True, text=True, timeout=80)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["15", "21"]


@pytest.mark.timeout(90)
def test_nested_tasks_that_get_their_children_do_not_deadlock_a_full_pool(tmp_path):
    """Two outer tasks occupy both CPUs, then each submits inner tasks and waits for them."""

    @zactor.remote
    def inner(x):
        return x * x

    @zactor.remote
    def outer(i, barrier_dir):
        touch(os.path.join(barrier_dir, f"started-{i}"))
        # Wait until both outer tasks are running, so both CPUs are taken.
        wait_for_path(os.path.join(barrier_dir, "started-0"), timeout=30)
        wait_for_path(os.path.join(barrier_dir, "started-1"), timeout=30)
        return sum(zactor.get([inner.remote(i * 10 + k) for k in range(3)]))

    refs = [outer.remote(i, str(tmp_path)) for i in range(2)]
    expected = [sum((i * 10 + k) ** 2 for k in range(3)) for i in range(2)]
    assert zactor.get(refs, timeout=60) == expected


@pytest.mark.timeout(90)
def test_deeply_nested_tasks_complete():
    @zactor.remote
    def fib(n):
        if n < 2:
            return n
        return sum(zactor.get([fib.remote(n - 1), fib.remote(n - 2)]))

    assert zactor.get(fib.remote(5), timeout=60) == 5


@pytest.mark.timeout(90)
def test_zero_cpu_task_runs_while_every_cpu_is_busy(tmp_path):
    release = str(tmp_path / "release")
    holders = [block_until.remote(release, i, started=str(tmp_path / f"s{i}")) for i in range(2)]
    try:
        wait_until(lambda: all(os.path.exists(tmp_path / f"s{i}") for i in range(2)),
                   timeout=30, message="both CPU-holding tasks running")
        assert zactor.get(add.options(num_cpus=0).remote(1, 2), timeout=30) == 3
        ready, _ = zactor.wait(holders, num_returns=2, timeout=0)
        assert ready == [], "the CPU-holding tasks should still be running"
    finally:
        touch(release)
    assert zactor.get(holders, timeout=30) == [0, 1]


def _warning_texts(records, caplog) -> list[str]:
    texts = [str(w.message) for w in records if issubclass(w.category, UserWarning)]
    texts += [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    return texts


@pytest.mark.timeout(60)
def test_infeasible_tasks_stay_pending_and_warn_naming_the_request(caplog):
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        too_many_cpus = add.options(num_cpus=64).remote(1, 1)
        unknown_resource = add.options(resources={"nope": 1}).remote(1, 1)

        def both_warned():
            texts = _warning_texts(records, caplog)
            return any("64" in t for t in texts) and any("nope" in t for t in texts)

        deadline = time.monotonic() + 5
        while not both_warned() and time.monotonic() < deadline:
            time.sleep(0.05)
        texts = _warning_texts(records, caplog)
    try:
        assert any("64" in t for t in texts), f"no warning names num_cpus=64: {texts}"
        assert any("nope" in t for t in texts), f"no warning names resource 'nope': {texts}"
        ready, not_ready = zactor.wait([too_many_cpus, unknown_resource], num_returns=2,
                                       timeout=1.0)
        assert ready == []
        assert not_ready == [too_many_cpus, unknown_resource]
        # The cluster keeps running feasible work meanwhile.
        assert zactor.get(add.remote(2, 2), timeout=30) == 4
    finally:
        for ref in (too_many_cpus, unknown_resource):
            try:
                zactor.cancel(ref)
            except Exception:  # cleanup only; cancel has its own tests
                pass


@pytest.mark.timeout(60)
def test_get_timeout_raises_get_timeout_error_and_does_not_cancel_the_task(tmp_path):
    release = str(tmp_path / "release")
    ref = block_until.remote(release, "done")
    try:
        start = time.monotonic()
        with pytest.raises(GetTimeoutError) as info:
            zactor.get(ref, timeout=0.5)
        assert isinstance(info.value, TimeoutError)
        assert time.monotonic() - start < 10
        with pytest.raises(GetTimeoutError):
            zactor.get([ref], timeout=0)
    finally:
        touch(release)
    assert zactor.get(ref, timeout=30) == "done"


@pytest.mark.timeout(60)
def test_max_retries_replays_a_task_whose_worker_died(tmp_path):
    attempts = tmp_path / "attempts"

    @zactor.remote(max_retries=2)
    def crash_twice(path):
        with open(path, "a") as f:
            f.write("x")
        with open(path) as f:
            if len(f.read()) <= 2:
                os._exit(1)
        return "survived"

    assert zactor.get(crash_twice.remote(str(attempts)), timeout=45) == "survived"
    assert attempts.read_text() == "xxx"


@pytest.mark.timeout(60)
def test_worker_crash_without_retries_raises_worker_crashed_error(tmp_path):
    attempts = tmp_path / "attempts"

    @zactor.remote
    def crash(path):
        with open(path, "a") as f:
            f.write("x")
        os._exit(1)

    with pytest.raises(WorkerCrashedError):
        zactor.get(crash.options(max_retries=0).remote(str(attempts)), timeout=45)
    assert attempts.read_text() == "x"
    # The pool replaces the dead worker.
    assert zactor.get([add.remote(i, i) for i in range(4)], timeout=30) == [0, 2, 4, 6]


@pytest.mark.timeout(60)
def test_application_errors_are_not_retried_by_max_retries(tmp_path):
    attempts = tmp_path / "attempts"

    @zactor.remote(max_retries=3)
    def fail(path):
        with open(path, "a") as f:
            f.write("x")
        raise KeyError("app error")

    with pytest.raises(KeyError):
        zactor.get(fail.remote(str(attempts)), timeout=30)
    assert attempts.read_text() == "x"


@pytest.mark.timeout(60)
def test_cancel_a_pending_task_raises_task_cancelled_error(tmp_path):
    release = str(tmp_path / "release")
    holders = [block_until.remote(release, i, started=str(tmp_path / f"s{i}")) for i in range(2)]
    try:
        wait_until(lambda: all(os.path.exists(tmp_path / f"s{i}") for i in range(2)),
                   timeout=30, message="both CPUs busy")
        queued = add.remote(1, 1)
        zactor.cancel(queued)
        with pytest.raises(TaskCancelledError):
            zactor.get(queued, timeout=30)
    finally:
        touch(release)
    assert zactor.get(holders, timeout=30) == [0, 1]


@pytest.mark.timeout(60)
def test_cancel_a_running_task_interrupts_it(tmp_path):
    started = str(tmp_path / "started")
    ref = block_until.remote(str(tmp_path / "never"), started=started)
    wait_for_path(started, timeout=30)
    zactor.cancel(ref)
    with pytest.raises(TaskCancelledError):
        zactor.get(ref, timeout=30)
    assert zactor.get(add.remote(1, 2), timeout=30) == 3


@pytest.mark.timeout(60)
def test_force_cancel_kills_the_worker_and_the_pool_recovers(tmp_path):
    @zactor.remote
    def stubborn(started):
        touch(started)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # ignores KeyboardInterrupt
            try:
                time.sleep(0.05)
            except KeyboardInterrupt:
                pass
        return "not killed"

    started = str(tmp_path / "started")
    ref = stubborn.remote(started)
    wait_for_path(started, timeout=30)
    zactor.cancel(ref, force=True)
    with pytest.raises(TaskCancelledError):
        zactor.get(ref, timeout=30)
    assert zactor.get([add.remote(i, 1) for i in range(4)], timeout=30) == [1, 2, 3, 4]


def test_await_object_ref_in_asyncio_code():
    async def main():
        first = await add.remote(1, 2)
        rest = await asyncio.gather(add.remote(3, 4), zactor.put("put"))
        return first, rest

    assert asyncio.run(main()) == (3, [7, "put"])


def test_task_error_is_raised_by_get_not_by_remote():
    @zactor.remote
    def fail():
        raise ZeroDivisionError("nope")

    ref = fail.remote()
    with pytest.raises(ZeroDivisionError) as info:
        zactor.get(ref)
    assert isinstance(info.value, TaskError)


@pytest.mark.timeout(60)
def test_tasks_run_in_parallel_on_all_cpus(tmp_path):
    """With num_cpus=2, two tasks can wait for each other (they run at the same time)."""

    @zactor.remote
    def meet(me, other, d):
        touch(os.path.join(d, me))
        wait_for_path(os.path.join(d, other), timeout=30)
        return me

    refs = [meet.remote("a", "b", str(tmp_path)), meet.remote("b", "a", str(tmp_path))]
    assert zactor.get(refs, timeout=45) == ["a", "b"]


@pytest.mark.timeout(60)
def test_recursive_cancel_also_cancels_the_children_of_the_task(tmp_path):
    @zactor.remote
    class Registry:
        def __init__(self):
            self.refs = []

        def add(self, refs):
            self.refs.extend(refs)

        def get(self):
            return self.refs

    registry = Registry.remote()

    @zactor.remote
    def parent(reg, never, child_started):
        child = block_until.options(num_cpus=0).remote(never, started=child_started)
        zactor.get(reg.add.remote([child]))  # nested in a list: stays an ObjectRef
        return zactor.get(child)

    child_started = str(tmp_path / "child-started")
    ref = parent.remote(registry, str(tmp_path / "never"), child_started)
    wait_for_path(child_started, timeout=30)
    [child] = zactor.get(registry.get.remote(), timeout=30)
    zactor.cancel(ref, recursive=True)
    with pytest.raises(TaskCancelledError):
        zactor.get(ref, timeout=30)
    with pytest.raises(TaskCancelledError):
        zactor.get(child, timeout=30)
