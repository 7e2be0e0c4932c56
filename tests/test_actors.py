"""Actors: state, ordering, handles, names and namespaces, lifetime, kill, concurrency."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time

import pytest
import remote_helpers
from remote_helpers import block_until, pid_is_gone, touch, wait_until

import zactor
import zactor.testing
from zactor.exceptions import ActorDiedError, TaskError

pytestmark = pytest.mark.usefixtures("cluster")


@zactor.remote
class Counter:
    def __init__(self, start=0):
        self.value = start
        self.seen = []

    def incr(self, by=1):
        self.value += by
        return self.value

    def get(self):
        return self.value

    def record(self, item):
        self.seen.append(item)
        return len(self.seen)

    def history(self):
        return list(self.seen)

    def pid(self):
        return os.getpid()

    def fail(self, message):
        raise RuntimeError(message)

    @zactor.method(num_returns=2)
    def split(self, x):
        return x, -x


def wait_until_actor_name_is_free(name: str, namespace: str | None = None,
                                  timeout: float = 20.0) -> None:
    """Poll ``get_actor`` until it raises ValueError (each found handle is dropped at once)."""

    def gone():
        try:
            handle = zactor.get_actor(name, namespace=namespace)
        except ValueError:
            return True
        del handle
        gc.collect()
        return False

    wait_until(gone, timeout=timeout, interval=0.2, message=f"actor {name!r} to disappear")


def test_actor_keeps_state_between_calls():
    counter = Counter.remote(10)
    assert zactor.get(counter.incr.remote()) == 11
    assert zactor.get(counter.incr.remote(5)) == 16
    assert zactor.get(counter.get.remote()) == 16


def test_actors_do_not_share_state():
    a, b = Counter.remote(), Counter.remote()
    zactor.get([a.incr.remote(), a.incr.remote(), b.incr.remote()])
    assert zactor.get([a.get.remote(), b.get.remote()]) == [2, 1]


def test_actor_runs_in_its_own_process():
    a, b = Counter.remote(), Counter.remote()
    pa, pb = zactor.get([a.pid.remote(), b.pid.remote()])
    assert pa != pb
    assert os.getpid() not in (pa, pb)


def test_actor_calls_from_one_caller_run_in_submission_order():
    counter = Counter.remote()
    refs = [counter.record.remote(i) for i in range(200)]
    assert zactor.get(refs) == list(range(1, 201))
    assert zactor.get(counter.history.remote()) == list(range(200))


@pytest.mark.timeout(60)
def test_submission_order_holds_when_an_earlier_call_waits_for_its_argument(tmp_path):
    counter = Counter.remote()
    release = str(tmp_path / "release")
    late_value = block_until.remote(release, "first")
    first = counter.record.remote(late_value)
    second = counter.record.remote("second")
    try:
        ready, _ = zactor.wait([second], timeout=0.5)
        assert ready == [], "the second call must wait for the first one"
    finally:
        touch(release)
    assert zactor.get([first, second], timeout=30) == [1, 2]
    assert zactor.get(counter.history.remote()) == ["first", "second"]


def test_calling_an_actor_class_directly_raises_type_error():
    with pytest.raises(TypeError):
        Counter()


def test_calling_an_actor_method_directly_raises_type_error():
    counter = Counter.remote()
    with pytest.raises(TypeError):
        counter.incr()


def test_actor_method_with_num_returns_gives_one_ref_per_value():
    counter = Counter.remote()
    pos, neg = counter.split.remote(3)
    assert zactor.get([pos, neg]) == [3, -3]
    refs = counter.incr.options(num_returns=1).remote()
    assert zactor.get(refs) == 1


def test_actor_handle_passed_to_a_task_reaches_the_same_actor():
    counter = Counter.remote()

    @zactor.remote
    def bump(handle, n):
        return zactor.get([handle.incr.remote() for _ in range(n)])[-1]

    assert zactor.get(bump.remote(counter, 3)) == 3
    assert zactor.get(bump.remote(counter, 2)) == 5
    assert zactor.get(counter.get.remote()) == 5


def test_actor_handle_passed_to_another_actor_reaches_the_same_actor():
    counter = Counter.remote()

    @zactor.remote
    class Forwarder:
        def __init__(self, target):
            self.target = target

        def forward(self, by):
            return zactor.get(self.target.incr.remote(by))

    forwarder = Forwarder.remote(counter)
    assert zactor.get(forwarder.forward.remote(4)) == 4
    assert zactor.get(counter.incr.remote(1)) == 5


def test_actor_handle_nested_in_a_container_is_usable_in_a_task():
    counters = [Counter.remote(i) for i in range(3)]

    @zactor.remote
    def read_all(handles):
        return zactor.get([h.get.remote() for h in handles["c"]])

    assert zactor.get(read_all.remote({"c": counters})) == [0, 1, 2]


def test_actor_method_exception_is_raised_and_the_actor_survives():
    counter = Counter.remote()
    zactor.get(counter.incr.remote())
    with pytest.raises(RuntimeError) as info:
        zactor.get(counter.fail.remote("method broke"))
    assert isinstance(info.value, TaskError)
    assert "method broke" in str(info.value)
    assert zactor.get(counter.incr.remote()) == 2


@pytest.mark.timeout(60)
def test_actor_whose_constructor_raises_is_dead():
    @zactor.remote
    class Broken:
        def __init__(self):
            raise ValueError("constructor broke")

        def ping(self):
            return "pong"

    broken = Broken.remote()
    with pytest.raises(ActorDiedError):
        zactor.get(broken.ping.remote(), timeout=30)


def test_plain_class_from_a_module_next_to_the_driver_becomes_an_actor():
    Accumulator = zactor.remote(remote_helpers.Accumulator)
    acc = Accumulator.remote(100)
    assert zactor.get(acc.add.remote(5)) == 105
    assert zactor.get(acc.apply.remote(remote_helpers.square, 9)) == 81


def test_named_actor_is_found_by_get_actor():
    counter = Counter.options(name="named-counter").remote()
    zactor.get(counter.incr.remote(7))
    found = zactor.get_actor("named-counter")
    assert zactor.get(found.incr.remote()) == 8
    zactor.kill(counter)


def test_get_actor_for_a_missing_name_raises_value_error():
    with pytest.raises(ValueError):
        zactor.get_actor("no-such-actor-anywhere")


def test_named_actor_is_scoped_by_namespace():
    counter = Counter.options(name="ns-counter", namespace="ns-one").remote()
    zactor.get(counter.incr.remote())
    found = zactor.get_actor("ns-counter", namespace="ns-one")
    assert zactor.get(found.get.remote()) == 1
    with pytest.raises(ValueError):
        zactor.get_actor("ns-counter")
    with pytest.raises(ValueError):
        zactor.get_actor("ns-counter", namespace="ns-two")
    # The same name is free in another namespace.
    other = Counter.options(name="ns-counter", namespace="ns-two").remote(50)
    assert zactor.get(zactor.get_actor("ns-counter", namespace="ns-two").get.remote()) == 50
    assert zactor.get(found.get.remote()) == 1
    zactor.kill(counter)
    zactor.kill(other)


def test_duplicate_actor_name_raises_value_error():
    first = Counter.options(name="dup-name").remote()
    zactor.get(first.get.remote())
    with pytest.raises(ValueError):
        Counter.options(name="dup-name").remote()
    zactor.kill(first)


def test_get_if_exists_returns_the_existing_named_actor():
    first = Counter.options(name="shared-name", get_if_exists=True).remote(1)
    assert zactor.get(first.incr.remote()) == 2
    again = Counter.options(name="shared-name", get_if_exists=True).remote(1000)
    assert zactor.get(again.incr.remote()) == 3
    zactor.kill(first)


@pytest.mark.timeout(60)
def test_named_actor_dies_when_its_last_handle_is_dropped():
    counter = Counter.options(name="short-lived").remote()
    actor_pid = zactor.get(counter.pid.remote())
    del counter
    gc.collect()
    wait_until_actor_name_is_free("short-lived")
    wait_until(lambda: pid_is_gone(actor_pid), timeout=20, message="actor process exit")


@pytest.mark.timeout(60)
def test_detached_actor_outlives_its_handles_until_killed():
    detached = Counter.options(name="keeper", lifetime="detached").remote(41)
    attached = Counter.options(name="ephemeral").remote()
    zactor.get([detached.incr.remote(), attached.get.remote()])
    del detached, attached
    gc.collect()
    # Once the non-detached actor is gone, the detached one must still be there.
    wait_until_actor_name_is_free("ephemeral")
    keeper = zactor.get_actor("keeper")
    assert zactor.get(keeper.get.remote()) == 42
    zactor.kill(keeper)
    wait_until_actor_name_is_free("keeper")


@pytest.mark.timeout(60)
def test_kill_stops_the_actor_and_later_calls_raise_actor_died_error():
    counter = Counter.remote()
    actor_pid = zactor.get(counter.pid.remote())
    zactor.kill(counter)
    with pytest.raises(ActorDiedError):
        zactor.get(counter.get.remote(), timeout=30)
    wait_until(lambda: pid_is_gone(actor_pid), timeout=20, message="killed actor process exit")


@pytest.mark.timeout(60)
def test_killing_a_named_actor_frees_its_name():
    counter = Counter.options(name="to-kill").remote()
    zactor.get(counter.get.remote())
    zactor.kill(counter)
    wait_until_actor_name_is_free("to-kill")
    replacement = Counter.options(name="to-kill").remote(3)
    assert zactor.get(replacement.get.remote(), timeout=30) == 3
    zactor.kill(replacement)


@pytest.mark.timeout(60)
def test_threaded_actor_runs_up_to_max_concurrency_calls_at_once():
    @zactor.remote
    class Meeting:
        def __init__(self):
            self.barrier = threading.Barrier(3)
            self.lock = threading.Lock()
            self.active = 0
            self.peak = 0

        def meet(self):
            with self.lock:
                self.active += 1
                self.peak = max(self.peak, self.active)
            try:
                return self.barrier.wait(timeout=20) >= 0
            finally:
                with self.lock:
                    self.active -= 1

        def peak_concurrency(self):
            return self.peak

    meeting = Meeting.options(max_concurrency=3).remote()
    assert zactor.get([meeting.meet.remote() for _ in range(3)], timeout=40) == [True] * 3
    assert zactor.get(meeting.peak_concurrency.remote()) == 3


@pytest.mark.timeout(60)
def test_threaded_actor_never_exceeds_max_concurrency():
    @zactor.remote(max_concurrency=2)
    class Gate:
        def __init__(self):
            self.lock = threading.Lock()
            self.pairs = threading.Barrier(2)
            self.active = 0
            self.peak = 0

        def work(self):
            with self.lock:
                self.active += 1
                self.peak = max(self.peak, self.active)
            try:
                self.pairs.wait(timeout=20)  # two calls must be in here together
                time.sleep(0.02)  # give a third call the chance to (wrongly) enter
                return True
            finally:
                with self.lock:
                    self.active -= 1

        def peak_concurrency(self):
            return self.peak

    gate = Gate.remote()
    assert all(zactor.get([gate.work.remote() for _ in range(12)], timeout=40))
    assert zactor.get(gate.peak_concurrency.remote()) == 2


@pytest.mark.timeout(60)
def test_async_actor_interleaves_calls_on_its_event_loop():
    @zactor.remote
    class AsyncSignal:
        def __init__(self):
            self.event = None

        async def wait_for_signal(self):
            if self.event is None:
                self.event = asyncio.Event()
            await asyncio.wait_for(self.event.wait(), timeout=20)
            return "released"

        async def signal(self):
            if self.event is None:
                self.event = asyncio.Event()
            self.event.set()
            return "signalled"

    actor = AsyncSignal.remote()
    waiter = actor.wait_for_signal.remote()
    ready, _ = zactor.wait([waiter], timeout=0.3)
    assert ready == []
    assert zactor.get(actor.signal.remote(), timeout=30) == "signalled"
    assert zactor.get(waiter, timeout=30) == "released"


@pytest.mark.timeout(60)
def test_async_actor_can_await_object_refs():
    @zactor.remote
    class Awaiter:
        async def total(self, refs):
            values = await asyncio.gather(*refs)
            return sum(values)

    actor = Awaiter.remote()
    refs = [remote_helpers.helper_add.remote(i, i) for i in range(5)]
    assert zactor.get(actor.total.remote(refs), timeout=30) == 20


def test_actor_method_call_results_can_feed_other_tasks():
    counter = Counter.remote(1)
    ref = counter.incr.remote(1)
    assert zactor.get(remote_helpers.helper_add.remote(ref, 10)) == 12


def test_actor_method_arguments_resolve_top_level_refs_only():
    @zactor.remote
    class Inspector:
        def inspect(self, top, nested):
            return top, isinstance(nested[0], zactor.ObjectRef), zactor.get(nested[0])

    inspector = Inspector.remote()
    ref = zactor.put("value")
    assert zactor.get(inspector.inspect.remote(ref, [ref])) == ("value", True, "value")


@pytest.mark.timeout(60)
def test_async_actor_method_exception_is_raised_as_its_class():
    @zactor.remote
    class AsyncFailer:
        async def fail(self):
            await asyncio.sleep(0)
            raise LookupError("async failure")

        async def ok(self):
            return "ok"

    actor = AsyncFailer.remote()
    with pytest.raises(LookupError) as info:
        zactor.get(actor.fail.remote(), timeout=30)
    assert isinstance(info.value, TaskError)
    assert "async failure" in str(info.value)
    assert zactor.get(actor.ok.remote(), timeout=30) == "ok"


@pytest.mark.timeout(60)
def test_dead_actors_without_handles_leave_the_head_tables():
    @zactor.remote
    class Brief:
        def ping(self):
            return 1

    before = zactor.testing.head_stats()["actor_records"]
    for _ in range(10):
        actor = Brief.remote()
        assert zactor.get(actor.ping.remote(), timeout=30) == 1
        del actor
    wait_until(lambda: zactor.testing.head_stats()["actor_records"] <= before, timeout=20,
               message="the head forgets actors that are dead and unreachable")
