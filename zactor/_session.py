"""Starting and stopping an embedded local cluster: directories, the head process, cleanup.

Sockets live in ``/tmp/zactor-<uid>/<session>/`` (mode 0700, so only this user can connect),
large objects in ``/dev/shm/zactor-<session>/`` and objects spilled to disk in the session
directory's ``spill/`` (or ``<ZACTOR_SPILL_DIR>/zactor-spill-<session>/``). Each session
directory records its driver's pid; a new session removes the directories of sessions whose
driver is dead.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from zactor import _process, config

log = logging.getLogger(__name__)


def host_id() -> str:
    """Which machine this is, as far as sharing memory goes: processes with the same host id
    can map each other's store. The network namespace is part of it, so that test hosts in
    namespaces on one machine are told apart as real machines would be."""
    try:
        netns = os.readlink("/proc/self/ns/net")
    except OSError:
        netns = ""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    return f"{os.uname().nodename}/{boot}/{netns}"


def socket_root() -> str:
    root = os.path.join(config.SOCKET_ROOT, f"zactor-{os.getuid()}")
    os.makedirs(root, mode=0o700, exist_ok=True)
    st = os.stat(root)
    if st.st_uid != os.getuid():
        raise PermissionError(f"{root} belongs to another user; refusing to use it")
    if st.st_mode & 0o077:
        os.chmod(root, 0o700)
    return root


def remove_stale_sessions(root: str) -> list[str]:
    """Remove session directories (and their shm dirs) whose driver process is gone."""
    removed = []
    for name in os.listdir(root):
        path = os.path.join(root, name)
        try:
            with open(os.path.join(path, "driver.pid")) as f:
                pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            continue
        if pid and _process.is_alive(pid):
            continue
        try:
            with open(os.path.join(path, "spill_dir")) as f:
                _process.remove_tree(f.read().strip())
        except OSError:
            pass
        _process.remove_tree(path)
        _process.remove_tree(os.path.join(config.SHM_ROOT, f"zactor-{name}"))
        removed.append(name)
    return removed


class EmbeddedCluster:
    """The head process this driver started, and the directories it owns."""

    def __init__(self, num_cpus: int, num_gpus: int, resources: dict | None,
                 object_store_memory: int | None, log_level: int,
                 spill_root: str | None = None, dashboard: dict | None = None) -> None:
        root = socket_root()
        for name in remove_stale_sessions(root):
            log.info("removed stale session %s", name)
        self.session = time.strftime("%Y%m%d-%H%M%S-") + os.urandom(4).hex()
        self.session_dir = os.path.join(root, self.session)
        os.mkdir(self.session_dir, 0o700)
        with open(os.path.join(self.session_dir, "driver.pid"), "w") as f:
            f.write(str(os.getpid()))
        self.shm_dir = os.path.join(config.SHM_ROOT, f"zactor-{self.session}")
        os.mkdir(self.shm_dir, 0o700)
        self.address = f"ipc://{self.session_dir}/head.sock"
        spill_root = spill_root or config.SPILL_DIR
        if spill_root:
            self.spill_dir = os.path.join(os.path.abspath(spill_root),
                                          f"zactor-spill-{self.session}")
        else:
            self.spill_dir = os.path.join(self.session_dir, "spill")
        with open(os.path.join(self.session_dir, "spill_dir"), "w") as f:
            f.write(self.spill_dir)  # so that a later session can remove it if we crash
        cwd = os.getcwd()
        sys_path = [os.path.abspath(p) if p else cwd for p in sys.path]
        cfg = {
            "session": self.session, "address": self.address, "shm_dir": self.shm_dir,
            "num_cpus": num_cpus, "num_gpus": num_gpus, "resources": resources or {},
            "object_store_memory": object_store_memory, "driver_pid": os.getpid(),
            "spill_dir": self.spill_dir,
            "sys_path": sys_path, "cwd": cwd, "local_node": True,
            "node_id": os.urandom(14).hex(), "log_level": log_level,
            "dashboard": dashboard,
        }
        env = dict(os.environ)
        self.proc: _process.Child | None = _process.spawn_head([json.dumps(cfg)], env)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc = self.proc
        if proc is not None:
            if proc.wait(timeout=config.SHUTDOWN_TIMEOUT_S) is None:
                log.warning("the head did not stop in time; killing it")
                proc.kill()
                proc.wait()
            self.proc = None
        _process.remove_tree(self.shm_dir)
        _process.remove_tree(self.spill_dir)
        _process.remove_tree(self.session_dir)


def find_local_head() -> str:
    """The address of the newest running local cluster of this user (``address="auto"``);
    ConnectionError if there is none."""
    root = os.path.join(config.SOCKET_ROOT, f"zactor-{os.getuid()}")
    found = []
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        names = []
    for name in names:
        path = os.path.join(root, name)
        sock = os.path.join(path, "head.sock")
        try:
            with open(os.path.join(path, "driver.pid")) as f:
                pid = int(f.read().strip() or 0)
            started = os.stat(sock).st_mtime
        except (OSError, ValueError):
            continue
        if pid and _process.is_alive(pid):
            found.append((started, sock))
    if not found:
        raise ConnectionError(f"no running zactor cluster of this user was found (looked in "
                              f"{root}); start one with zactor.init() first")
    return "ipc://" + max(found)[1]


def spill_root_from(system_config: dict | None) -> str | None:
    """The directory of Ray's ``_system_config={"object_spilling_config": ...}`` (its
    "filesystem" type), if given."""
    if not system_config or "object_spilling_config" not in system_config:
        return None
    spec = system_config["object_spilling_config"]
    if isinstance(spec, str):
        spec = json.loads(spec)
    if not isinstance(spec, dict) or spec.get("type", "filesystem") != "filesystem":
        raise ValueError("object_spilling_config: only the 'filesystem' type is supported, "
                         f"got {spec!r}")
    path = (spec.get("params") or {}).get("directory_path")
    if isinstance(path, list):  # Ray accepts several directories; zactor uses the first
        path = path[0] if path else None
    if not isinstance(path, str) or not path:
        raise ValueError("object_spilling_config needs params.directory_path")
    return path


def detect_gpus() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    smi = next((os.path.join(d, "nvidia-smi") for d in os.get_exec_path()
                if os.access(os.path.join(d, "nvidia-smi"), os.X_OK)), None)
    if not smi:
        return 0
    import subprocess

    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def _new_session_dirs(prefix: str = "") -> tuple[str, str, str]:
    """A session directory (recording this process as its owner), its shm directory and
    its spill directory, for a head or node agent started from the command line."""
    root = socket_root()
    for name in remove_stale_sessions(root):
        log.info("removed stale session %s", name)
    session = prefix + time.strftime("%Y%m%d-%H%M%S-") + os.urandom(4).hex()
    session_dir = os.path.join(root, session)
    os.mkdir(session_dir, 0o700)
    with open(os.path.join(session_dir, "driver.pid"), "w") as f:
        f.write(str(os.getpid()))
    shm_dir = os.path.join(config.SHM_ROOT, f"zactor-{session}")
    os.makedirs(shm_dir, mode=0o700, exist_ok=True)
    spill_dir = os.path.join(session_dir, "spill")
    if config.SPILL_DIR:
        spill_dir = os.path.join(os.path.abspath(config.SPILL_DIR), f"zactor-spill-{session}")
    with open(os.path.join(session_dir, "spill_dir"), "w") as f:
        f.write(spill_dir)
    return session, session_dir, shm_dir


def cluster_head_config(host: str, port: int, num_cpus: int, num_gpus: int,
                        resources: dict | None, object_store_memory: int | None,
                        state_dir: str, insecure: bool, log_level: int) -> dict:
    """The configuration of a ``zactor head`` process (zactor.head.__main__.run_head)."""
    from zactor.comm import security

    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    key_file = None
    if not insecure:
        _creds, key_file = security.load_or_create(state_dir)
    session, session_dir, shm_dir = _new_session_dirs()
    with open(os.path.join(session_dir, "spill_dir")) as f:
        spill_dir = f.read()
    # A restarted head takes the same port and the same local socket, so that what was
    # connected to the old one reconnects by itself.
    port_file = os.path.join(state_dir, "port")
    if port == 0 and os.path.exists(port_file):
        with open(port_file) as f:
            port = int(f.read().strip() or 0)
    ipc = os.path.join(state_dir, "head.sock")
    if len(ipc) > 100:  # a Unix socket path must fit in 108 bytes
        ipc = os.path.join(session_dir, "head.sock")
    return {
        "session": session, "session_dir": session_dir, "address": f"ipc://{ipc}",
        "tcp": f"tcp://{host}:{port}", "key_file": key_file, "insecure": insecure,
        "state_dir": state_dir, "shm_dir": shm_dir, "spill_dir": spill_dir,
        "num_cpus": num_cpus, "num_gpus": num_gpus, "resources": resources or {},
        "object_store_memory": object_store_memory, "sys_path": [], "cwd": os.getcwd(),
        "local_node": True, "node_id": os.urandom(14).hex(), "log_level": log_level,
        "ip": host if host not in ("0.0.0.0", "*", "") else primary_ip(),
        "is_head": True,
    }


def node_config(address: str, ip: str, port: int, num_cpus: int, num_gpus: int,
                resources: dict | None, object_store_memory: int | None,
                log_level: int) -> dict:
    """The configuration of a ``zactor worker`` node agent (zactor.node.daemon.run_node)."""
    session, session_dir, shm_dir = _new_session_dirs("node-")
    with open(os.path.join(session_dir, "spill_dir")) as f:
        spill_dir = f.read()
    return {
        "session": session, "session_dir": session_dir, "address": address, "ip": ip,
        "port": port, "shm_dir": shm_dir, "spill_dir": spill_dir, "num_cpus": num_cpus,
        "num_gpus": num_gpus, "resources": resources or {},
        "object_store_memory": object_store_memory, "node_id": os.urandom(14).hex(),
        "log_level": log_level, "is_head": False,
    }


def local_ip_towards(address: str) -> str:
    """The address of this machine's interface that reaches ``tcp://HOST:PORT`` (a UDP
    socket's connect picks the route; nothing is sent)."""
    import socket

    host, port = address[len("tcp://"):].rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, int(port)))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def primary_ip() -> str:
    """This machine's address as others would reach it, for a head listening on every
    interface (0.0.0.0): the address of the interface with the default route."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: picks the route, sends nothing
            return s.getsockname()[0]
        except OSError:
            pass
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
