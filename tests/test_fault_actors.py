"""Fault tolerance of actors: restarts, transparent retries, kill, checkpoints, bad calls.

Ray's semantics: ``max_restarts`` (default 0, -1 = infinite) and ``max_task_retries`` (default
0). A restarted actor is rebuilt from its constructor arguments, or resumes from the state its
``__zactor_checkpoint__`` last returned when it defines ``__zactor_restore__``. The call that
was running when a restartable actor died raises ActorUnavailableError unless
``max_task_retries`` retries it; once restarts are used up, calls raise ActorDiedError.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from remote_helpers import (
    attempt_pids,
    attempts_in,
    pid_is_gone,
    record_attempt,
    touch,
    wait_for_path,
    wait_until,
)

import zactor
from zactor.exceptions import ActorDiedError, ActorUnavailableError

pytestmark = pytest.mark.usefixtures("cluster")


@zactor.remote
def add(a, b):
    return a + b


@zactor.remote
class Counter:
    def __init__(self, start=0, constructed=None):
        if constructed is not None:
            record_attempt(constructed)
        self.value = start

    def incr(self, by=1):
        self.value += by
        return self.value

    def get(self):
        return self.value

    def pid(self):
        return os.getpid()

    def crash(self):
        os._exit(1)

    def block(self, started, release):
        touch(started)
        wait_for_path(release, timeout=90)
        return "released"

    def crash_until_attempt(self, path, succeed_on):
        n = record_attempt(path)
        if n < succeed_on:
            os._exit(1)
        return n


@zactor.remote
class CheckpointedCounter:
    """Saves its count after every call and resumes from it after a restart."""

    def __init__(self, start=0):
        self.value = start
        self.restored_from = None

    def __zactor_checkpoint__(self):
        return {"value": self.value}

    def __zactor_restore__(self, state):
        self.value = state["value"]
        self.restored_from = state

    def incr(self, by=1):
        self.value += by
        return self.value

    def was_restored(self):
        return self.restored_from is not None

    def pid(self):
        return os.getpid()

    def crash(self):
        os._exit(1)


def actor_pid(handle) -> int:
    return zactor.get(handle.pid.remote(), timeout=30)


def wait_for_restart(handle, old_pid: int, timeout: float = 30) -> int:
    """After killing an actor's process from outside, poll until its new process answers.

    A call sent before the runtime noticed the death was in flight when the actor died, so it
    may fail with ActorUnavailableError (as in Ray); ``pid`` calls have no state to spoil.
    """

    def new_pid():
        try:
            pid = zactor.get(handle.pid.remote(), timeout=timeout)
        except ActorUnavailableError:
            return None
        return pid if pid != old_pid else None

    return wait_until(new_pid, timeout=timeout, interval=0.05, message="actor restarted")


# ---------------------------------------------------------------------------------------------
# Crashes and restarts.


@pytest.mark.timeout(60)
def test_crash_of_an_actor_without_restarts_gives_actor_died_error():
    counter = Counter.remote()
    assert zactor.get(counter.incr.remote(), timeout=30) == 1
    pid = actor_pid(counter)
    with pytest.raises(ActorDiedError):
        zactor.get(counter.crash.remote(), timeout=30)
    with pytest.raises(ActorDiedError):
        zactor.get(counter.incr.remote(), timeout=30)
    wait_until(lambda: pid_is_gone(pid), timeout=10, message="crashed actor process gone")
    assert zactor.get(add.remote(1, 2), timeout=30) == 3


@pytest.mark.timeout(60)
def test_restartable_actor_crash_raises_unavailable_then_restarts_with_fresh_state(tmp_path):
    constructed = tmp_path / "constructed"
    counter = Counter.options(max_restarts=1).remote(10, str(constructed))
    assert zactor.get([counter.incr.remote() for _ in range(3)], timeout=30) == [11, 12, 13]
    first_pid = actor_pid(counter)
    with pytest.raises(ActorUnavailableError):
        zactor.get(counter.crash.remote(), timeout=30)
    assert zactor.get(counter.incr.remote(), timeout=30) == 11, "rebuilt from its arguments"
    assert actor_pid(counter) != first_pid
    assert attempts_in(constructed) == 2, "the constructor ran again on the restart"
    wait_until(lambda: pid_is_gone(first_pid), timeout=10, message="old actor process gone")


@pytest.mark.timeout(60)
def test_restartable_actor_killed_from_outside_during_a_call(tmp_path):
    counter = Counter.options(max_restarts=1).remote()
    assert zactor.get(counter.incr.remote(5), timeout=30) == 5
    pid = actor_pid(counter)
    started = str(tmp_path / "started")
    running = counter.block.remote(started, str(tmp_path / "never"))
    wait_for_path(started, timeout=30)
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ActorUnavailableError):
        zactor.get(running, timeout=30)
    assert time.monotonic() - killed_at < 5, "the death of an actor is noticed at once"
    assert zactor.get(counter.incr.remote(), timeout=30) == 1, "fresh state after the restart"
    assert actor_pid(counter) != pid


@pytest.mark.timeout(60)
def test_calls_raise_actor_died_error_once_restarts_are_used_up():
    counter = Counter.options(max_restarts=1).remote()
    with pytest.raises(ActorUnavailableError):
        zactor.get(counter.crash.remote(), timeout=30)
    assert zactor.get(counter.incr.remote(), timeout=30) == 1
    with pytest.raises(ActorDiedError):
        zactor.get(counter.crash.remote(), timeout=30)
    with pytest.raises(ActorDiedError):
        zactor.get(counter.incr.remote(), timeout=30)
    assert zactor.get(add.remote(1, 2), timeout=30) == 3


@pytest.mark.timeout(90)
def test_max_restarts_minus_one_restarts_without_limit():
    counter = Counter.options(max_restarts=-1).remote()
    pids = {actor_pid(counter)}
    for _ in range(5):
        assert zactor.get(counter.incr.remote(), timeout=30) == 1
        with pytest.raises(ActorUnavailableError):
            zactor.get(counter.crash.remote(), timeout=30)
        pids.add(actor_pid(counter))
    assert len(pids) == 6, "each restart runs in a new process"
    assert zactor.get(counter.incr.remote(), timeout=30) == 1


@pytest.mark.timeout(60)
def test_max_task_retries_retries_the_interrupted_call_on_the_restarted_actor(tmp_path):
    counter = Counter.options(max_restarts=1, max_task_retries=1).remote()
    attempts = tmp_path / "attempts"
    assert zactor.get(counter.crash_until_attempt.remote(str(attempts), 2), timeout=30) == 2
    assert attempts_in(attempts) == 2
    assert zactor.get(counter.incr.remote(), timeout=30) == 1


@pytest.mark.timeout(60)
def test_max_task_retries_retries_a_call_whose_actor_was_killed_from_outside(tmp_path):
    @zactor.remote(max_restarts=1, max_task_retries=1)
    class Waiter:
        def run(self, path, never):
            if record_attempt(path) == 1:
                wait_for_path(never, timeout=90)
                return "first attempt was not killed"
            return "retried"

    waiter = Waiter.remote()
    attempts = tmp_path / "attempts"
    ref = waiter.run.remote(str(attempts), str(tmp_path / "never"))
    wait_until(lambda: attempts_in(attempts) == 1, timeout=30, message="first attempt started")
    with open(attempts) as f:
        pid = int(f.read().split()[0])
    os.kill(pid, signal.SIGKILL)
    assert zactor.get(ref, timeout=30) == "retried"


@pytest.mark.timeout(60)
def test_unavailable_when_task_retries_run_out_while_restarts_remain(tmp_path):
    counter = Counter.options(max_restarts=3, max_task_retries=1).remote()
    attempts = tmp_path / "attempts"
    with pytest.raises(ActorUnavailableError):
        zactor.get(counter.crash_until_attempt.remote(str(attempts), 100), timeout=30)
    assert attempts_in(attempts) == 2, "one try and one retry"
    assert zactor.get(counter.incr.remote(), timeout=30) == 1, "a restart is left"


@pytest.mark.timeout(60)
def test_method_level_max_task_retries_option(tmp_path):
    counter = Counter.options(max_restarts=2).remote()
    attempts = tmp_path / "attempts"
    ref = counter.crash_until_attempt.options(max_task_retries=1).remote(str(attempts), 2)
    assert zactor.get(ref, timeout=30) == 2


# ---------------------------------------------------------------------------------------------
# Constructor failures.


@pytest.mark.timeout(60)
@pytest.mark.parametrize("max_restarts", [0, 2])
def test_actor_whose_constructor_raises_is_dead_with_the_constructors_message(max_restarts):
    @zactor.remote
    class Broken:
        def __init__(self):
            raise ValueError("constructor broke 2718")

        def ping(self):
            return "pong"

    broken = Broken.options(max_restarts=max_restarts).remote()
    for _ in range(2):
        with pytest.raises(ActorDiedError) as info:
            zactor.get(broken.ping.remote(), timeout=30)
        assert "constructor broke 2718" in str(info.value)
    assert zactor.get(add.remote(1, 2), timeout=30) == 3


# ---------------------------------------------------------------------------------------------
# kill


@pytest.mark.timeout(60)
def test_kill_with_no_restart_is_final_even_with_restarts_left():
    counter = Counter.options(max_restarts=3).remote()
    assert zactor.get(counter.incr.remote(), timeout=30) == 1
    pid = actor_pid(counter)
    zactor.kill(counter, no_restart=True)
    with pytest.raises(ActorDiedError):
        zactor.get(counter.incr.remote(), timeout=30)
    wait_until(lambda: pid_is_gone(pid), timeout=10, message="killed actor process gone")
    with pytest.raises(ActorDiedError):
        zactor.get(counter.get.remote(), timeout=30)


@pytest.mark.timeout(60)
def test_kill_without_no_restart_lets_the_actor_restart_with_fresh_state():
    counter = Counter.options(max_restarts=1).remote()
    assert zactor.get([counter.incr.remote() for _ in range(3)], timeout=30) == [1, 2, 3]
    pid = actor_pid(counter)
    zactor.kill(counter, no_restart=False)
    wait_until(lambda: pid_is_gone(pid), timeout=10, message="killed actor process gone")
    assert zactor.get(counter.incr.remote(), timeout=30) == 1
    assert actor_pid(counter) != pid


# ---------------------------------------------------------------------------------------------
# Checkpoint hooks.


@pytest.mark.timeout(60)
@pytest.mark.parametrize("death", ["method_exit", "sigkill", "kill_no_restart_false"])
def test_checkpointed_actor_resumes_from_its_last_state_after_a_restart(death):
    counter = CheckpointedCounter.options(max_restarts=1).remote(100)
    assert zactor.get(counter.was_restored.remote(), timeout=30) is False
    for i in range(1, 6):
        assert zactor.get(counter.incr.remote(), timeout=30) == 100 + i
    pid = actor_pid(counter)
    if death == "method_exit":
        with pytest.raises(ActorUnavailableError):
            zactor.get(counter.crash.remote(), timeout=30)
    elif death == "sigkill":
        os.kill(pid, signal.SIGKILL)
        wait_for_restart(counter, pid)
    else:
        zactor.kill(counter, no_restart=False)
    wait_until(lambda: pid_is_gone(pid), timeout=10, message="actor process gone")
    assert zactor.get(counter.incr.remote(), timeout=30) == 106, "resumed from the checkpoint"
    assert zactor.get(counter.was_restored.remote(), timeout=30) is True
    assert actor_pid(counter) != pid


@pytest.mark.timeout(60)
def test_checkpoint_is_taken_after_successful_calls_only():
    @zactor.remote(max_restarts=1)
    class Careful:
        def __init__(self):
            self.value = 0

        def __zactor_checkpoint__(self):
            return self.value

        def __zactor_restore__(self, state):
            self.value = state

        def incr(self):
            self.value += 1
            return self.value

        def incr_then_fail(self):
            self.value += 1000
            raise RuntimeError("no checkpoint for me")

        def pid(self):
            return os.getpid()

    careful = Careful.remote()
    pid = actor_pid(careful)
    assert zactor.get([careful.incr.remote() for _ in range(3)], timeout=30) == [1, 2, 3]
    with pytest.raises(RuntimeError):
        zactor.get(careful.incr_then_fail.remote(), timeout=30)
    # No successful call since the failed one: the last checkpoint holds 3, not 1003.
    os.kill(pid, signal.SIGKILL)
    wait_for_restart(careful, pid)
    assert zactor.get(careful.incr.remote(), timeout=30) == 4


# ---------------------------------------------------------------------------------------------
# Bad calls: a clear error, and other work goes on.


@pytest.mark.timeout(60)
def test_calling_a_method_that_does_not_exist_raises_attribute_error_at_the_call_site():
    counter = Counter.remote()
    with pytest.raises(AttributeError) as info:
        counter.no_such_method.remote()
    assert "no_such_method" in str(info.value)
    assert zactor.get(counter.incr.remote(), timeout=30) == 1
    assert zactor.get(add.remote(1, 2), timeout=30) == 3


@pytest.mark.timeout(60)
def test_calls_on_a_killed_actor_do_not_disturb_other_actors_or_tasks():
    doomed = Counter.remote()
    survivor = Counter.remote()
    assert zactor.get([doomed.incr.remote(), survivor.incr.remote()], timeout=30) == [1, 1]
    zactor.kill(doomed)
    for _ in range(3):
        with pytest.raises(ActorDiedError):
            zactor.get(doomed.incr.remote(), timeout=30)
    assert zactor.get(survivor.incr.remote(), timeout=30) == 2
    assert zactor.get([add.remote(i, i) for i in range(4)], timeout=30) == [0, 2, 4, 6]


@pytest.mark.timeout(60)
def test_actor_restart_does_not_disturb_a_running_task(tmp_path):
    release = str(tmp_path / "release")
    started = str(tmp_path / "started")

    @zactor.remote
    def waits(release, started):
        touch(started)
        wait_for_path(release, timeout=30)
        return "fine"

    running = waits.remote(release, started)
    wait_for_path(started, timeout=30)
    counter = Counter.options(max_restarts=1).remote()
    with pytest.raises(ActorUnavailableError):
        zactor.get(counter.crash.remote(), timeout=30)
    assert zactor.get(counter.incr.remote(), timeout=30) == 1
    touch(release)
    assert zactor.get(running, timeout=30) == "fine"


@pytest.mark.timeout(60)
def test_actor_method_returning_an_unpicklable_value_raises_type_error_and_actor_lives_on():
    @zactor.remote
    class Leaky:
        def __init__(self):
            self.calls = 0

        def lock(self):
            import threading

            self.calls += 1
            return threading.Lock()

        def count(self):
            return self.calls

    leaky = Leaky.remote()
    with pytest.raises(TypeError) as info:
        zactor.get(leaky.lock.remote(), timeout=30)
    assert "lock" in str(info.value).lower()
    assert zactor.get(leaky.count.remote(), timeout=30) == 1, "same actor, state kept"


# ---------------------------------------------------------------------------------------------
# Restarts with more around them: queued calls, other holders of the handle, names, asyncio.


@pytest.mark.timeout(60)
def test_calls_queued_behind_a_crash_are_retried_on_the_restarted_actor(tmp_path):
    counter = Counter.options(max_restarts=1, max_task_retries=3).remote()
    attempts = tmp_path / "attempts"
    refs = [counter.incr.remote(), counter.incr.remote(),
            counter.crash_until_attempt.remote(str(attempts), 2),
            counter.incr.remote(), counter.incr.remote()]
    first, second, crashed, third, fourth = zactor.get(refs, timeout=45)
    assert crashed == 2 and len(attempt_pids(attempts)) == 2
    # Replay is at-least-once: calls that finished just before the crash may run again on the
    # fresh actor if their replies died with the process. Order and fresh state still hold.
    assert first < second or second == 1
    assert 1 <= third < fourth <= 4
    assert zactor.get(counter.get.remote(), timeout=30) == fourth


@pytest.mark.timeout(60)
def test_kill_fails_the_running_and_the_queued_calls_without_hanging(tmp_path):
    counter = Counter.options(max_restarts=2).remote()
    started = str(tmp_path / "started")
    running = counter.block.remote(started, str(tmp_path / "never"))
    queued = [counter.incr.remote() for _ in range(3)]
    wait_for_path(started, timeout=30)
    zactor.kill(counter)  # no_restart=True: final
    for ref in [running, *queued]:
        with pytest.raises(ActorDiedError):
            zactor.get(ref, timeout=30)


@pytest.mark.timeout(60)
def test_calls_queued_behind_a_crash_without_task_retries_end_without_hanging(tmp_path):
    counter = Counter.options(max_restarts=1).remote()
    pid = actor_pid(counter)
    started = str(tmp_path / "started")
    running = counter.block.remote(started, str(tmp_path / "never"))
    queued = [counter.incr.remote() for _ in range(3)]
    wait_for_path(started, timeout=30)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ActorUnavailableError):
        zactor.get(running, timeout=30)
    outcomes = []
    for ref in queued:  # each either ran on the restarted actor or is reported unavailable
        try:
            outcomes.append(zactor.get(ref, timeout=30))
        except ActorUnavailableError:
            outcomes.append("unavailable")
    ran = [o for o in outcomes if o != "unavailable"]
    assert ran == list(range(1, len(ran) + 1)), f"calls that ran saw a fresh actor: {outcomes}"
    assert zactor.get(counter.incr.remote(), timeout=30) == len(ran) + 1


@pytest.mark.timeout(60)
def test_handle_held_by_a_task_reaches_the_restarted_actor():
    counter = Counter.options(max_restarts=1).remote()
    assert zactor.get(counter.incr.remote(7), timeout=30) == 7
    with pytest.raises(ActorUnavailableError):
        zactor.get(counter.crash.remote(), timeout=30)

    @zactor.remote
    def bump(handle):
        return zactor.get(handle.incr.remote())

    assert zactor.get(bump.remote(counter), timeout=30) == 1


@pytest.mark.timeout(60)
def test_named_actor_keeps_its_name_across_a_restart():
    counter = Counter.options(name="restarting-counter", max_restarts=1).remote()
    assert zactor.get(counter.incr.remote(3), timeout=30) == 3
    with pytest.raises(ActorUnavailableError):
        zactor.get(counter.crash.remote(), timeout=30)
    again = zactor.get_actor("restarting-counter")
    assert zactor.get(again.incr.remote(), timeout=30) == 1
    zactor.kill(counter)


@pytest.mark.timeout(60)
def test_async_actor_restarts_after_a_crash():
    @zactor.remote(max_restarts=1)
    class AsyncCounter:
        def __init__(self):
            self.value = 0

        async def incr(self):
            self.value += 1
            return self.value

        async def crash(self):
            os._exit(1)

    counter = AsyncCounter.remote()
    assert zactor.get([counter.incr.remote() for _ in range(3)], timeout=30) == [1, 2, 3]
    with pytest.raises(ActorUnavailableError):
        zactor.get(counter.crash.remote(), timeout=30)
    assert zactor.get(counter.incr.remote(), timeout=30) == 1


@pytest.mark.timeout(60)
def test_threaded_actor_crash_fails_every_call_in_flight(tmp_path):
    @zactor.remote(max_restarts=1, max_concurrency=3)
    class Pool:
        def __init__(self):
            self.calls = 0

        def wait(self, started, never):
            touch(started)
            wait_for_path(never, timeout=90)

        def crash(self):
            os._exit(1)

        def count(self):
            self.calls += 1
            return self.calls

    pool = Pool.remote()
    never = str(tmp_path / "never")
    waiting = [pool.wait.remote(str(tmp_path / f"s{i}"), never) for i in range(2)]
    for i in range(2):
        wait_for_path(str(tmp_path / f"s{i}"), timeout=30)
    with pytest.raises(ActorUnavailableError):
        zactor.get(pool.crash.remote(), timeout=30)
    for ref in waiting:
        with pytest.raises(ActorUnavailableError):
            zactor.get(ref, timeout=30)
    assert zactor.get(pool.count.remote(), timeout=30) == 1
