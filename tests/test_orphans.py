"""No orphans: a cluster whose driver dies goes away, and stale sessions are swept up.

tests/test_init_shutdown.py already kills an idle driver blocked on stdin. Here the driver dies
while its cluster is busy: a task runs (and ignores SIGTERM), an actor is alive, large objects
sit in the store. These tests start their own clusters (in a child driver, or in this process
after the module-scoped fixtures of other modules are gone), so they do not use ``cluster``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid

import psutil
import pytest
from remote_helpers import pid_is_gone, wait_until

import zactor

SHM_ROOT = "/dev/shm"
SOCKET_ROOT = f"/tmp/zactor-{os.getuid()}"

BUSY_DRIVER = textwrap.dedent(
    """
    import glob, json, os, signal, sys, time
    import numpy as np
    import psutil
    import zactor, zactor.testing

    started = sys.argv[1]
    zactor.init(num_cpus=2)

    @zactor.remote
    def stubborn(started):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with open(started, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)

    @zactor.remote
    def big():
        return np.ones(1 << 20)

    @zactor.remote
    class Holder:
        def pid(self):
            return os.getpid()

    holder = Holder.remote()
    actor_pid = zactor.get(holder.pid.remote())
    kept = zactor.put(np.zeros(1 << 20))
    made = big.remote()
    zactor.wait([made])
    running = stubborn.remote(started)
    deadline = time.monotonic() + 60
    while not os.path.exists(started) and time.monotonic() < deadline:
        time.sleep(0.01)

    session = None
    for pid_file in glob.glob(os.path.join("/tmp", f"zactor-{os.getuid()}", "*", "driver.pid")):
        with open(pid_file) as f:
            if f.read().strip() == str(os.getpid()):
                session = os.path.basename(os.path.dirname(pid_file))
    heads = [p.pid for p in psutil.Process().children(recursive=True)
             if "zactor.head" in " ".join(p.cmdline())]
    print(json.dumps({
        "session": session,
        "heads": heads,
        "descendants": [p.pid for p in psutil.Process().children(recursive=True)],
        "workers": zactor.testing.worker_pids(),
        "actor": actor_pid,
        "shm_files": sorted(os.listdir(os.path.join("/dev/shm", f"zactor-{session}"))),
        "arena_bytes": os.stat(os.path.join("/dev/shm", f"zactor-{session}", "arena")).st_blocks
                       * 512,
    }), flush=True)
    time.sleep(600)
    """
)


@pytest.mark.timeout(120)
def test_sigkilled_driver_of_a_busy_cluster_leaves_no_processes_or_shm(tmp_path):
    started = tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-c", BUSY_DRIVER, str(started)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.poll() is not None else "driver printed nothing"
        report = json.loads(line)
        session = report["session"]
        assert session, "the driver found its own session directory"
        shm_dir = os.path.join(SHM_ROOT, f"zactor-{session}")
        stubborn = int(started.read_text())
        assert report["heads"], "the driver started a zactor.head process"
        assert report["actor"] in report["workers"] and stubborn in report["workers"]
        assert report["shm_files"] == ["arena"], "the large objects live in the shm arena"
        assert report["arena_bytes"] >= 2 * 8 << 20, "both large objects are in the arena"
        pids = set(report["heads"]) | set(report["workers"]) | set(report["descendants"])
        assert os.path.isdir(shm_dir)

        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()

    wait_until(lambda: all(pid_is_gone(p) for p in pids), timeout=10, interval=0.1,
               message="head, workers (one ignoring SIGTERM) and actor gone after the driver died")
    wait_until(lambda: not os.path.exists(shm_dir), timeout=10, interval=0.1,
               message=f"{shm_dir} removed after the driver died")


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def fake_session(owner_pid: int) -> tuple[str, str]:
    """A session directory owned by ``owner_pid`` with one object file; (sock dir, shm dir)."""
    name = f"test-orphan-{uuid.uuid4().hex[:12]}"
    sock_dir = os.path.join(SOCKET_ROOT, name)
    shm_dir = os.path.join(SHM_ROOT, f"zactor-{name}")
    os.makedirs(sock_dir, mode=0o700)
    with open(os.path.join(sock_dir, "driver.pid"), "w") as f:
        f.write(str(owner_pid))
    os.makedirs(shm_dir, mode=0o700)
    with open(os.path.join(shm_dir, "x"), "wb") as f:
        f.write(b"\0" * 4096)
    return sock_dir, shm_dir


def remove_fake_session(sock_dir: str, shm_dir: str) -> None:
    for d in (sock_dir, shm_dir):
        for name in os.listdir(d) if os.path.isdir(d) else []:
            os.unlink(os.path.join(d, name))
        if os.path.isdir(d):
            os.rmdir(d)


@pytest.mark.timeout(60)
def test_init_removes_stale_sessions_whose_driver_is_dead(fresh_driver):
    os.makedirs(SOCKET_ROOT, mode=0o700, exist_ok=True)
    sock_dir, shm_dir = fake_session(dead_pid())
    try:
        zactor.init(num_cpus=1)
        assert not os.path.exists(shm_dir), "the stale shm directory was removed"
        assert not os.path.exists(sock_dir), "the stale session directory was removed"
    finally:
        remove_fake_session(sock_dir, shm_dir)


@pytest.mark.timeout(60)
def test_init_keeps_sessions_whose_driver_is_alive(fresh_driver):
    os.makedirs(SOCKET_ROOT, mode=0o700, exist_ok=True)
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    sock_dir, shm_dir = fake_session(owner.pid)
    try:
        assert psutil.pid_exists(owner.pid)
        zactor.init(num_cpus=1)
        assert os.path.exists(os.path.join(shm_dir, "x")), "a live session's objects are kept"
        assert os.path.exists(os.path.join(sock_dir, "driver.pid"))
    finally:
        owner.kill()
        owner.wait()
        remove_fake_session(sock_dir, shm_dir)
