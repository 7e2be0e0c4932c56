"""Supervision trees (zactor.supervision): strategies, restart types, intensity, nesting."""

from __future__ import annotations

import os
import signal
import time

import pytest
from remote_helpers import pid_is_gone, wait_until

import zactor
from zactor import supervision as sv
from zactor.exceptions import ActorDiedError, ActorUnavailableError

pytestmark = pytest.mark.usefixtures("cluster")


@zactor.remote
class Worker:
    def __init__(self, tag="w"):
        self.tag = tag
        self.count = 0

    def incr(self):
        self.count += 1
        return self.count

    def pid(self):
        return os.getpid()

    def crash(self):
        os._exit(3)

    def finish(self):
        os._exit(0)  # a normal exit


@zactor.remote
class Broken:
    def __init__(self):
        raise RuntimeError("cannot start: missing config")


def _incr_all(handles):
    return zactor.get([h.incr.remote() for h in handles], timeout=30)


def _states(sup):
    return {c["name"]: c for c in sup.which_children()}


def _kill(handle):
    pid = zactor.get(handle.pid.remote(), timeout=30)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: pid_is_gone(pid), timeout=10, message="child process gone")
    return pid


def _wait_restarts(sup, name, n):
    wait_until(lambda: _states(sup)[name]["restarts"] >= n
               and _states(sup)[name]["state"] == "alive", timeout=20,
               message=f"{name} restarted {n} time(s)")


@pytest.mark.timeout(60)
def test_one_for_one_restarts_only_the_child_that_died_through_the_same_handle():
    sup = sv.start([sv.ChildSpec("a", Worker), sv.ChildSpec("b", Worker)], name="o41")
    try:
        a, b = sup.child("a"), sup.child("b")
        assert _incr_all([a, b, a, b]) == [1, 1, 2, 2]
        old = _kill(a)
        _wait_restarts(sup, "a", 1)
        assert _incr_all([a, b]) == [1, 3], "a restarted fresh through the same handle; b kept"
        assert zactor.get(a.pid.remote()) != old
        assert _states(sup)["b"]["restarts"] == 0
    finally:
        sup.stop()


@pytest.mark.timeout(60)
def test_one_for_all_restarts_every_child():
    sup = sv.start([sv.ChildSpec("a", Worker), sv.ChildSpec("b", Worker)], name="o4a",
                   strategy="one_for_all")
    try:
        a, b = sup.child("a"), sup.child("b")
        _incr_all([a, b, a, b])
        _kill(b)
        _wait_restarts(sup, "a", 1)
        _wait_restarts(sup, "b", 1)
        assert _incr_all([a, b]) == [1, 1]
    finally:
        sup.stop()


@pytest.mark.timeout(60)
def test_rest_for_one_restarts_the_child_and_those_started_after_it():
    children = [sv.ChildSpec(n, Worker) for n in ("first", "middle", "last")]
    sup = sv.start(children, name="r41", strategy="rest_for_one")
    try:
        first, middle, last = (sup.child(n) for n in ("first", "middle", "last"))
        _incr_all([first, middle, last, first, middle, last])
        _kill(middle)
        _wait_restarts(sup, "middle", 1)
        _wait_restarts(sup, "last", 1)
        assert _incr_all([first, middle, last]) == [3, 1, 1]
        assert _states(sup)["first"]["restarts"] == 0
    finally:
        sup.stop()


@pytest.mark.timeout(60)
def test_children_are_named_actors_reachable_by_path():
    sup = sv.start([sv.ChildSpec("a", Worker, args=("x",))], name="named")
    try:
        assert zactor.get(sv.get_child("named/a").incr.remote()) == 1
        assert zactor.get(zactor.get_actor("named/a").incr.remote()) == 2
    finally:
        sup.stop()


@pytest.mark.timeout(60)
def test_transient_child_is_not_restarted_after_a_normal_exit_but_is_after_a_crash():
    sup = sv.start([sv.ChildSpec("t", Worker, restart="transient"),
                    sv.ChildSpec("c", Worker, restart="transient")], name="trans")
    try:
        t, c = sup.child("t"), sup.child("c")
        t.finish.remote()
        wait_until(lambda: _states(sup)["t"]["state"] == "dead", timeout=20,
                   message="transient child stays down after a normal exit")
        with pytest.raises(ActorDiedError):
            zactor.get(t.incr.remote(), timeout=10)
        with pytest.raises(ActorUnavailableError):
            zactor.get(c.crash.remote(), timeout=10)
        _wait_restarts(sup, "c", 1)
        assert zactor.get(c.incr.remote()) == 1
    finally:
        sup.stop()


@pytest.mark.timeout(60)
def test_temporary_child_is_never_restarted():
    sup = sv.start([sv.ChildSpec("tmp", Worker, restart="temporary")], name="temp")
    try:
        tmp = sup.child("tmp")
        _kill(tmp)
        wait_until(lambda: _states(sup)["tmp"]["state"] == "dead", timeout=20,
                   message="temporary child stays down")
        with pytest.raises(ActorDiedError):
            zactor.get(tmp.incr.remote(), timeout=10)
    finally:
        sup.stop()


@pytest.mark.timeout(60)
def test_past_its_intensity_the_supervisor_gives_up_and_stops_its_children():
    sup = sv.start([sv.ChildSpec("a", Worker), sv.ChildSpec("b", Worker)], name="fragile",
                   max_restarts=1, period=60)
    a, b = sup.child("a"), sup.child("b")
    _kill(a)
    _wait_restarts(sup, "a", 1)
    _kill(a)  # the second restart within the period is one too many
    with pytest.raises(ActorDiedError):
        wait_until(lambda: zactor.get(b.incr.remote(), timeout=10) and False, timeout=20,
                   message="sibling stopped")
    with pytest.raises(ActorDiedError):
        zactor.get(sup.handle.ready.remote(), timeout=10)  # the supervisor failed itself


@pytest.mark.timeout(60)
def test_back_off_spaces_repeated_restarts():
    sup = sv.start([sv.ChildSpec("a", Worker)], name="slow", max_restarts=10, period=60,
                   backoff_initial=0.2, backoff_max=2.0)
    try:
        a = sup.child("a")
        t0 = time.monotonic()
        _kill(a)
        _wait_restarts(sup, "a", 1)
        _kill(a)
        _wait_restarts(sup, "a", 2)
        # back-off of 0.2 s, then 0.4 s
        assert time.monotonic() - t0 >= 0.6
    finally:
        sup.stop()


@pytest.mark.timeout(90)
def test_nested_supervisor_that_gives_up_is_restarted_by_its_parent_with_a_fresh_subtree():
    inner = sv.SupervisorSpec("inner", [sv.ChildSpec("w", Worker)], max_restarts=0, period=60)
    top = sv.start([inner, sv.ChildSpec("z", Worker)], name="tree", max_restarts=3, period=60)
    try:
        w = sv.get_child("tree/inner/w")
        z = top.child("z")
        assert _incr_all([w, z]) == [1, 1]
        _kill(w)  # inner allows no restart: it gives up, and top restarts it (one_for_one)
        _wait_restarts(top, "inner", 1)
        wait_until(lambda: _alive("tree/inner/w"), timeout=20, message="new subtree")
        assert zactor.get(sv.get_child("tree/inner/w").incr.remote()) == 1
        assert zactor.get(z.incr.remote()) == 2, "a sibling of the failed subtree is untouched"
    finally:
        top.stop()


def _alive(path):
    try:
        return zactor.get(sv.get_child(path).pid.remote(), timeout=5) > 0
    except (ValueError, ActorDiedError):
        return False


@pytest.mark.timeout(60)
def test_a_child_whose_constructor_fails_makes_start_fail_with_its_message():
    with pytest.raises(ActorDiedError, match="missing config"):
        sv.start([sv.ChildSpec("broken", Broken)], name="nostart")


@pytest.mark.timeout(30)
def test_bad_specs_are_rejected_at_the_call_site():
    with pytest.raises(ValueError, match="strategy"):
        sv.start([sv.ChildSpec("a", Worker)], name="bad1", strategy="one_for_some")
    with pytest.raises(ValueError, match="restart"):
        sv.start([sv.ChildSpec("a", Worker, restart="sometimes")], name="bad2")
    with pytest.raises(ValueError, match="unique"):
        sv.start([sv.ChildSpec("a", Worker), sv.ChildSpec("a", Worker)], name="bad3")
    with pytest.raises(TypeError, match="remote class"):
        sv.start([sv.ChildSpec("a", object)], name="bad4")
