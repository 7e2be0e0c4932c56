"""The node agent of a machine: its resources, its warm workers, their deaths, its objects.

    head event loop ──spawn/kill──► NodeAgent ──pipe──► zygote ──fork──► workers
          ▲                            │ ◄──pipe── "started PID" / "exit PID CODE SIG"
          └──── worker_exited ─────────┘   owns /dev/shm/zactor-<session>/

In the embedded local cluster the agent runs inside the head process (one process fewer to
start and to keep in memory): the head polls the zygote's event pipe in its own loop. The
zygote is forked before the head starts ZeroMQ, so it is single-threaded and may fork safely.
A worker's death is known the moment the zygote reaps it — no polling, no timeout — with its
exit code or signal.
"""

from __future__ import annotations

import logging
import os

from zactor import _process, config
from zactor._process import remove_tree
from zactor._session import host_id
from zactor.node.logs import LogDir
from zactor.node.store import ObjectStore
from zactor.node.zygote import ZygoteHandle, start_zygote
from zactor.runtime_env import _setup

log = logging.getLogger(__name__)


def total_memory() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def store_capacity(cfg: dict) -> int:
    """``object_store_memory`` if given, else Ray's default share of the machine's memory;
    never more than the shared-memory file system can hold (Ray warns of the same)."""
    wanted = cfg.get("object_store_memory") or int(total_memory() * config.OBJECT_STORE_FRACTION)
    st = os.statvfs(cfg["shm_dir"])
    room = int(st.f_bavail * st.f_frsize * 0.9)
    if wanted > room:
        log.warning("object_store_memory of %d MiB does not fit in %s (%d MiB free): using "
                    "%d MiB", wanted >> 20, config.SHM_ROOT, room / 0.9 / 2**20, room >> 20)
        return room
    return int(wanted)


def node_resources(cfg: dict) -> dict[str, float]:
    res: dict[str, float] = {"CPU": float(cfg["num_cpus"])}
    if cfg.get("num_gpus"):
        res["GPU"] = float(cfg["num_gpus"])
    mem = total_memory()
    res["memory"] = float(int(mem * 0.7))
    res["object_store_memory"] = float(store_capacity(cfg))
    res["node:" + cfg.get("ip", "127.0.0.1")] = 1.0
    if cfg.get("is_head", True):
        res["node:__internal_head__"] = 1.0
    for k, v in (cfg.get("resources") or {}).items():
        res[k] = float(v)
    return res


def logs_dir_of(cfg: dict) -> str:
    """The node's log directory: ``logs/`` in its session directory (the directory of the
    head's socket, for an embedded cluster's head)."""
    if cfg.get("logs_dir"):
        return cfg["logs_dir"]
    session_dir = cfg.get("session_dir")
    if not session_dir and cfg["address"].startswith("ipc://"):
        session_dir = os.path.dirname(cfg["address"][len("ipc://"):])
    return os.path.join(session_dir or cfg["shm_dir"], "logs")


def answer_logs(logs: LogDir, op: str, args) -> tuple[bool, object]:
    """(ok, value) of a log request, as a REPLY carries it: a bad request or a missing file
    is a ValueError for the client, never an exception out of the caller's loop."""
    try:
        return True, logs.handle(op, args)
    except (ValueError, TypeError) as exc:
        return False, ["ValueError", str(exc)]
    except OSError as exc:
        return False, ["ValueError", f"reading the node's logs failed: {exc}"]


class NodeAgent:
    """This machine's agent. Create it before any ZeroMQ context exists in the process."""

    def __init__(self, cfg: dict) -> None:
        self.node_id = bytes.fromhex(cfg["node_id"])
        self.shm_dir = cfg["shm_dir"]
        self.resources = node_resources(cfg)
        self.total_memory = total_memory()
        # The workers' log files (zactor.node.logs): in the session directory, so they go
        # with the node (the head's machine: with the cluster) and are never another's.
        self.logs = LogDir(logs_dir_of(cfg))
        # Workers reach the head as the agent does: over ipc on the head's machine, over
        # TCP with the cluster key elsewhere.
        worker_cfg = {"address": cfg.get("worker_address") or cfg["address"],
                      "node_id": cfg["node_id"], "shm_dir": cfg["shm_dir"],
                      "log_level": cfg.get("log_level", 30), "key": cfg.get("key"),
                      "node_ip": cfg.get("ip", "127.0.0.1"),
                      "runtime_dir": _setup.root_dir(), "logs_dir": self.logs.path,
                      "log_max_bytes": config.WORKER_LOG_MAX_BYTES}
        self.zygote: ZygoteHandle = start_zygote(worker_cfg)
        # After the zygote's fork: workers must not inherit the store's descriptor, whose
        # locks are the store's own.
        self.store = ObjectStore(self.shm_dir, int(self.resources["object_store_memory"]),
                                 cfg["spill_dir"])
        self.workers: set[int] = set()
        self.info = {"shm_dir": self.shm_dir, "ip": cfg.get("ip", "127.0.0.1"),
                     "hostname": os.uname().nodename, "zygote_pid": self.zygote.pid,
                     "host_id": host_id(), "arena": [self.store.arena_path,
                                                     self.store.capacity],
                     "total_memory": self.total_memory}

    @property
    def events_fd(self) -> int:
        """Readable when the zygote reports a started or exited worker (or died)."""
        return self.zygote.evt_r

    def spawn(self, count: int, env_key: str | None = None, env: dict | None = None) -> None:
        self.zygote.spawn(count, env_key, env)

    def read_logs(self, op: str, args, respond) -> None:
        """A log request (zactor.node.logs), answered at once with ``respond(ok, value)``:
        the files are on this machine."""
        respond(*answer_logs(self.logs, op, args))

    def kill(self, pid: int, sig: int) -> None:
        if pid in self.workers:
            _process.kill(pid, sig)

    @staticmethod
    def available_memory() -> float:
        """Bytes of memory the kernel says can be used without swapping (MemAvailable)."""
        try:
            with open("/proc/meminfo", "rb") as f:
                for line in f:
                    if line.startswith(b"MemAvailable:"):
                        return float(int(line.split()[1]) * 1024)
        except OSError:
            pass
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))

    @staticmethod
    def load() -> float:
        """The machine's 1-minute load average (runnable processes), for zactor status and
        the dashboard."""
        try:
            return os.getloadavg()[0]
        except OSError:
            return 0.0

    def exits(self) -> list[tuple[int, int, int, str | None]] | None:
        """Workers that exited since the last call, as (pid, exit code, signal, runtime
        environment key); None if the zygote itself is gone (and with it every worker)."""
        events = self.zygote.read_events()
        if events is None:
            return None
        out = []
        for ev in events:
            if ev[0] == "started":
                self.workers.add(int(ev[1]))
            elif ev[0] == "exit":
                pid = int(ev[1])
                self.workers.discard(pid)
                out.append((pid, int(ev[2]), int(ev[3]), None if ev[4] == "-" else ev[4]))
        return out

    def shutdown(self) -> None:
        """Kill every worker, stop the zygote, remove the node's object files."""
        for pid in self.workers:
            _process.kill(pid)
        self.zygote.quit()  # it SIGKILLs and reaps every worker it forked, then exits
        try:
            os.waitpid(self.zygote.pid, 0)
        except ChildProcessError:
            pass
        self.store.close()
        remove_tree(self.shm_dir)
