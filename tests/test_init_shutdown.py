"""init / shutdown: the embedded local cluster, its processes, its files, its sockets.

These tests start and stop their own clusters (in this process or in a child driver process),
so they do not use the module-scoped ``cluster`` fixture.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap

import psutil
import pytest
from remote_helpers import pid_is_gone, wait_until

import zactor
import zactor.testing

SHM_ROOT = "/dev/shm"


def shm_entries() -> set[str]:
    return {n for n in os.listdir(SHM_ROOT) if n.startswith("zactor")}


def cluster_descendants() -> list[int]:
    """Pids of this process's descendants that belong to zactor."""
    pids = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "zactor" in " ".join(child.cmdline()):
                pids.append(child.pid)
        except psutil.Error:
            continue
    return pids


@zactor.remote
def one():
    return 1


@zactor.remote
def big_result(n: int):
    import numpy as np

    return np.ones(n, dtype=np.uint8)


@pytest.mark.timeout(60)
def test_init_without_address_starts_one_worker_per_logical_cpu(fresh_driver):
    zactor.init()
    expected = psutil.cpu_count(logical=True)
    assert zactor.is_initialized()
    assert zactor.cluster_resources()["CPU"] == expected
    wait_until(lambda: len(zactor.testing.worker_pids()) >= expected, timeout=20,
               message=f"{expected} workers")
    assert len(zactor.testing.worker_pids()) == expected
    assert zactor.get(one.remote(), timeout=30) == 1


@pytest.mark.timeout(60)
def test_num_cpus_overrides_the_number_of_workers(fresh_driver):
    zactor.init(num_cpus=3)
    assert zactor.cluster_resources()["CPU"] == 3
    wait_until(lambda: len(zactor.testing.worker_pids()) >= 3, timeout=20, message="3 workers")
    assert len(zactor.testing.worker_pids()) == 3


@pytest.mark.timeout(60)
def test_cluster_processes_descend_from_a_zactor_head_process(fresh_driver):
    zactor.init(num_cpus=2)
    wait_until(lambda: len(zactor.testing.worker_pids()) >= 2, timeout=20, message="2 workers")
    descendants = set(cluster_descendants())
    heads = [p for p in descendants if "zactor.head" in " ".join(psutil.Process(p).cmdline())]
    assert heads, "no child process runs `python -m zactor.head`"
    for pid in zactor.testing.worker_pids():
        assert pid in descendants, f"worker {pid} is not a descendant of the driver's cluster"
        assert "zactor" in " ".join(psutil.Process(pid).cmdline())


@pytest.mark.timeout(60)
def test_shutdown_stops_every_process_and_removes_every_shm_file(fresh_driver):
    import numpy as np

    before = shm_entries()
    zactor.init(num_cpus=2)
    big = zactor.put(np.zeros(8 << 20, dtype=np.uint8))
    assert zactor.get(big_result.remote(8 << 20), timeout=60).sum() == 8 << 20
    workers = zactor.testing.worker_pids()
    pids = set(cluster_descendants()) | set(workers)
    created = shm_entries() - before
    assert workers and pids
    assert created, "large objects should live under /dev/shm/zactor-<session>/"
    del big

    zactor.shutdown()

    assert not zactor.is_initialized()
    wait_until(lambda: all(pid_is_gone(p) for p in pids), timeout=10,
               message="all cluster processes gone after shutdown")
    wait_until(lambda: not (shm_entries() & created), timeout=10,
               message="shm entries removed after shutdown")


DRIVER_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np, psutil
    import zactor, zactor.testing

    before = {n for n in os.listdir("/dev/shm") if n.startswith("zactor")}
    zactor.init(num_cpus=2)

    @zactor.remote
    def big():
        return np.ones(4 << 20, dtype=np.uint8)

    kept = zactor.put(np.zeros(4 << 20, dtype=np.uint8))
    assert zactor.get(big.remote()).sum() == 4 << 20
    pids = [p.pid for p in psutil.Process().children(recursive=True)]
    shm = sorted({n for n in os.listdir("/dev/shm") if n.startswith("zactor")} - before)
    session_dir = os.path.dirname(zactor.testing.head_address()[len("ipc://"):])
    print(json.dumps({"pids": pids, "workers": zactor.testing.worker_pids(), "shm": shm,
                      "session_dir": session_dir}), flush=True)
    if sys.argv[1] == "block":
        sys.stdin.read()
    """
)


def _assert_cluster_gone(report: dict) -> None:
    pids = set(report["pids"]) | set(report["workers"])
    assert report["workers"], "the driver saw no workers"
    assert report["shm"], "large objects should live under /dev/shm/zactor-<session>/"
    wait_until(lambda: all(pid_is_gone(p) for p in pids), timeout=15,
               message="cluster processes gone after the driver exited")
    wait_until(lambda: not (shm_entries() & set(report["shm"])), timeout=15,
               message="shm entries removed after the driver exited")


@pytest.mark.timeout(90)
def test_driver_exit_without_shutdown_stops_cluster_and_removes_shm():
    proc = subprocess.run([sys.executable, "-c", DRIVER_SCRIPT, "exit"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    _assert_cluster_gone(report)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_driver_leaves_no_processes_or_files(sig):
    proc = subprocess.Popen([sys.executable, "-c", DRIVER_SCRIPT, "block"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        report = json.loads(line)
        os.kill(proc.pid, sig)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _assert_cluster_gone(report)
    # Neither signal lets the driver clean up after itself: the head removes the session's
    # socket directory (and its spill directory) as it stops.
    wait_until(lambda: not os.path.exists(report["session_dir"]), timeout=15,
               message="the killed driver's session directory to be removed")


@pytest.mark.timeout(60)
def test_socket_directory_is_private_to_the_user(fresh_driver):
    zactor.init(num_cpus=1)
    address = zactor.testing.head_address()
    assert address.startswith("ipc://")
    sock_dir = os.path.dirname(address[len("ipc://"):])
    user_root = f"/tmp/zactor-{os.getuid()}"
    assert os.path.realpath(sock_dir).startswith(os.path.realpath(user_root) + os.sep) or \
        os.path.realpath(sock_dir) == os.path.realpath(user_root)
    st = os.stat(sock_dir)
    assert stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode)
    assert st.st_uid == os.getuid()


@pytest.mark.timeout(60)
def test_first_remote_call_initialises_automatically():
    code = textwrap.dedent(
        """
        import zactor

        @zactor.remote
        def f(x):
            return x + 1

        assert not zactor.is_initialized()
        ref = f.remote(41)
        print(zactor.is_initialized(), zactor.get(ref))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=50)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "42"]


def test_after_shutdown_only_the_main_thread_starts_a_cluster_by_itself():
    # A library's background thread that races a shutdown (a Serve router's retry) must
    # not start a new cluster that nobody stops; the main thread still does, as Ray's does.
    code = textwrap.dedent(
        """
        import threading, zactor

        @zactor.remote
        def f(x):
            return x + 1

        assert zactor.get(f.remote(1)) == 2
        zactor.shutdown()
        errors = []
        def late():
            try:
                f.remote(1)
            except RuntimeError as exc:
                errors.append(str(exc))
        t = threading.Thread(target=late)
        t.start()
        t.join()
        print("late", zactor.is_initialized(), "shut down" in errors[0])
        print("main", zactor.get(f.remote(41)))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=50)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["late False True", "main 42"], proc.stdout


@pytest.mark.timeout(60)
def test_init_twice_raises_runtime_error_unless_ignore_reinit_error(fresh_driver):
    assert not zactor.is_initialized()
    zactor.init(num_cpus=1)
    assert zactor.is_initialized()
    with pytest.raises(RuntimeError):
        zactor.init(num_cpus=1)
    zactor.init(num_cpus=1, ignore_reinit_error=True)
    assert zactor.is_initialized()
    assert zactor.get(one.remote(), timeout=30) == 1
    zactor.shutdown()
    assert not zactor.is_initialized()


@pytest.mark.timeout(60)
def test_init_after_shutdown_starts_a_working_cluster(fresh_driver):
    zactor.init(num_cpus=1)
    assert zactor.get(one.remote(), timeout=30) == 1
    zactor.shutdown()
    zactor.init(num_cpus=2)
    assert zactor.cluster_resources()["CPU"] == 2
    assert zactor.get([one.remote() for _ in range(4)], timeout=30) == [1, 1, 1, 1]


@pytest.mark.timeout(60)
def test_init_namespace_is_the_default_for_named_actors(fresh_driver):
    zactor.init(num_cpus=1, namespace="spaced")
    assert zactor.get_runtime_context().namespace == "spaced"

    @zactor.remote
    class Named:
        def ping(self):
            return "pong"

    handle = Named.options(name="in-spaced").remote()
    assert zactor.get(handle.ping.remote(), timeout=30) == "pong"
    found = zactor.get_actor("in-spaced", namespace="spaced")
    assert zactor.get(found.ping.remote(), timeout=30) == "pong"
    assert zactor.get(zactor.get_actor("in-spaced").ping.remote(), timeout=30) == "pong"
    with pytest.raises(ValueError):
        zactor.get_actor("in-spaced", namespace="elsewhere")


@zactor.remote
def say(marker):
    print(marker, flush=True)
    return marker


@pytest.mark.timeout(60)
def test_log_to_driver_false_keeps_worker_output_out_of_the_driver(fresh_driver, capfd):
    import re
    import time
    import uuid

    hidden, shown = f"hidden-{uuid.uuid4().hex}", f"shown-{uuid.uuid4().hex}"
    zactor.init(num_cpus=1, log_to_driver=False)
    assert zactor.get(say.remote(hidden), timeout=30) == hidden
    zactor.shutdown()
    zactor.init(num_cpus=1, log_to_driver=True)
    assert zactor.get(say.remote(shown), timeout=30) == shown
    output = ""
    deadline = time.monotonic() + 20
    while shown not in output and time.monotonic() < deadline:
        out, err = capfd.readouterr()
        output += re.sub(r"\x1b\[[0-9;]*m", "", out + err)  # Ray colours prefixes
        time.sleep(0.05)
    assert re.search(rf"\(\S+ pid=\d+\) {shown}", output), output[-2000:]
    assert hidden not in output
