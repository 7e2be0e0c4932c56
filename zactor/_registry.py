"""What this user started on this machine: cluster heads and node agents, by their records.

Each ``zactor head`` and ``zactor worker`` writes ``<pid>.json`` under
``/tmp/zactor-<uid>/registry/heads/`` or ``.../nodes/`` (mode 0700, this user's): its pid and
process
start time, its address, its state directory. ``address="auto"`` picks the newest live head;
``zactor stop`` stops exactly the processes these records name — a pid whose start time
differs is another process that reused the number, and is left alone. Nothing is ever found
or killed by its name.
"""

from __future__ import annotations

import json
import os
import signal
import time

import psutil

from zactor import config
from zactor._session import find_local_head, socket_root
from zactor.comm import security

REGISTRY = "registry"  # beside the session directories, and never taken for one
HEADS = "heads"
NODES = "nodes"
LOGS = "logs"


def _dir(kind: str) -> str:
    path = os.path.join(socket_root(), REGISTRY, kind)
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def log_dir() -> str:
    """Where ``zactor worker --daemon`` writes its output."""
    return _dir(LOGS)


def register(kind: str, record: dict) -> str:
    """Record this process as a ``kind`` (HEADS or NODES); returns the record's path."""
    pid = os.getpid()
    record = {**record, "pid": pid, "create_time": psutil.Process(pid).create_time(),
              "started": time.time()}
    path = os.path.join(_dir(kind), f"{pid}.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)
    return path


def unregister(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def record_of(kind: str, pid: int) -> dict | None:
    """The record process ``pid`` left as a ``kind``, if any (whether it still runs or not)."""
    path = os.path.join(_dir(kind), f"{pid}.json")
    try:
        with open(path) as f:
            return {**json.load(f), "record": path}
    except (OSError, ValueError):
        return None


def clean_up(record: dict) -> None:
    """What a recorded process could not remove itself, being killed: its session and
    shared-memory directories, and its record."""
    from zactor._process import remove_tree

    for key in ("session_dir", "shm_dir"):
        if record.get(key):
            remove_tree(record[key])
    unregister(record["record"])


def _process_of(record: dict) -> psutil.Process | None:
    try:
        proc = psutil.Process(int(record["pid"]))
        if abs(proc.create_time() - float(record["create_time"])) > 1.0:
            return None  # the pid was reused by another process
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.Error, KeyError, ValueError, TypeError):
        return None


def live(kind: str) -> list[dict]:
    """Records of ``kind`` whose process runs, oldest first; stale records are removed."""
    out = []
    folder = _dir(kind)
    for name in os.listdir(folder):
        if not name.endswith(".json"):
            continue
        path = os.path.join(folder, name)
        try:
            with open(path) as f:
                record = json.load(f)
        except (OSError, ValueError):
            continue
        if _process_of(record) is None:
            unregister(path)
            continue
        record["record"] = path
        out.append(record)
    out.sort(key=lambda r: r.get("started", 0))
    return out


def resolve(address: str | None) -> tuple[str, security.Credentials | None]:
    """The address to connect to and the credential to connect with, for ``address``
    (None: ``ZACTOR_ADDRESS``, else "auto": this user's newest cluster on this machine)."""
    address = address or os.environ.get("ZACTOR_ADDRESS") or "auto"
    if address == "auto":
        heads = live(HEADS)
        embedded = None
        try:
            embedded = find_local_head()
        except ConnectionError:
            if not heads:
                raise
        if heads and (embedded is None or heads[-1]["started"] >= _mtime(embedded)):
            return heads[-1]["ipc"], None  # on the head's machine: its local socket
        return embedded, None
    if address.startswith("ipc://"):
        return address, None
    if not address.startswith("tcp://"):
        address = "tcp://" + address  # Ray's "HOST:PORT"
    fallback = None
    for head in live(HEADS):
        if head.get("address") == address:
            if head.get("insecure"):
                return address, security.INSECURE
            fallback = head.get("key_file")
    creds = security.from_environment(fallback)
    return address, creds


def _mtime(ipc_address: str) -> float:
    try:
        return os.stat(ipc_address[len("ipc://"):]).st_mtime
    except OSError:
        return 0.0


def stop_all(timeout: float = config.SHUTDOWN_TIMEOUT_S, force: bool = False) -> list[str]:
    """Stop every head and node agent this user started on this machine: SIGTERM (SIGKILL
    with ``force``, or for those still alive after ``timeout``). Returns what was stopped."""
    stopped = []
    procs = []
    for kind in (NODES, HEADS):
        for record in live(kind):
            proc = _process_of(record)
            if proc is None:
                continue
            what = f"{'head' if kind == HEADS else 'node'} pid {proc.pid} " \
                   f"({record.get('address', '')})"
            try:
                proc.send_signal(signal.SIGKILL if force else signal.SIGTERM)
            except psutil.Error:
                continue
            procs.append((proc, record))
            stopped.append(what)
    deadline = time.monotonic() + timeout
    for proc, record in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        except psutil.Error:
            pass
        clean_up(record)  # (a process that stopped cleanly removed them already)
    return stopped
