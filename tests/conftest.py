"""Shared fixtures: one real local cluster per test module, and a leak check for the session.

Every test module that needs a cluster asks for the module-scoped ``cluster`` fixture (usually
through ``pytestmark = pytest.mark.usefixtures("cluster")``). A module may set
``CLUSTER_KWARGS`` to change what ``zactor.init`` is called with; the default is
``{"num_cpus": 2}``.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

import psutil
import pytest

# Tests run remote functions defined in this directory (test modules and remote_helpers.py).
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

# Runtime environments' packages and virtualenvs (zactor.runtime_env) go to a directory of
# this session's, removed at its end, not to the user's cache on this machine.
import tempfile  # noqa: E402

RUNTIME_ENV_DIR = tempfile.mkdtemp(prefix="zactor-test-runtime-env-")
os.environ["ZACTOR_RUNTIME_ENV_DIR"] = RUNTIME_ENV_DIR

import zactor  # noqa: E402

# Every process this test session starts inherits this marker, so the leak check can tell our
# cluster processes from those of another session running on the same machine.
SESSION_MARKER_VAR = "ZACTOR_TEST_SESSION"
SESSION_MARKER = uuid.uuid4().hex
os.environ[SESSION_MARKER_VAR] = SESSION_MARKER

SHM_ROOT = "/dev/shm"
SESSION_ROOT = os.path.join("/tmp", f"zactor-{os.getuid()}")
LEAK_DEADLINE_S = 5.0


def _shm_entries() -> set[str]:
    try:
        return {name for name in os.listdir(SHM_ROOT) if name.startswith("zactor")}
    except FileNotFoundError:
        return set()


def _session_dirs() -> set[str]:
    """Session directories (sockets, spilled objects) under /tmp/zactor-<uid>/, as
    ``zactor-<session>`` names so that they compare with the shm entries."""
    try:  # "registry" holds the records of zactor head/worker (zactor._registry), and
        # "runtime_resources" is the machine's cache of runtime environments: both are meant
        # to stay
        return {"zactor-" + name for name in os.listdir(SESSION_ROOT)
                if name not in ("registry", "runtime_resources")}
    except FileNotFoundError:
        return set()


def _foreign_shm_entry(name: str) -> bool:
    """True when shm entry ``zactor-<session>`` belongs to a live driver of another session.

    A local session records its driver's pid in ``/tmp/zactor-<uid>/<session>/driver.pid``.
    When that cannot be read, the entry is counted as ours (a leak), to stay strict.
    """
    session = name[len("zactor-"):]
    pid_file = os.path.join("/tmp", f"zactor-{os.getuid()}", session, "driver.pid")
    try:
        with open(pid_file) as f:
            driver = psutil.Process(int(f.read().strip()))
    except (OSError, ValueError, psutil.NoSuchProcess):
        return False
    if driver.pid == os.getpid():
        return False
    return _is_live(driver) and not _ours(driver)


def _is_live(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _ours(proc: psutil.Process) -> bool:
    """True when ``proc`` belongs to this test session (inherits our marker, or we can't tell)."""
    try:
        return proc.environ().get(SESSION_MARKER_VAR) == SESSION_MARKER
    except psutil.AccessDenied:
        return True
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False


def zactor_head_processes(only_ours: bool = True) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line mentions ``zactor.head``, the
    dashboard's process or the CLI (``zactor head`` and ``zactor worker`` started by
    zactor.testing.Cluster)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid == os.getpid():
            continue
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if not any(name in cmdline for name in ("zactor.head", "zactor.dashboard",
                                                 "zactor_cli.main")) or not _is_live(proc):
            continue
        if only_ours and not _ours(proc):
            continue
        found.append(proc)
    return found


@pytest.fixture(scope="session", autouse=True)
def no_leaked_processes_or_shm_files():
    """At the end of the session no cluster process, no /dev/shm/zactor* entry, no session
    directory (sockets, spill files) and no network namespace or link made by this session
    (tests/netns.py) may remain."""
    shm_before = _shm_entries()
    sessions_before = _session_dirs()
    foreign_before = {p.pid for p in zactor_head_processes(only_ours=False)}
    yield
    if zactor.is_initialized():
        zactor.shutdown()
    deadline = time.monotonic() + LEAK_DEADLINE_S
    while True:
        procs = [p for p in zactor_head_processes() if p.pid not in foreign_before]
        shm = sorted(e for e in _shm_entries() - shm_before if not _foreign_shm_entry(e))
        sessions = sorted(e for e in _session_dirs() - sessions_before
                          if not _foreign_shm_entry(e))
        namespaces = netns.leftovers()
        if (not procs and not shm and not sessions and not namespaces
                or time.monotonic() > deadline):
            break
        time.sleep(0.1)
    described = []
    for proc in procs:
        try:
            described.append(f"{proc.pid}: {' '.join(proc.cmdline())}")
        except psutil.Error:
            described.append(str(proc.pid))
    problems = []
    if described:
        problems.append(f"cluster processes outlived the test session: {described}")
    if shm:
        problems.append(f"shared-memory entries outlived the test session: {shm}")
    if sessions:
        problems.append(f"session directories outlived the test session: {sessions}")
    if namespaces:
        problems.append(f"network namespaces or links outlived the test session: {namespaces}")
    import shutil

    shutil.rmtree(RUNTIME_ENV_DIR, ignore_errors=True)
    assert not problems, "; ".join(problems)


@pytest.fixture(scope="module", autouse=True)
def no_driver_left_behind(request):
    """A module must leave the driver as it found it: not initialised. One that does not
    (or a background thread that started a cluster after the module's shutdown) fails
    here, by name, and the driver is shut down so that the modules after it run."""
    yield
    if zactor.is_initialized():
        zactor.shutdown()
        pytest.fail(f"{request.module.__name__} left the driver initialised")


@pytest.fixture(scope="module")
def cluster(request):
    """A real local cluster for one test module: ``zactor.init(**CLUSTER_KWARGS)``."""
    kwargs = getattr(request.module, "CLUSTER_KWARGS", {"num_cpus": 2})
    assert not zactor.is_initialized(), "a previous test left the driver initialised"
    zactor.init(**kwargs)
    try:
        yield zactor
    finally:
        zactor.shutdown()


@pytest.fixture
def cli_env(tmp_path):
    """The environment of a test's own ``zactor head`` / ``zactor worker`` processes: a home
    (their state directories and keys), a free port in ZACTOR_PORT and a socket root of
    their own (short: Unix socket paths live there), none of the caller's cluster settings.
    Whatever is still running there is stopped at the end (``zactor stop``)."""
    import shutil
    import subprocess
    import tempfile

    from remote_helpers import free_port

    sock_root = tempfile.mkdtemp(prefix="zs-", dir="/tmp")
    env = {k: v for k, v in os.environ.items()
           if k not in ("ZACTOR_CLUSTER_KEY", "ZACTOR_CLUSTER_KEY_FILE", "ZACTOR_ADDRESS")}
    env.update(HOME=str(tmp_path / "home"), ZACTOR_PORT=str(free_port()),
               ZACTOR_SOCKET_ROOT=sock_root)
    os.makedirs(env["HOME"])
    yield env
    zactor_cli = os.path.join(os.path.dirname(sys.executable), "zactor")
    subprocess.run([zactor_cli, "stop"], env=env, capture_output=True, timeout=60)
    shutil.rmtree(sock_root, ignore_errors=True)


@pytest.fixture
def fresh_driver():
    """No cluster before the test; whatever the test started is shut down after it."""
    assert not zactor.is_initialized()
    yield
    if zactor.is_initialized():
        zactor.shutdown()


# --- separate hosts in network namespaces (tests/netns.py) -------------------------------------

import netns  # noqa: E402


@pytest.fixture(scope="session")
def test_network(no_leaked_processes_or_shm_files):
    """A ``netns.TestNetwork`` for the session: a bridge at 198.18.0.1/24 (or the next free /24
    of 198.18.0.0/15) to which a test attaches hosts with ``test_network.add_host()``.

    Skips where namespaces can't be made (not root, no iproute2). Before making it, removes
    what crashed earlier runs left behind; at the end it removes every namespace and link it
    made, and kills what still runs in them, whatever happened in the tests.
    """
    reason = netns.available()
    if reason is not None:
        pytest.skip(f"network namespaces unavailable: {reason}")
    netns.remove_stale()
    network = netns.TestNetwork()
    try:
        yield network
    finally:
        network.close()
