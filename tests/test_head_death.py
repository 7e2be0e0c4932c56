"""When the head itself dies, waiting callers get an error at once, and nothing is left."""

from __future__ import annotations

import os
import signal
import time

import pytest
from remote_helpers import pid_is_gone, wait_until

import zactor
import zactor.testing
from zactor.exceptions import NodeDiedError


@zactor.remote
def _sleepy():
    time.sleep(60)


@pytest.mark.timeout(60)
def test_get_raises_node_died_error_when_the_head_process_is_killed():
    zactor.init(num_cpus=1)
    try:
        ref = _sleepy.remote()
        pids = zactor.testing.worker_pids()
        shm = zactor._state.core.welcome["shm_dir"]
        os.kill(zactor.testing.head_pid(), signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(NodeDiedError, match="head"):
            zactor.get(ref, timeout=30)
        assert time.monotonic() - started < 5, "the error comes at once, not at the timeout"
    finally:
        zactor.shutdown()
    # The workers die with their parent (PDEATHSIG); shutdown removes the files.
    wait_until(lambda: all(pid_is_gone(p) for p in pids), timeout=10,
               message="workers gone with the head")
    assert not os.path.exists(shm)
