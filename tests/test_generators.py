"""Generator tasks (Ray's streaming generators and num_returns="dynamic")."""

from __future__ import annotations

import asyncio
import gc
import os
import pickle
import signal

import numpy as np
import pytest
from remote_helpers import attempts_in, record_attempt, touch, wait_for_path, wait_until

import zactor
import zactor.testing
from zactor import DynamicObjectRefGenerator, ObjectRefGenerator
from zactor.exceptions import TaskCancelledError, WorkerCrashedError

pytestmark = pytest.mark.usefixtures("cluster")


@zactor.remote
def count(n: int):
    yield from range(n)


@zactor.remote
def first_then_wait(gate: str):
    yield "first"
    wait_for_path(gate)
    yield "second"


@zactor.remote
def fails_at(n: int):
    yield from range(n)
    raise ValueError(f"failed after {n}")


@zactor.remote
def endless(started: str):
    import time

    touch(started)
    i = 0
    while True:
        yield i
        i += 1
        time.sleep(0.01)


@zactor.remote
def big_items(n: int):
    for i in range(n):
        yield np.full(200_000, float(i))


@zactor.remote(max_retries=1)
def dies_once(path: str, n: int):
    attempt = record_attempt(path)
    for i in range(n):
        if attempt == 1 and i == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        yield i


@zactor.remote(max_retries=0)
def dies_for_good(gate: str):
    yield 0
    yield 1
    wait_for_path(gate)  # the caller has both: a SIGKILL cannot lose them in flight
    os.kill(os.getpid(), signal.SIGKILL)
    yield 2


@zactor.remote(num_returns="dynamic")
def split(n: int):
    for i in range(n):
        yield i * 10


def get(ref):
    return zactor.get(ref, timeout=30)


def test_a_generator_task_returns_an_object_ref_generator():
    gen = count.remote(4)
    assert isinstance(gen, ObjectRefGenerator)
    assert [get(ref) for ref in gen] == [0, 1, 2, 3]
    with pytest.raises(StopIteration):
        next(gen)
    assert gen.is_finished()
    assert get(gen.completed()) == 4


def test_each_ref_is_available_as_soon_as_it_is_yielded(tmp_path):
    gate = str(tmp_path / "gate")
    gen = first_then_wait.remote(gate)
    # The task is blocked until the gate opens, so the first value must come before its end.
    assert get(next(gen)) == "first"
    assert not zactor.wait([gen.completed()], timeout=0.2)[0]
    touch(gate)
    assert get(next(gen)) == "second"
    with pytest.raises(StopIteration):
        next(gen)


def test_an_exception_mid_stream_surfaces_at_its_item():
    gen = fails_at.remote(2)
    assert get(next(gen)) == 0 and get(next(gen)) == 1
    failing = next(gen)
    with pytest.raises(ValueError, match="failed after 2"):
        get(failing)
    with pytest.raises(StopIteration):
        next(gen)


def test_cancel_stops_a_generator(tmp_path):
    started = str(tmp_path / "started")
    gen = endless.remote(started)
    wait_for_path(started)
    first = get(next(gen))
    zactor.cancel(gen)
    seen = [first]
    with pytest.raises(TaskCancelledError):
        for ref in gen:
            seen.append(get(ref))
    assert seen == list(range(len(seen))), "values before the cancel came in order"
    with pytest.raises(StopIteration):
        next(gen)


def test_a_generator_whose_worker_dies_is_retried_and_each_item_seen_once(tmp_path):
    attempts = tmp_path / "attempts"
    assert [get(r) for r in dies_once.remote(str(attempts), 5)] == [0, 1, 2, 3, 4]
    assert attempts_in(attempts) == 2


def test_a_generator_out_of_retries_ends_with_the_crash_as_its_next_item(tmp_path):
    gate = str(tmp_path / "gate")
    gen = dies_for_good.remote(gate)
    assert get(next(gen)) == 0 and get(next(gen)) == 1
    touch(gate)
    with pytest.raises(WorkerCrashedError):
        get(next(gen))
    with pytest.raises(StopIteration):
        next(gen)


def test_async_for_over_a_generator():
    async def collect():
        return [await ref async for ref in count.remote(3)]

    assert asyncio.run(collect()) == [0, 1, 2]


@zactor.remote
class Streamer:
    def numbers(self, n):
        yield from range(n)

    def fails(self):
        yield "ok"
        raise KeyError("actor generator")


@zactor.remote
class AsyncStreamer:
    async def numbers(self, n):
        for i in range(n):
            await asyncio.sleep(0)
            yield -i


def test_actor_methods_that_yield_stream_too():
    streamer = Streamer.remote()
    assert [get(r) for r in streamer.numbers.remote(3)] == [0, 1, 2]
    gen = streamer.fails.remote()
    assert get(next(gen)) == "ok"
    with pytest.raises(KeyError):
        get(next(gen))
    assert [get(r) for r in streamer.numbers.remote(2)] == [0, 1], "the actor carries on"


def test_async_actor_generators_stream():
    assert [get(r) for r in AsyncStreamer.remote().numbers.remote(3)] == [0, -1, -2]


def test_num_returns_dynamic_returns_one_ref_to_a_generator_of_refs():
    ref = split.remote(3)
    assert isinstance(ref, zactor.ObjectRef)
    gen = get(ref)
    assert isinstance(gen, DynamicObjectRefGenerator) and len(gen) == 3
    assert [get(r) for r in gen] == [0, 10, 20]


def test_large_items_go_through_the_store_and_are_freed_with_their_refs():
    gc.collect()
    zactor._state.core.flush_refs()
    used = zactor.testing.store_stats()[0]["used"]
    values = [get(r) for r in big_items.remote(4)]
    assert [float(v[0]) for v in values] == [0.0, 1.0, 2.0, 3.0]
    assert not values[0].flags.writeable, "a zero-copy view of the store"
    del values
    gc.collect()
    zactor._state.core.flush_refs()
    wait_until(lambda: zactor.testing.store_stats()[0]["used"] <= used, timeout=20,
               message="the items' store memory to be free once their refs are gone")


def test_dropping_a_generator_early_releases_the_items_it_never_took():
    gc.collect()
    zactor._state.core.flush_refs()
    before = zactor.testing.head_stats()["objects"]
    gen = count.remote(50)
    assert get(next(gen)) == 0
    zactor.wait([gen.completed()], timeout=30)
    del gen
    gc.collect()
    zactor._state.core.flush_refs()
    wait_until(lambda: zactor.testing.head_stats()["objects"] <= before, timeout=20,
               message="the untaken items to be released")


def test_wait_accepts_generators():
    gen = count.remote(2)
    ready, rest = zactor.wait([gen], timeout=30)
    assert ready == [gen] and rest == []
    assert get(next(gen)) == 0


def test_an_object_ref_generator_cannot_be_passed_to_tasks():
    with pytest.raises(TypeError, match="ObjectRefGenerator"):
        pickle.dumps(count.remote(1))


def test_get_of_a_generator_returns_it():
    gen = count.remote(1)
    assert zactor.get(gen) is gen
