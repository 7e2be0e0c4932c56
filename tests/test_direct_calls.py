"""Direct actor calls (zactor/_direct.py): a caller whose calls to a plain actor have all
finished may send the next ones straight to the actor's socket. These tests check that the
fast path is taken, and that ordering, failures, cancellation and bookkeeping stay those of
calls that go through the head."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from remote_helpers import touch, wait_for_path, wait_until

import zactor
import zactor._direct
from zactor import _api, _state
from zactor.exceptions import ActorUnavailableError, TaskCancelledError
from zactor.testing import head_stats

pytestmark = pytest.mark.usefixtures("cluster")


@zactor.remote
class Log:
    def __init__(self):
        self.items = []

    def add(self, item):
        if isinstance(item, list):  # a call whose argument held an ObjectRef
            item = zactor.get(item[0])
        elif isinstance(item, np.ndarray):  # a large argument
            item = int(item[0])
        self.items.append(item)
        return item

    def items_so_far(self):
        return list(self.items)

    def pid(self):
        return os.getpid()

    def wait_for(self, path, value):
        wait_for_path(path)
        return value

    def wait_then_see_a_cancel(self, path, value):
        """Wait for ``path``, then until this worker has heard of a cancelled call."""
        wait_for_path(path)
        wait_until(lambda: _state.worker.cancelled, message="the cancel reaches the worker")
        return value

    def array(self, n):
        return np.full(n, 7, dtype=np.uint8)

    def die(self):
        os._exit(3)


def direct_calls() -> int:
    return head_stats()["direct_calls"]


def settled() -> bool:
    stats = head_stats()
    return stats["tasks"] == 0 and stats["early_results"] == 0


@pytest.mark.timeout(60)
def test_sync_calls_go_straight_to_the_actor_after_the_first():
    log = Log.remote()
    before = direct_calls()
    assert [zactor.get(log.add.remote(i), timeout=30) for i in range(50)] == list(range(50))
    # The first call goes through the head, which grants the route with its result.
    assert direct_calls() - before >= 45
    assert zactor.get(log.items_so_far.remote(), timeout=30) == list(range(50))
    wait_until(settled, message="the head's books settle")


@pytest.mark.timeout(60)
def test_order_holds_when_calls_switch_between_direct_and_through_the_head(tmp_path):
    log = Log.remote()
    zactor.get(log.add.remote(-1), timeout=30)
    before = direct_calls()
    expected = [-1]
    for round_ in range(4):
        # Direct again (the head grants the route ahead of the last result).
        assert log._actor_id in _api.core().routes.active
        # The actor is busy while the calls below queue on both of its sockets, so a call
        # sent through the head could overtake the direct ones before it, were it not held.
        gate = str(tmp_path / f"go{round_}")
        blocked = log.wait_for.remote(gate, round_)
        refs = []
        for j in range(60):
            i = round_ * 100 + j
            if j % 7 == 3:  # an ObjectRef argument: resolved first, so through the head
                refs.append(log.add.remote(zactor.put(i)))
            elif j % 11 == 5:  # a ref nested in a container: registered with the head first
                refs.append(log.add.remote([zactor.put(i)]))
            elif j == 40:  # a large argument travels as an object: through the head
                refs.append(log.add.remote(np.full(200_000, i % 256, dtype=np.int64)))
                i %= 256
            else:
                refs.append(log.add.remote(i))
            expected.append(i)
        touch(gate)
        assert zactor.get(blocked, timeout=30) == round_
        assert zactor.get(refs, timeout=60) == expected[-60:]
    assert zactor.get(log.items_so_far.remote(), timeout=30) == expected
    assert direct_calls() - before >= 4 * 4  # each round starts with direct calls
    wait_until(settled, message="the head's books settle")


@pytest.mark.timeout(60)
def test_a_handle_passed_to_a_task_is_called_directly_from_its_worker():
    @zactor.remote
    def caller(handle, n):
        return [zactor.get(handle.add.remote(i)) for i in range(n)]

    log = Log.remote()
    before = direct_calls()
    assert zactor.get(caller.remote(log, 40), timeout=30) == list(range(40))
    assert direct_calls() - before >= 35


@pytest.mark.timeout(60)
def test_direct_calls_in_flight_are_retried_when_the_actor_process_dies(tmp_path):
    log = Log.options(max_restarts=-1, max_task_retries=-1).remote()
    pid = zactor.get(log.pid.remote(), timeout=30)
    zactor.get(log.add.remote(0), timeout=30)
    gate = str(tmp_path / "go")
    before = direct_calls()
    blocked = log.wait_for.remote(gate, "released")
    refs = [log.add.remote(i) for i in range(200)]
    wait_until(lambda: direct_calls() - before >= 150, message="the head hears of the calls")
    os.kill(pid, signal.SIGKILL)
    touch(gate)  # the next incarnation runs the blocked call again, and it returns at once
    assert zactor.get(blocked, timeout=60) == "released"
    assert zactor.get(refs, timeout=60) == list(range(200))
    assert zactor.get(log.pid.remote(), timeout=30) != pid
    wait_until(settled, message="the head's books settle")


@pytest.mark.timeout(60)
def test_direct_calls_owed_by_a_dead_process_fail_without_task_retries():
    log = Log.options(max_restarts=1).remote()
    zactor.get(log.add.remote(0), timeout=30)
    assert log._actor_id in _api.core().routes.active  # the calls below go directly
    dying = log.die.remote()
    later = [log.add.remote(i) for i in range(50)]
    with pytest.raises(ActorUnavailableError):
        zactor.get(dying, timeout=30)
    outcomes = []
    for ref in later:
        try:
            outcomes.append(zactor.get(ref, timeout=30))
        except ActorUnavailableError:
            outcomes.append("unavailable")
    # Each call either died with the process, or ran on the restarted actor: none hangs, and
    # those that ran did so in order.
    ran = [o for o in outcomes if o != "unavailable"]
    assert ran == sorted(ran)
    assert zactor.get(log.add.remote("after"), timeout=30) == "after"
    wait_until(settled, message="the head's books settle")


@pytest.mark.timeout(60)
def test_a_result_that_reaches_the_head_before_the_callers_notice_is_kept(monkeypatch):
    log = Log.remote()
    zactor.get(log.add.remote(0), timeout=30)  # now on a direct route
    held = []
    real = zactor._direct.send_parts

    def hold_notices(sock, parts):
        if parts[0][1] == zactor.protocol.Msg.CALLED:
            held.append((sock, parts))
        else:
            real(sock, parts)

    monkeypatch.setattr(zactor._direct, "send_parts", hold_notices)
    ref = log.add.remote(41)
    # The actor answers this process directly; the head has the results but no call yet.
    assert zactor.get(ref, timeout=30) == 41
    monkeypatch.setattr(zactor._direct, "send_parts", real)
    assert len(held) == 1
    wait_until(lambda: head_stats()["early_results"] == 1, message="results wait at the head")
    core = _api.core()
    with core._send_lock:
        real(*held[0])
    wait_until(settled, message="the notice settles the call")
    # The head serves the value to others too.
    @zactor.remote
    def read(refs):
        return zactor.get(refs[0])

    assert zactor.get(read.remote([ref]), timeout=30) == 41


@pytest.mark.timeout(60)
def test_a_large_result_comes_back_directly_and_its_file_is_freed():
    log = Log.remote()
    zactor.get(log.add.remote(0), timeout=30)
    objects = head_stats()["objects"]
    ref = log.array.remote(5_000_000)
    value = zactor.get(ref, timeout=30)
    assert value.shape == (5_000_000,) and int(value[0]) == 7 and not value.flags.writeable
    del value, ref
    wait_until(lambda: head_stats()["objects"] <= objects, message="the result is freed")


@pytest.mark.timeout(60)
def test_a_direct_call_can_be_cancelled_before_it_runs(tmp_path):
    log = Log.remote()
    zactor.get(log.add.remote(0), timeout=30)
    before = direct_calls()
    gate = str(tmp_path / "go")
    blocked = log.wait_then_see_a_cancel.remote(gate, "done")
    victim = log.add.remote("never")
    after = log.add.remote("after")
    wait_until(lambda: direct_calls() - before >= 3, message="the head hears of the calls")
    zactor.cancel(victim)
    touch(gate)  # the blocked call returns once the worker has marked the victim
    assert zactor.get(blocked, timeout=30) == "done"
    with pytest.raises(TaskCancelledError):
        zactor.get(victim, timeout=30)
    assert zactor.get(after, timeout=30) == "after"
    assert "never" not in zactor.get(log.items_so_far.remote(), timeout=30)


@pytest.mark.timeout(60)
def test_threaded_and_async_actors_take_their_calls_through_the_head():
    @zactor.remote
    class Async:
        async def echo(self, x):
            return x

    threaded = Log.options(max_concurrency=4).remote()
    aio = Async.remote()
    before = direct_calls()
    assert [zactor.get(threaded.add.remote(i), timeout=30) for i in range(10)] == list(range(10))
    assert [zactor.get(aio.echo.remote(i), timeout=30) for i in range(10)] == list(range(10))
    assert direct_calls() == before


@pytest.mark.timeout(60)
def test_results_a_dead_actor_owed_directly_come_from_the_head(monkeypatch):
    log = Log.options(max_restarts=1).remote()
    pid = zactor.get(log.pid.remote(), timeout=30)
    zactor.get(log.add.remote(0), timeout=30)  # now on a direct route
    core = _api.core()
    real = core._dispatch
    lost = []

    def lose_direct_answers(frames):
        if zactor.protocol.decode(frames[0])[0] == zactor.protocol.Msg.OBJECT and not lost:
            lost.append(frames)  # as if the actor died before its answer left its socket
            return
        real(frames)

    monkeypatch.setattr(core, "_dispatch", lose_direct_answers)
    ref = log.add.remote(5)
    wait_until(lambda: lost and settled(), message="the head has the result")
    monkeypatch.setattr(core, "_dispatch", real)
    os.kill(pid, signal.SIGKILL)  # the head revokes the route; the caller asks it instead
    assert zactor.get(ref, timeout=30) == 5


@pytest.mark.timeout(60)
def test_a_caller_that_gave_up_its_route_forgets_a_dead_actors_socket(tmp_path):
    log = Log.remote()
    pid = zactor.get(log.pid.remote(), timeout=30)
    routes = _api.core().routes
    address = routes.active[log._actor_id][0]
    blocked = log.wait_for.remote(str(tmp_path / "never"), None)  # direct, in flight
    held = log.add.remote(zactor.put(1))  # through the head: the route ends here
    assert log._actor_id not in routes.active and address in routes.sockets
    os.kill(pid, signal.SIGKILL)
    for ref in (blocked, held):
        with pytest.raises(zactor.exceptions.ActorDiedError):
            zactor.get(ref, timeout=30)
    # Told by the head, the caller closed its socket and stopped reconnecting to the address.
    wait_until(lambda: address not in routes.sockets and address not in routes.peers,
               message="the dead actor's address forgotten")


@pytest.mark.timeout(60)
def test_routes_beyond_the_limit_evict_the_oldest_without_losing_its_answers(monkeypatch):
    monkeypatch.setattr(zactor.config, "DIRECT_ROUTES_MAX", 1)
    first, second = Log.remote(), Log.remote()
    zactor.get(first.add.remote(0), timeout=30)
    routes = _api.core().routes
    assert first._actor_id in routes.active
    refs = [first.add.remote(i) for i in range(1, 300)]  # direct, many still in flight when
    zactor.get(second.add.remote(0), timeout=30)  # ... the second actor's route evicts them
    assert second._actor_id in routes.active and first._actor_id not in routes.active
    assert len(routes.sockets) == 1
    assert zactor.get(refs, timeout=30) == list(range(1, 300))
    assert zactor.get(first.items_so_far.remote(), timeout=30) == list(range(300))
    wait_until(settled, message="the head's books settle")


@pytest.mark.timeout(60)
def test_direct_calls_can_be_turned_off(monkeypatch):
    monkeypatch.setattr(zactor.config, "DIRECT_ROUTES_MAX", 0)  # ZACTOR_DIRECT_ROUTES_MAX=0
    log = Log.remote()
    before = direct_calls()
    assert [zactor.get(log.add.remote(i), timeout=30) for i in range(20)] == list(range(20))
    assert direct_calls() == before
    assert log._actor_id not in _api.core().routes.active
