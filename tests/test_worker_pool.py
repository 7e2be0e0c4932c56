"""The warm worker pool: extra workers leave once idle, except those whose actors would die."""

from __future__ import annotations

import os

import pytest
from remote_helpers import pid_is_gone, wait_until

import zactor
import zactor.testing


@zactor.remote
class Pinger:
    def ping(self):
        return "pong"


@zactor.remote
def pid_after(path: str | None = None):
    return os.getpid()


@zactor.remote
def make_pinger():
    pinger = Pinger.remote()
    zactor.get(pinger.ping.remote())
    return pinger, os.getpid()


@zactor.remote
def fan_out(n: int):
    """Block in get on ``n`` children at once: the pool grows past its warm size."""
    return sorted(set(zactor.get([pid_after.remote() for _ in range(n)]))) + [os.getpid()]


@pytest.mark.timeout(90)
def test_idle_extra_workers_leave_but_not_one_that_owns_a_live_actor(fresh_driver,
                                                                     monkeypatch):
    monkeypatch.setenv("ZACTOR_IDLE_WORKER_TIMEOUT_S", "0.5")
    zactor.init(num_cpus=1)
    pinger, owner_pid = zactor.get(make_pinger.remote(), timeout=30)
    # More tasks blocked in get than the warm pool holds: extra workers start.
    zactor.get([fan_out.remote(3) for _ in range(3)], timeout=60)
    grown = set(zactor.testing.worker_pids())
    assert len(grown) > 3
    # Idle workers beyond the warm pool retire; the one that created the actor stays with it.
    wait_until(lambda: len(zactor.testing.worker_pids()) <= 3, timeout=30,
               message="idle extra workers to retire")
    assert not pid_is_gone(owner_pid)
    assert zactor.get(pinger.ping.remote(), timeout=10) == "pong"
