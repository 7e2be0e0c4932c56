"""Ownership: actors share the fate of the process that created them (Ray's semantics), and a
driver that dies without saying goodbye releases everything it held."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from remote_helpers import pid_is_gone, wait_until

import zactor
import zactor.testing
from zactor.exceptions import ActorDiedError

pytestmark = pytest.mark.usefixtures("cluster")


@zactor.remote
class Child:
    def ping(self):
        return "pong"


@zactor.remote
class Parent:
    def spawn(self, detached: bool = False):
        opts = {"lifetime": "detached"} if detached else {}
        self.child = Child.options(**opts).remote()
        zactor.get(self.child.ping.remote())
        return self.child

    def pid(self):
        return os.getpid()


@zactor.remote
def make_child():
    child = Child.remote()
    zactor.get(child.ping.remote())
    return child, os.getpid()


def dead_with_owner(child) -> bool:
    try:
        zactor.get(child.ping.remote(), timeout=10)
    except ActorDiedError as exc:
        assert "owner died" in str(exc), str(exc)
        return True
    return False


@pytest.mark.timeout(60)
def test_an_actor_created_by_an_actor_dies_when_its_creator_is_killed():
    parent = Parent.remote()
    child = zactor.get(parent.spawn.remote(), timeout=30)
    assert zactor.get(child.ping.remote(), timeout=10) == "pong"
    os.kill(zactor.get(parent.pid.remote(), timeout=10), signal.SIGKILL)
    wait_until(lambda: dead_with_owner(child), timeout=20, interval=0.1,
               message="the child actor to die with its owner")


@pytest.mark.timeout(60)
def test_an_actor_created_by_a_task_dies_when_that_worker_dies():
    child, worker_pid = zactor.get(make_child.remote(), timeout=30)
    assert zactor.get(child.ping.remote(), timeout=10) == "pong"
    os.kill(worker_pid, signal.SIGKILL)
    wait_until(lambda: dead_with_owner(child), timeout=20, interval=0.1,
               message="the task-created actor to die with its worker")


@pytest.mark.timeout(60)
def test_a_detached_actor_outlives_its_creator():
    parent = Parent.remote()
    child = zactor.get(parent.spawn.remote(True), timeout=30)
    parent_pid = zactor.get(parent.pid.remote(), timeout=10)
    os.kill(parent_pid, signal.SIGKILL)
    wait_until(lambda: pid_is_gone(parent_pid), timeout=10, message="the parent to die")
    with pytest.raises(ActorDiedError):
        zactor.get(parent.pid.remote(), timeout=10)
    assert zactor.get(child.ping.remote(), timeout=10) == "pong"
    zactor.kill(child)


def settled_object_count() -> int:
    """The head's object count once this driver's releases from earlier tests have landed."""
    gc.collect()
    zactor._state.core.flush_refs()
    counts = [zactor.testing.head_stats()["objects"]]

    def settled():
        counts.append(zactor.testing.head_stats()["objects"])
        return counts[-1] == counts[-2]

    wait_until(settled, timeout=10, interval=0.2, message="the object count to settle")
    return counts[-1]


KILLED_DRIVER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import zactor

    zactor.init(address=sys.argv[1], namespace="doomed")

    @zactor.remote
    class Box:
        def get(self):
            return 1

    box = Box.options(name="box").remote()
    zactor.get(box.get.remote())
    keep = [zactor.put(np.ones(300_000)) for _ in range(5)] + [zactor.put(i) for i in range(50)]
    print("ready", flush=True)
    time.sleep(600)
    """
)


@pytest.mark.timeout(90)
def test_a_driver_killed_without_goodbye_releases_its_objects_and_actors():
    before = settled_object_count()
    proc = subprocess.Popen([sys.executable, "-c", KILLED_DRIVER,
                             zactor.testing.head_address()], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        # Its puts travel on its own connection: wait until the head has them all.
        wait_until(lambda: zactor.testing.head_stats()["objects"] >= before + 55, timeout=20,
                   message="the second driver's objects to reach the head")
        box = zactor.get_actor("box", namespace="doomed")
        assert zactor.get(box.get.remote(), timeout=10) == 1
    finally:
        proc.kill()
        proc.wait()
    wait_until(lambda: zactor.testing.head_stats()["objects"] <= before, timeout=20,
               message="the killed driver's objects to be freed")
    with pytest.raises(ActorDiedError):
        zactor.get(box.get.remote(), timeout=10)
