"""Chaos: tasks and actors keep producing correct results while workers are SIGKILLed at random.

A killer thread SIGKILLs a random worker (task workers and actors alike) every 100-300 ms for
20 s while 2,000 small tasks (``max_retries=-1``) and 8 counting actors (``max_restarts=-1,
max_task_retries=-1``, 50 calls each) work; that workload is repeated in rounds until the
killer is done, so that every kill lands on work in progress. Replay is at-least-once, so each
actor call carries a sequence number and the actor applies each number once; its state
(checkpointed after every call) survives restarts. Every task result and every actor's final
state must be exact; the throughput (correct results per second) is printed.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest
from remote_helpers import wait_until

import zactor
import zactor.testing

pytestmark = [pytest.mark.usefixtures("cluster"), pytest.mark.chaos]

CLUSTER_KWARGS = {"num_cpus": 2}

NUM_TASKS = 2000
NUM_ACTORS = 8
CALLS_PER_ACTOR = 50
KILL_FOR_S = 20.0


@zactor.remote(max_retries=-1)
def square(x):
    return x * x


@zactor.remote(max_restarts=-1, max_task_retries=-1)
class Tally:
    """Adds each sequence number's amount once, however often the call is replayed."""

    def __init__(self):
        self.total = 0
        self.applied: dict[int, int] = {}  # seq -> total right after it was applied

    def __zactor_checkpoint__(self):
        return self.total, dict(self.applied)

    def __zactor_restore__(self, state):
        self.total, self.applied = state[0], dict(state[1])

    def add(self, seq: int, amount: int) -> int:
        if seq not in self.applied:
            self.total += amount
            self.applied[seq] = self.total
        return self.applied[seq]

    def state(self):
        return self.total, sorted(self.applied)

    def pid(self):
        return os.getpid()


class Killer(threading.Thread):
    def __init__(self, duration: float, victims=zactor.testing.worker_pids):
        super().__init__(name="chaos-killer", daemon=True)
        self.duration = duration
        self.victims = victims
        self.kills = 0
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.rng = random.Random(1234)

    def run(self) -> None:
        deadline = time.monotonic() + self.duration
        try:
            while time.monotonic() < deadline and not self.stop.is_set():
                pids = self.victims()
                if pids:
                    try:
                        os.kill(self.rng.choice(pids), signal.SIGKILL)
                        self.kills += 1
                    except ProcessLookupError:
                        pass
                self.stop.wait(self.rng.uniform(0.1, 0.3))
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)


@pytest.mark.timeout(180)
def test_tasks_and_actors_stay_correct_while_workers_are_killed():
    actors = [Tally.remote() for _ in range(NUM_ACTORS)]
    actor_pids = zactor.get([a.pid.remote() for a in actors], timeout=60)
    assert len(set(actor_pids)) == NUM_ACTORS
    pool_size = 2 + NUM_ACTORS  # the task workers (num_cpus=2) and one process per actor
    wait_until(lambda: len(zactor.testing.worker_pids()) >= pool_size, timeout=30,
               message="task workers and actors all up")

    killer = Killer(KILL_FOR_S)
    rounds = 0
    correct = 0
    deadline = time.monotonic() + 140
    start = time.monotonic()
    killer.start()
    try:
        # One round is the whole workload: 2,000 tasks and 50 calls per actor. Rounds repeat
        # while the killer runs, so that every kill lands on work in progress.
        while rounds == 0 or killer.is_alive():
            first_task, first_seq = rounds * NUM_TASKS, rounds * CALLS_PER_ACTOR
            task_refs = [square.remote(i) for i in range(first_task, first_task + NUM_TASKS)]
            actor_refs = [[a.add.remote(seq, 1)
                           for seq in range(first_seq, first_seq + CALLS_PER_ACTOR)]
                          for a in actors]
            results = zactor.get(task_refs, timeout=max(1.0, deadline - time.monotonic()))
            assert results == [i * i for i in range(first_task, first_task + NUM_TASKS)]
            correct += len(results)
            for refs in actor_refs:
                totals = zactor.get(refs, timeout=max(1.0, deadline - time.monotonic()))
                # Each sequence number was applied exactly once, so the totals right after
                # each call are exactly the next 50 numbers, whatever was replayed.
                assert sorted(totals) == list(range(first_seq + 1,
                                                    first_seq + CALLS_PER_ACTOR + 1))
                correct += len(totals)
            rounds += 1
        elapsed = time.monotonic() - start
    finally:
        killer.stop.set()
        killer.join(timeout=10)
    assert not killer.is_alive(), "the killer thread did not stop"
    assert not killer.errors, f"the killer failed: {killer.errors!r}"

    # Every actor ends in exactly the state of its calls, each counted once.
    calls = rounds * CALLS_PER_ACTOR
    reading = time.monotonic()
    states = zactor.get([a.state.remote() for a in actors], timeout=60)
    print(f"\nchaos: final actor states read in {time.monotonic() - reading:.1f} s")
    assert states == [(calls, list(range(calls)))] * NUM_ACTORS

    print(f"chaos: {rounds} rounds, {correct} correct results in {elapsed:.1f} s = "
          f"{correct / elapsed:.0f} results/s, with {killer.kills} workers SIGKILLed")
    assert killer.kills >= 20, "the killer should have killed something"

    # Afterwards the cluster is whole again: as many workers as before, and work runs.
    healing = time.monotonic()
    # (At least: the pool may keep a spare idle worker for a while.)
    wait_until(lambda: len(zactor.testing.worker_pids()) >= pool_size, timeout=30,
               interval=0.1, message=f"{pool_size} workers again after the chaos")
    assert zactor.get([square.remote(i) for i in range(10)], timeout=30) == \
        [i * i for i in range(10)]
    print(f"chaos: pool whole again {time.monotonic() - healing:.1f} s after the killer stopped")
    for a in actors:
        zactor.kill(a)


@zactor.remote(max_restarts=-1, max_task_retries=-1)
class Doubler:
    """A plain actor (no checkpoint), so its callers call it directly (zactor/_direct.py)."""

    def twice(self, x):
        return 2 * x

    def pid(self):
        return os.getpid()


DIRECT_KILL_FOR_S = 8.0


@pytest.mark.timeout(120)
def test_direct_actor_calls_stay_correct_while_actor_processes_are_killed():
    actors = [Doubler.remote() for _ in range(4)]
    zactor.get([a.pid.remote() for a in actors], timeout=60)

    def actor_pids():
        return zactor.get([a.pid.remote() for a in actors], timeout=60)

    before = zactor.testing.head_stats()["direct_calls"]
    killer = Killer(DIRECT_KILL_FOR_S, actor_pids)
    correct = 0
    rounds = 0
    deadline = time.monotonic() + 100
    killer.start()
    try:
        while rounds == 0 or killer.is_alive():
            timeout = max(1.0, deadline - time.monotonic())
            base = rounds * 1000
            for i, a in enumerate(actors):  # synchronous calls
                x = base + i
                assert zactor.get(a.twice.remote(x), timeout=timeout) == 2 * x
                correct += 1
            # A burst; every fourth one has an ObjectRef argument half-way (through the head,
            # held behind the direct calls before it).
            odd = base + 50 if rounds % 4 == 3 else None
            refs = [[a.twice.remote(zactor.put(x) if x == odd else x)
                     for x in range(base, base + 100)] for a in actors]
            for batch in refs:
                assert zactor.get(batch, timeout=timeout) == \
                    [2 * x for x in range(base, base + 100)]
                correct += len(batch)
            rounds += 1
    finally:
        killer.stop.set()
        killer.join(timeout=10)
    assert not killer.errors, f"the killer failed: {killer.errors!r}"
    direct = zactor.testing.head_stats()["direct_calls"] - before
    print(f"\nchaos (direct calls): {correct} correct results in {rounds} rounds, "
          f"{direct} calls went directly, {killer.kills} actor processes SIGKILLed")
    assert killer.kills >= 10
    assert direct > correct // 4

    def settled():
        stats = zactor.testing.head_stats()
        return stats["tasks"] == 0 and stats["early_results"] == 0

    wait_until(settled, timeout=30, message="the head's books settle")
