#!/usr/bin/env python3
"""Multi-node benchmarks: zactor (encrypted and ``insecure``) against a plain TCP copy and Ray.

Every cluster runs on this machine: zactor's ``zactor.testing.Cluster`` (a head and node
agents of their own, talking TCP on loopback) and Ray's ``ray.cluster_utils.Cluster`` (a GCS
and one raylet per node), started by the interpreter of each (Ray only under
``--ray-python``; it is never imported here). Each job (one cluster, one or a few rows) runs
in a child process with a hard timeout; the child writes its results as it goes, so a job
killed at its deadline still reports what it had measured.

Usage::

    python benchmarks/cluster_bench.py --ray-python .venv-ray/bin/python
    python benchmarks/cluster_bench.py --quick               # fewer repetitions
    python benchmarks/cluster_bench.py --only transfer,death # job groups: plain, transfer, restart,
                                                             # death, throughput

It is a report, not a test: the exit status is 0 even when a target is missed or a job
fails (its cells show ``error: ...``).  Results also go to ``bench-results/cluster-latest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from microbench import (  # noqa: E402 - the sibling module, standard library only
    RowTimeout,
    _deadline,
    _ray_available,
    _timed_loop,
    ensure_importable,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench-results"
LATEST = "cluster-latest.json"
COLUMNS = ("zactor", "zactor_insecure", "plain", "ray")
COLUMN_TITLES = {"zactor": "zactor", "zactor_insecure": "zactor insecure", "plain": "plain",
                 "ray": "ray"}

# name -> (unit, kind); kind is "rate" (higher is better) or "cost" (lower is better).
ROWS: dict[str, tuple[str, str]] = {
    "transfer_1gb_gb_per_s": ("GB/s", "rate"),
    "transfer_1gb_median_gb_per_s": ("GB/s", "rate"),
    "transfer_1gb_to_head_gb_per_s": ("GB/s", "rate"),
    "node_death_detect_s": ("s", "cost"),
    "node_death_detect_worst_s": ("s", "cost"),
    "node_death_replay_s": ("s", "cost"),
    "node_death_replay_worst_s": ("s", "cost"),
    "head_restart_s": ("s", "cost"),
    "head_restart_worst_s": ("s", "cost"),
}
for _link in ("tcp", "ipc"):
    for _what in ("tasks_sync", "tasks_async", "actor_calls_sync", "actor_calls_async"):
        ROWS[f"{_what}_per_s_{_link}"] = ("1/s", "rate")

TASK_SECONDS = 2.0  # the body of the task that is running when its node is killed


@dataclass
class Config:
    quick: bool
    transfer_bytes: int = 1 << 30
    transfer_reps: int = 3
    transfer_warmups: int = 1  # full-size transfers before the timed ones (untimed)
    store_bytes: int = 4 << 30  # object store of every node, both backends
    death_reps: int = 10
    ray_death_reps: int = 3  # Ray takes 15-30 s per node death under its defaults
    loop_s: float = 2.0
    reps: int = 3
    warmup_s: float = 0.3
    batch_n: int = 1000
    transfer_rep_timeout_s: int = 60  # one produce, or one consume
    death_rep_timeout_s: int = 30  # from the kill to the replayed result
    ray_death_rep_timeout_s: int = 120
    restart_reps: int = 5  # head SIGKILL and restart

    # Soft deadlines of the rows (SIGALRM in the job); each job's hard timeout is the sum
    # of its rows' and a margin for starting and stopping its cluster.
    def transfer_row_s(self) -> int:
        return 60 + 45 * (self.transfer_warmups + self.transfer_reps)

    def death_row_s(self, ray: bool) -> int:
        if ray:
            return 30 + self.ray_death_reps * (self.ray_death_rep_timeout_s + 40)
        return 30 + self.death_reps * (self.death_rep_timeout_s + 20)

    def throughput_row_s(self) -> int:
        return 30 + int(self.reps * (self.loop_s + 10))

    @classmethod
    def make(cls, quick: bool) -> Config:
        if not quick:
            return cls(quick=False)
        # 1 GB stays 1 GB: the size is the point of the row. Fewer repetitions, no warm-up.
        return cls(quick=True, transfer_reps=2, transfer_warmups=0, death_reps=3, restart_reps=2,
                   ray_death_reps=3, loop_s=0.5, reps=2, warmup_s=0.1)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- remote bodies
# Module-level, so that both backends ship them by value (cloudpickle pickles __main__).


def _produce(nbytes: int, seed: int, size_only: bool = False):
    """A fresh object of random bytes (nothing on the way can compress them): the worker
    makes its random array once and stamps each copy it returns with the seed, so that making
    one costs the same everywhere (the copy into the store) and its time is not noise."""
    import numpy as np

    cache = sys.modules.get("_cluster_bench_cache")
    if cache is None:
        cache = sys.modules["_cluster_bench_cache"] = type(sys)("_cluster_bench_cache")
    bases = cache.__dict__.setdefault("bases", {})  # by size: the warm-ups are small too
    base = bases.get(nbytes)
    if base is None:
        base = bases[nbytes] = np.random.default_rng(12345).integers(0, 256, nbytes,
                                                                     dtype=np.uint8)
    if size_only:  # a warm-up: the array made, nothing to store
        return base.nbytes
    base[:8] = np.frombuffer(int(seed).to_bytes(8, "little"), dtype=np.uint8)
    return base


def _consume(arr) -> tuple[int, int]:
    return int(arr[::4096].sum()), int(arr.nbytes)  # touches every page


def _noop():
    return None


class _Pinger:
    def ping(self):
        return None


def _node_id_of(backend: str) -> str:
    return importlib.import_module(backend).get_runtime_context().get_node_id()


def _mark_then_sleep(path: str, seconds: float, backend: str) -> str:
    node = _node_id_of(backend)
    with open(path + ".tmp", "w") as f:
        f.write(f"{node} {os.getpid()}")
    os.rename(path + ".tmp", path)
    time.sleep(seconds)
    return node


def _where(backend: str) -> str:
    return _node_id_of(backend)


# --------------------------------------------------------------------------- /proc helpers

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(path: str) -> tuple[str, list[str]] | None:
    try:
        with open(path) as f:
            raw = f.read()
    except OSError:
        return None
    lpar, rpar = raw.find("("), raw.rfind(")")
    return raw[lpar + 1 : rpar], raw[rpar + 2 :].split()


def _proc_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, comm, state) of every process."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat_fields(f"/proc/{name}/stat")
            if st is not None:
                out[int(name)] = (int(st[1][1]), st[0], st[1][0])
    return out


def _descendants(root: int, table: dict | None = None) -> list[int]:
    table = _proc_table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), ()):
            out.append(c)
            todo.append(c)
    return out


def _cpu_by_thread(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of every thread under each labelled root process, summed by
    ``label/process name/thread name`` (zactor names its processes; ZeroMQ names its I/O
    threads ZMQbg/IO/n)."""
    table = _proc_table()
    out: dict[str, float] = {}
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/stat") as f:
            j = [int(x) for x in f.readline().split()[1:9]]
        out["machine/busy"] = (sum(j) - j[3] - j[4]) / _CLK_TCK  # all but idle and iowait
    for label, root in roots.items():
        for pid in [root, *_descendants(root, table)]:
            pname = table.get(pid, (0, "?", ""))[1]
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                st = _stat_fields(f"/proc/{pid}/task/{tid}/stat")
                if st is None:
                    continue
                tname, f = st
                cpu = (int(f[11]) + int(f[12])) / _CLK_TCK
                key = f"{label}/{pname}/{tname}"
                out[key] = out.get(key, 0.0) + cpu
    return out


def _cpu_delta(before: dict[str, float], after: dict[str, float], wall: float) -> dict:
    """Share of one core used by each thread group between two snapshots (≥ 2% only)."""
    out = {}
    for key, v in after.items():
        d = v - before.get(key, 0.0)
        if wall > 0 and d / wall >= 0.02:
            out[key] = round(d / wall, 2)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


# --------------------------------------------------------------------------- job results


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


class JobResult:
    """What a job child measured, written to ``path`` after every step (atomically)."""

    def __init__(self, path: str, job: str, column: str) -> None:
        self.path = path
        self.data: dict[str, Any] = {"job": job, "column": column, "results": {},
                                     "errors": {}, "details": {}, "notes": [],
                                     "backend_version": None,
                                     "loadavg_start": _loadavg(), "loadavg_end": None}
        self.save()

    def save(self) -> None:
        self.data["loadavg_end"] = _loadavg()
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1, sort_keys=True, default=str)
        os.replace(tmp, self.path)

    def note(self, text: str) -> None:
        self.data["notes"].append(text)
        self.save()

    def progress(self, key: str, info: dict) -> None:
        """Partial details of a row being measured (kept if the job is killed)."""
        self.data["details"][key] = info
        self.save()

    def measure(self, rows: list[str], timeout_s: int,
                fn: Callable[[], tuple[dict[str, float], dict[str, Any]]]) -> None:
        t0 = time.perf_counter()
        try:
            with _deadline(timeout_s):
                values, info = fn()
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            msg = f"{type(e).__name__}: {e}".strip()[:300]
            for r in rows:
                self.data["errors"][r] = msg
            old = self.data["details"].get(rows[0], {})
            self.data["details"][rows[0]] = {**old, "traceback": traceback.format_exc()[-2000:]}
            self.save()
            _log(f"[{self.data['job']}] {rows[0]:<34} error: {msg}")
            return
        self.data["results"].update(values)
        self.data["details"][rows[0]] = info
        self.save()
        took = time.perf_counter() - t0
        for r, v in values.items():
            _log(f"[{self.data['job']}] {r:<34} {fmt(r, v):>14}   ({took:.1f} s)")


# --------------------------------------------------------------------------- row bodies


def _transfer(api, res: JobResult, cfg: Config, ids: Callable[[], tuple[str, str, str | None]],
              dead: Callable[[], list[str]] | None, heal: Callable[[], None] | None,
              cpu_roots: Callable[[], dict[str, int]] | None) -> None:
    """Row 1: a task on node A makes a fresh array, a task on node B reads it; the time from
    submitting the reader to its result, with the maker finished first (``wait``).

    ``ids()`` gives node A, node B and, for zactor, the head node. For zactor the driver
    (on the head node) then ``get``s the array too: its node pulls it in the head's own
    event loop, ``transfer_1gb_to_head_gb_per_s`` (best of the repetitions).

    ``dead()`` names the nodes the head has declared dead (a repetition during which one
    died does not count); ``heal()`` replaces them."""
    from_module = importlib.import_module(api.__name__ + ".util.scheduling_strategies")
    affinity = from_module.NodeAffinitySchedulingStrategy
    n = cfg.transfer_bytes
    row, median_row, head_row = ("transfer_1gb_gb_per_s", "transfer_1gb_median_gb_per_s",
                                 "transfer_1gb_to_head_gb_per_s")
    timeout = cfg.transfer_rep_timeout_s

    def body():
        info: dict[str, Any] = {"bytes": n, "samples": [], "seconds": [], "failures": [],
                                "warmups": cfg.transfer_warmups, "cpu_share": [],
                                "wait_on_a_s": [], "get_on_head_s": []}

        def tasks():
            src, dst, head = ids()

            def on(node):
                return api.remote(_produce).options(
                    scheduling_strategy=affinity(node, soft=False), max_retries=0)

            consume = api.remote(_consume).options(
                scheduling_strategy=affinity(dst, soft=False), max_retries=0)
            return on(src), consume, head

        def made(produce, seed) -> tuple[Any, float]:
            t0 = time.perf_counter()
            ref = produce.remote(n, seed)
            ready, _ = api.wait([ref], timeout=timeout, fetch_local=False)
            if not ready:
                raise TimeoutError(f"the producer took over {timeout} s")
            return ref, time.perf_counter() - t0

        produce, consume, head = tasks()
        # Workers up on every node, their random source arrays made, the nodes connected,
        # before anything is timed.
        api.get(produce.remote(n, 0, True), timeout=timeout)
        small = api.get(consume.remote(produce.remote(1 << 20, 0)), timeout=timeout)
        assert small[1] == 1 << 20, small
        seed = 0
        good = 0
        while good < cfg.transfer_warmups + cfg.transfer_reps:
            if len(info["failures"]) >= 3:
                raise RuntimeError("3 repetitions failed: " + " | ".join(info["failures"]))
            seed += 1
            try:
                get_head = None
                ref, wait_a = made(produce, seed)
                roots = cpu_roots() if cpu_roots else None
                cpu0 = _cpu_by_thread(roots) if roots else None
                t0 = time.perf_counter()
                out = api.get(consume.remote(ref), timeout=timeout)
                dt = time.perf_counter() - t0
                if roots:
                    info["cpu_share"].append(_cpu_delta(cpu0, _cpu_by_thread(roots), dt))
                if head is not None:  # zactor: the driver's own node pulls it too
                    t1 = time.perf_counter()
                    value = api.get(ref, timeout=timeout)
                    get_head = time.perf_counter() - t1
                    del value
                del ref
                if out[1] != n:
                    raise AssertionError(f"the consumer saw {out[1]} bytes, not {n}")
                gone = dead() if dead else []
                if gone:
                    raise RuntimeError(f"the head declared node(s) {', '.join(gone)} dead "
                                       "during the repetition")
            except RowTimeout:
                raise
            except Exception as e:
                msg = f"rep {seed}: {type(e).__name__}: {str(e)[:200]}"
                info["failures"].append(msg)
                _log(f"[{res.data['job']}] {row}: {msg}")
                res.progress(row, info)
                if heal is None:
                    raise
                heal()
                produce, consume, head = tasks()
                continue
            good += 1
            kind = "warm-up" if good <= cfg.transfer_warmups else "rep"
            if good > cfg.transfer_warmups:
                info["samples"].append(n / dt / 1e9)
                info["seconds"].append(dt)
                info["wait_on_a_s"].append(wait_a)
                if get_head is not None:
                    info["get_on_head_s"].append(get_head)
            _log(f"[{res.data['job']}] {row}: {kind} {dt:.3f} s = {n / dt / 1e9:.2f} GB/s "
                 f"(wait for the maker on A {wait_a:.2f} s"
                 + (f"; get on the head {get_head:.2f} s)" if get_head is not None else ")"))
            res.progress(row, info)
        values = {row: max(info["samples"]), median_row: statistics.median(info["samples"])}
        if info["get_on_head_s"]:
            values[head_row] = n / min(info["get_on_head_s"]) / 1e9
        return values, info

    res.measure([row, median_row, head_row] if cpu_roots else [row, median_row],
                cfg.transfer_row_s(), body)


def _node_death(api, res: JobResult, cfg: Config, reps: int, rep_timeout_s: int,
                add_victim: Callable[[], Any], victim_id: Callable[[Any], str],
                kill: Callable[[Any], None], cleanup: Callable[[Any], None]) -> None:
    """Row 2: a task (max_retries=3, soft affinity) runs on a node that is SIGKILLed; the time
    until nodes() says the node is dead, and until the task's result (replayed elsewhere)."""
    affinity = importlib.import_module(
        api.__name__ + ".util.scheduling_strategies").NodeAffinitySchedulingStrategy
    backend = api.__name__
    rows = ["node_death_detect_s", "node_death_detect_worst_s", "node_death_replay_s",
            "node_death_replay_worst_s"]

    def body():
        info: dict[str, Any] = {"reps": reps, "task_seconds": TASK_SECONDS, "detect": [],
                                "replay": [], "kill_call_s": [], "failures": [],
                                "replayed_on_victim": 0}
        with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
            for i in range(reps):
                t_rep = time.monotonic()
                victim = add_victim()
                vid = victim_id(victim)
                try:
                    api.get(api.remote(_where).options(
                        scheduling_strategy=affinity(vid, soft=False)).remote(backend),
                        timeout=60)  # a worker is up there and the scheduler knows the node
                    path = os.path.join(tmp, f"mark{i}")
                    ref = api.remote(_mark_then_sleep).options(
                        max_retries=3, scheduling_strategy=affinity(vid, soft=True)
                    ).remote(path, TASK_SECONDS, backend)
                    deadline = time.monotonic() + 60
                    while not os.path.exists(path):
                        if time.monotonic() > deadline:
                            raise TimeoutError("the task did not start within 60 s")
                        time.sleep(0.002)
                    with open(path) as f:
                        ran_on = f.read().split()[0]
                    if ran_on != vid:
                        raise RuntimeError(f"the task started on {ran_on[:12]}, not on the "
                                           f"node to kill ({vid[:12]})")
                except Exception as e:
                    info["failures"].append(f"rep {i}: {type(e).__name__}: {str(e)[:200]}")
                    cleanup(victim)
                    continue
                t0 = time.perf_counter()
                kill(victim)
                info["kill_call_s"].append(time.perf_counter() - t0)
                detect = replay = None
                result = None
                deadline = t0 + rep_timeout_s
                while detect is None or replay is None:
                    now = time.perf_counter()
                    if now > deadline:
                        break
                    if detect is None:
                        for node in api.nodes():
                            if node["NodeID"] == vid and not node["Alive"]:
                                detect = time.perf_counter() - t0
                    if replay is None:
                        ready, _ = api.wait([ref], timeout=0, fetch_local=False)
                        if ready:
                            replay = time.perf_counter() - t0
                            try:
                                result = api.get(ref, timeout=10)
                            except Exception as e:
                                result = e
                    time.sleep(0.02)
                cleanup(victim)
                if detect is None or replay is None:
                    info["failures"].append(
                        f"rep {i}: after {rep_timeout_s} s: "
                        + ("not declared dead" if detect is None else f"dead at {detect:.2f} s")
                        + (", no result" if replay is None else f", result at {replay:.2f} s"))
                elif isinstance(result, Exception):
                    info["failures"].append(f"rep {i}: the task failed: "
                                            f"{type(result).__name__}: {str(result)[:200]}")
                else:
                    info["detect"].append(detect)
                    info["replay"].append(replay)
                    if result == vid:
                        info["replayed_on_victim"] += 1
                    _log(f"[{res.data['job']}] node death {i + 1}/{reps}: declared dead after "
                         f"{detect:.2f} s, result after {replay:.2f} s "
                         f"(rep took {time.monotonic() - t_rep:.1f} s)")
                res.progress("node_death_detect_s", info)
        if not info["detect"]:
            raise RuntimeError("no repetition succeeded: " + " | ".join(info["failures"])[:250])
        return {
            "node_death_detect_s": statistics.median(info["detect"]),
            "node_death_detect_worst_s": max(info["detect"]),
            "node_death_replay_s": statistics.median(info["replay"]),
            "node_death_replay_worst_s": max(info["replay"]),
        }, info

    res.measure(rows, cfg.death_row_s(api.__name__ == "ray"), body)


def _throughput(api, res: JobResult, cfg: Config, link: str) -> None:
    """Row 3: no-op tasks and actor calls, synchronous (a loop of get(f.remote())) and in a
    batch (submit batch_n, then get them all)."""
    f = api.remote(_noop)
    actor = api.remote(_Pinger).remote()
    api.get(actor.ping.remote(), timeout=60)

    def loop(call):
        def body():
            _timed_loop(call, cfg.warmup_s)
            samples = [_timed_loop(call, cfg.loop_s) for _ in range(cfg.reps)]
            return samples

        return body

    def batch(submit):
        def body():
            def once(k):
                t0 = time.perf_counter()
                api.get([submit() for _ in range(k)], timeout=120)
                return k / (time.perf_counter() - t0)

            once(max(10, cfg.batch_n // 10))
            return [once(cfg.batch_n) for _ in range(cfg.reps)]

        return body

    get = api.get
    for what, body in (
        ("tasks_sync", loop(lambda: get(f.remote(), timeout=30))),
        ("tasks_async", batch(f.remote)),
        ("actor_calls_sync", loop(lambda: get(actor.ping.remote(), timeout=30))),
        ("actor_calls_async", batch(actor.ping.remote)),
    ):
        row = f"{what}_per_s_{link}"

        def run(body=body, row=row):
            samples = body()
            return {row: statistics.median(samples)}, {"samples": samples,
                                                      "batch_n": cfg.batch_n}

        res.measure([row], cfg.throughput_row_s(), run)


# --------------------------------------------------------------------------- jobs (children)


def _zactor_cluster(insecure: bool, head_cpus: int, store: int | None):
    from zactor.testing import Cluster

    head = {"num_cpus": head_cpus}
    if store:
        head["object_store_memory"] = store
    return Cluster(initialize_head=True, head_node_args=head, insecure=insecure)


def job_plain_transfer(cfg: Config, res: JobResult) -> None:
    """The limit: 1 GB over a loopback TCP socket, sendall in 4 MiB chunks from a preallocated
    buffer in one process into recv_into a preallocated buffer in another."""
    import multiprocessing

    import numpy as np

    n, chunk = cfg.transfer_bytes, 4 << 20
    res.data["backend_version"] = f"python {platform.python_version()} socket"
    lsock = socket.create_server(("127.0.0.1", 0))
    port = lsock.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    server = ctx.Process(target=_plain_server, args=(lsock, n, chunk), daemon=True)
    server.start()
    lsock.close()
    try:
        def body():
            buf = bytearray(n)
            np.frombuffer(buf, dtype=np.uint8)[:] = 1  # fault the pages in: preallocated
            view = memoryview(buf)
            info: dict[str, Any] = {"bytes": n, "chunk": chunk, "samples": [], "seconds": []}
            with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
                for i in range(cfg.transfer_warmups + cfg.transfer_reps):
                    t0 = time.perf_counter()
                    s.sendall(b"g")
                    got = 0
                    while got < n:
                        k = s.recv_into(view[got:], min(chunk, n - got))
                        if k == 0:
                            raise ConnectionError("the server closed the connection")
                        got += k
                    dt = time.perf_counter() - t0
                    if i >= cfg.transfer_warmups:
                        info["samples"].append(n / dt / 1e9)
                        info["seconds"].append(dt)
                    res.progress("transfer_1gb_gb_per_s", info)
            return {"transfer_1gb_gb_per_s": max(info["samples"]),
                    "transfer_1gb_median_gb_per_s": statistics.median(info["samples"])}, info

        res.measure(["transfer_1gb_gb_per_s", "transfer_1gb_median_gb_per_s"], 120, body)
    finally:
        server.terminate()
        server.join(10)


def _plain_server(lsock: socket.socket, n: int, chunk: int) -> None:
    import numpy as np

    data = memoryview(np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).data)
    conn, _ = lsock.accept()
    with conn:
        while conn.recv(1):
            for off in range(0, n, chunk):
                conn.sendall(data[off : off + chunk])


def _zactor_transfer(cfg: Config, res: JobResult, insecure: bool) -> None:
    import zactor

    res.data["backend_version"] = zactor.__version__
    cluster = _zactor_cluster(insecure, 1, cfg.store_bytes)
    try:
        nodes = {}

        def add(label):
            nodes[label] = cluster.add_node(num_cpus=1, resources={f"node_{label}": 1},
                                            object_store_memory=cfg.store_bytes)

        add("a")
        add("b")
        cluster.connect()
        head = cluster.head_node

        def dead():
            alive = {n["NodeID"] for n in zactor.nodes() if n["Alive"]}
            return [label for label in ("a", "b") if nodes[label].node_id not in alive]

        def heal():
            """Replace the nodes the head declared dead (a failed repetition)."""
            for label in dead():
                _log(f"[{res.data['job']}] node {label} is dead: adding another")
                res.note(f"{res.data['job']}: the head declared node {label} dead during a "
                         "transfer (its agent was alive); it was replaced")
                cluster.remove_node(nodes[label], allow_graceful=False)
                add(label)

        def roots():
            return {"head": head.process.pid, "node_a": nodes["a"].process.pid,
                    "node_b": nodes["b"].process.pid}

        _transfer(zactor, res, cfg,
                  lambda: (nodes["a"].node_id, nodes["b"].node_id, head.node_id), dead, heal,
                  roots)
        try:
            from zactor.testing import head_stats, store_stats

            time.sleep(0.5)  # reference releases are batched
            res.data["details"]["after"] = {"store_stats": store_stats(),
                                            "head_stats": head_stats()}
        except Exception as e:
            res.data["details"]["after"] = f"{type(e).__name__}: {e}"
        res.save()
    finally:
        with _deadline(60):
            cluster.shutdown()


def job_zactor_transfer(cfg: Config, res: JobResult) -> None:
    _zactor_transfer(cfg, res, insecure=False)


def job_zactor_transfer_insecure(cfg: Config, res: JobResult) -> None:
    _zactor_transfer(cfg, res, insecure=True)


def job_ray_transfer(cfg: Config, res: JobResult) -> None:
    import ray
    from ray.cluster_utils import Cluster

    res.data["backend_version"] = ray.__version__
    # cluster_utils gives each node 150 MiB of object store unless told otherwise: the same
    # store size as zactor's nodes.
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "object_store_memory": cfg.store_bytes})
    try:
        a = cluster.add_node(num_cpus=1, resources={"node_a": 1},
                             object_store_memory=cfg.store_bytes)
        b = cluster.add_node(num_cpus=1, resources={"node_b": 1},
                             object_store_memory=cfg.store_bytes)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        _transfer(ray, res, cfg, lambda: (a.node_id, b.node_id, None), None, None, None)
    finally:
        with _deadline(120):
            ray.shutdown()
            cluster.shutdown()


def job_zactor_death(cfg: Config, res: JobResult) -> None:
    import zactor

    res.data["backend_version"] = zactor.__version__
    cluster = _zactor_cluster(False, 1, None)
    try:
        cluster.connect()

        def cleanup(node):
            if node in cluster.worker_nodes:
                with contextlib.suppress(Exception):
                    cluster.remove_node(node, allow_graceful=False)

        # remove_node(allow_graceful=False): SIGKILL to the agent's process group (the agent
        # and its workers at once).
        _node_death(zactor, res, cfg, cfg.death_reps, cfg.death_rep_timeout_s,
                    lambda: cluster.add_node(num_cpus=1), lambda n: n.node_id,
                    lambda n: cluster.remove_node(n, allow_graceful=False), cleanup)
    finally:
        with _deadline(60):
            cluster.shutdown()


class _Keeper:
    """A named actor on a worker node, reached after each head restart."""

    def __init__(self) -> None:
        self.calls = 0

    def incr(self) -> int:
        self.calls += 1
        return self.calls


def job_zactor_restart(cfg: Config, res: JobResult) -> None:
    """Head restart: SIGKILL the head, start it again on the same state directory, and time
    until the first call through the old handle of a named actor (on another node) returns.
    Ray has no counterpart without an external Redis (GCS fault tolerance)."""
    import zactor

    res.data["backend_version"] = zactor.__version__
    cluster = _zactor_cluster(False, 1, None)
    rows = ["head_restart_s", "head_restart_worst_s"]
    try:
        cluster.add_node(num_cpus=1, resources={"keeper": 1})
        cluster.connect()

        def body():
            keeper = zactor.remote(_Keeper).options(
                name="keeper", lifetime="detached", resources={"keeper": 1}).remote()
            calls = zactor.get(keeper.incr.remote(), timeout=60)
            info: dict[str, Any] = {"seconds": []}
            for _ in range(cfg.restart_reps):
                t0 = time.perf_counter()
                cluster.kill_head()
                cluster.restart_head()
                got = zactor.get(keeper.incr.remote(), timeout=60)
                info["seconds"].append(time.perf_counter() - t0)
                calls += 1
                if got != calls:
                    raise AssertionError(f"the actor's state was lost: {got} != {calls}")
                res.progress(rows[0], info)
            return ({rows[0]: statistics.median(info["seconds"]),
                     rows[1]: max(info["seconds"])}, info)

        res.measure(rows, 60 + cfg.restart_reps * 70, body)
    finally:
        with _deadline(60):
            cluster.shutdown()


def job_ray_death(cfg: Config, res: JobResult) -> None:
    import ray
    from ray.cluster_utils import Cluster

    res.data["backend_version"] = ray.__version__
    if cfg.ray_death_reps < cfg.death_reps:
        res.note(f"Ray: {cfg.ray_death_reps} node deaths, not {cfg.death_reps} (each takes "
                 "15-30 s under Ray's default health checks)")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        ray.init(address=cluster.address, log_to_driver=False)

        def add():
            node = cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            return node

        def cleanup(node):
            if node in cluster.worker_nodes:
                with contextlib.suppress(Exception):
                    cluster.remove_node(node, allow_graceful=False)

        # SIGKILL of the raylet (its workers exit when it is gone); the rest of the node's
        # processes are stopped afterwards, by cleanup.
        _node_death(ray, res, cfg, cfg.ray_death_reps, cfg.ray_death_rep_timeout_s,
                    add, lambda n: n.node_id, lambda n: n.kill_raylet(), cleanup)
    finally:
        with _deadline(120):
            ray.shutdown()
            cluster.shutdown()


def _zactor_throughput(cfg: Config, res: JobResult, insecure: bool, link: str) -> None:
    import zactor

    res.data["backend_version"] = zactor.__version__
    cluster = _zactor_cluster(insecure, 2, None)
    try:
        if link == "ipc":
            cluster.connect()  # on the head node, over ipc
        else:
            os.environ.pop("ZACTOR_CLUSTER_KEY", None)
            os.environ.pop("ZACTOR_CLUSTER_KEY_FILE", None)
            if insecure:
                os.environ["ZACTOR_CLUSTER_KEY"] = "insecure"
            else:
                os.environ["ZACTOR_CLUSTER_KEY_FILE"] = os.path.join(cluster._state_dir,
                                                                     "cluster.key")
            zactor.init(address="tcp://" + cluster.address)
        res.data["details"]["driver_address"] = ("ipc (cluster.connect())" if link == "ipc"
                                                 else "tcp://" + cluster.address)
        _throughput(zactor, res, cfg, link)
    finally:
        with _deadline(60):
            if zactor.is_initialized():
                zactor.shutdown()
            cluster.shutdown()


def job_zactor_throughput_tcp(cfg, res):
    _zactor_throughput(cfg, res, False, "tcp")


def job_zactor_throughput_tcp_insecure(cfg, res):
    _zactor_throughput(cfg, res, True, "tcp")


def job_zactor_throughput_ipc(cfg, res):
    _zactor_throughput(cfg, res, False, "ipc")


def job_zactor_throughput_ipc_insecure(cfg, res):
    _zactor_throughput(cfg, res, True, "ipc")


@dataclass
class Job:
    name: str
    group: str  # plain, transfer, death, restart, throughput (--only)
    column: str
    interpreter: str  # "zactor" (this one) or "ray" (--ray-python)
    rows: tuple
    timeout_s: Callable[[Config], int]


_TRANSFER_ROWS = ("transfer_1gb_gb_per_s", "transfer_1gb_median_gb_per_s")
_DEATH_ROWS = ("node_death_detect_s", "node_death_detect_worst_s", "node_death_replay_s",
               "node_death_replay_worst_s")


def _transfer_timeout(cfg: Config) -> int:
    return 90 + 2 * cfg.transfer_row_s()  # two rows: to node B, to the head node


def _throughput_timeout(cfg: Config) -> int:
    return 60 + 4 * cfg.throughput_row_s()


def _tp_rows(link: str) -> tuple:
    return tuple(f"{w}_per_s_{link}" for w in
                 ("tasks_sync", "tasks_async", "actor_calls_sync", "actor_calls_async"))


JOBS = [
    Job("plain_transfer", "plain", "plain", "zactor", _TRANSFER_ROWS, lambda c: 180),
    Job("zactor_transfer", "transfer", "zactor", "zactor",
        (*_TRANSFER_ROWS, "transfer_1gb_to_head_gb_per_s"), _transfer_timeout),
    Job("zactor_transfer_insecure", "transfer", "zactor_insecure", "zactor",
        (*_TRANSFER_ROWS, "transfer_1gb_to_head_gb_per_s"), _transfer_timeout),
    Job("ray_transfer", "transfer", "ray", "ray", _TRANSFER_ROWS,
        lambda c: 150 + c.transfer_row_s()),
    Job("zactor_death", "death", "zactor", "zactor", _DEATH_ROWS,
        lambda c: 60 + c.death_row_s(False)),
    Job("ray_death", "death", "ray", "ray", _DEATH_ROWS, lambda c: 150 + c.death_row_s(True)),
    Job("zactor_restart", "restart", "zactor", "zactor", ("head_restart_s",
                                                          "head_restart_worst_s"),
        lambda c: 120 + c.restart_reps * 70),
    Job("zactor_throughput_tcp", "throughput", "zactor", "zactor", _tp_rows("tcp"),
        _throughput_timeout),
    Job("zactor_throughput_tcp_insecure", "throughput", "zactor_insecure", "zactor",
        _tp_rows("tcp"), _throughput_timeout),
    Job("zactor_throughput_ipc", "throughput", "zactor", "zactor", _tp_rows("ipc"),
        _throughput_timeout),
    Job("zactor_throughput_ipc_insecure", "throughput", "zactor_insecure", "zactor",
        _tp_rows("ipc"), _throughput_timeout),
]
GROUPS = ("plain", "transfer", "death", "restart", "throughput")


def run_job_child(name: str, out: str, quick: bool) -> int:
    cfg = Config.make(quick)
    job = next(j for j in JOBS if j.name == name)
    res = JobResult(out, name, job.column)
    if job.interpreter == "zactor":
        ensure_importable("zactor")
    try:
        globals()["job_" + name](cfg, res)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        msg = f"{type(e).__name__}: {e}".strip()[:300]
        for r in job.rows:
            if r not in res.data["results"]:
                res.data["errors"].setdefault(r, msg)
        res.data["details"]["job_traceback"] = traceback.format_exc()[-3000:]
        res.save()
        _log(f"[{name}] failed: {msg}")
    return 0


# --------------------------------------------------------------------------- orchestration


def _set_subreaper() -> bool:
    """Become the reaper of our orphaned descendants (Linux), so that whatever a job leaves
    running (daemons of a killed cluster) stays findable below us and can be stopped."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0
    except Exception:
        return False


def _stop_descendants(grace_s: float) -> list[str]:
    """Stop every process below this one: first let them exit on their own for grace_s,
    then freeze (SIGSTOP, so none can start another) and SIGKILL what is left. Returns
    'pid comm' of those killed."""
    me = os.getpid()
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        table = _proc_table()
        if not [p for p in _descendants(me, table) if table[p][2] != "Z"]:
            break
        time.sleep(0.1)
    killed: list[str] = []
    frozen: set[int] = set()
    for _ in range(20):
        table = _proc_table()
        new = [p for p in _descendants(me, table) if p not in frozen and table[p][2] != "Z"]
        if not new:
            break
        for p in new:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGSTOP)
            frozen.add(p)
            killed.append(f"{p} {table[p][1]}")
    for p in frozen:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGKILL)
    end = time.monotonic() + 10
    while time.monotonic() < end:  # reap those that were (or became) our children
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        table = _proc_table()
        if not any(p in table and table[p][2] != "Z" for p in frozen):
            break
        time.sleep(0.05)
    return killed


def _machine_busy_cores(seconds: float) -> float | None:
    """Cores in use (all but idle and iowait) over ``seconds``, from /proc/stat."""
    def sample():
        with open("/proc/stat") as f:
            j = [int(x) for x in f.readline().split()[1:9]]
        return sum(j) - j[3] - j[4], time.monotonic()

    try:
        (b0, t0) = sample()
        time.sleep(seconds)
        (b1, t1) = sample()
    except (OSError, ValueError):
        return None
    return round((b1 - b0) / _CLK_TCK / (t1 - t0), 2)


def _run_job(job: Job, python: str, args: argparse.Namespace, cfg: Config,
             env: dict) -> dict[str, Any]:
    busy_before = _machine_busy_cores(1.0)  # nothing of ours runs now: others' load
    fd, tmp = tempfile.mkstemp(prefix=f"cluster-bench-{job.name}-", suffix=".json")
    os.close(fd)
    cmd = [python, str(Path(__file__).resolve()), "--_job", job.name, "--_out", tmp]
    if args.quick:
        cmd.append("--quick")
    timeout = job.timeout_s(cfg)
    _log(f"$ {' '.join(cmd)}   (hard timeout {timeout} s)")
    t0 = time.perf_counter()
    meta: dict[str, Any] = {"timeout_s": timeout, "busy_before_cores": busy_before}
    proc = subprocess.Popen(cmd, stdout=sys.stderr, cwd=REPO_ROOT, env=env,
                            start_new_session=True)
    try:
        meta["rc"] = proc.wait(timeout=timeout)
        meta["timed_out"] = False
    except subprocess.TimeoutExpired:
        meta["timed_out"] = True
        _log(f"[{job.name}] hard timeout after {timeout} s: killing it and all it started")
        _stop_descendants(0)
        proc.wait()
        meta["rc"] = proc.returncode
    except BaseException:
        _stop_descendants(0)
        raise
    meta["wall_s"] = round(time.perf_counter() - t0, 1)
    left = _stop_descendants(5.0)
    if left:
        meta["leftovers_killed"] = left
        _log(f"[{job.name}] killed {len(left)} process(es) it left behind: "
             + ", ".join(left[:8]))
    try:
        data = json.loads(Path(tmp).read_text())
    except (OSError, ValueError):
        data = {"results": {}, "errors": {}, "details": {}, "notes": []}
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        with contextlib.suppress(OSError):
            os.unlink(tmp + ".tmp")
    why = None
    if meta["timed_out"]:
        why = f"job killed at its hard timeout ({timeout} s)"
    elif meta["rc"] != 0:
        why = f"job exited with status {meta['rc']}"
    elif not data.get("job"):
        why = "job wrote no results"
    if why:
        for r in job.rows:
            if r not in data["results"]:
                data["errors"].setdefault(r, why)
    meta["loadavg_start"], meta["loadavg_end"] = data.get("loadavg_start"), data.get(
        "loadavg_end")
    data["meta"] = meta
    _log(f"[{job.name}] done in {meta['wall_s']} s")
    return data


def _empty_column() -> dict[str, Any]:
    return {"results": {}, "errors": {}, "details": {}, "notes": [], "versions": set()}


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    cfg = Config.make(args.quick)
    ray_ok, ray_note = _ray_available(args.ray_python)
    _log(f"ray: {ray_note}")
    subreaper = _set_subreaper()
    columns = {c: _empty_column() for c in COLUMNS}
    jobs_meta: dict[str, Any] = {}
    # The zactor jobs keep their shared-memory stores under a directory of this run, which
    # goes away after each job even if the job was killed. Not named zactor-*: that is the
    # pattern of zactor's own session directories, which tools and tests look after.
    shm_parent = "/dev/shm" if os.path.isdir("/dev/shm") else None
    shm_root = tempfile.mkdtemp(prefix="cluster-bench-", dir=shm_parent)
    ensure_importable("zactor")  # a source checkout: PYTHONPATH for the children too
    env = {**os.environ, "ZACTOR_SHM_ROOT": shm_root}
    t0 = time.perf_counter()
    try:
        for job in JOBS:
            if job.group not in args.only:
                continue
            col = columns[job.column]
            if job.interpreter == "ray" and not ray_ok:
                for r in job.rows:
                    col["errors"].setdefault(r, f"n/a: {ray_note}")
                continue
            python = args.ray_python if job.interpreter == "ray" else sys.executable
            data = _run_job(job, python, args, cfg, env)
            jobs_meta[job.name] = data.pop("meta")
            col["results"].update(data.get("results", {}))
            for r, e in data.get("errors", {}).items():
                if r not in col["results"]:
                    col["errors"][r] = e
            col["details"][job.name] = data.get("details", {})
            col["notes"] += data.get("notes", [])
            if data.get("backend_version"):
                col["versions"].add(str(data["backend_version"]))
            try:
                for entry in os.listdir(shm_root):
                    shutil.rmtree(os.path.join(shm_root, entry), ignore_errors=True)
            except FileNotFoundError:  # removed under us: the next job needs it
                _log(f"note: {shm_root} had been removed by something else; made again")
                os.makedirs(shm_root, mode=0o700, exist_ok=True)
    finally:
        shutil.rmtree(shm_root, ignore_errors=True)
    for c in columns.values():
        c["versions"] = sorted(c["versions"])
    return {
        "config": asdict(cfg),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "total_s": round(time.perf_counter() - t0, 1),
        "ray": ray_note,
        "subreaper": subreaper,
        "columns": columns,
        "jobs": jobs_meta,
    }


# --------------------------------------------------------------------------- report


def fmt(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    unit = ROWS[name][0]
    if unit == "1/s":
        return f"{value:,.0f}/s"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "GB/s":
        return f"{value:.2f} GB/s"
    return f"{value:g}"


def _primary(name: str) -> str:
    """The row under which the measurement that gave ``name`` keeps its details."""
    if name == "transfer_1gb_median_gb_per_s":
        return "transfer_1gb_gb_per_s"
    if name.startswith("node_death_"):
        return "node_death_detect_s"
    return name


def _failures_of(col: dict[str, Any], name: str) -> int:
    """Repetitions of the row that failed (the value comes from the others)."""
    for details in col["details"].values():
        info = details.get(_primary(name))
        if isinstance(info, dict) and info.get("failures"):
            return len(info["failures"])
    return 0


def cell(col: dict[str, Any], name: str) -> str:
    if name in col["results"]:
        text = fmt(name, col["results"][name])
        failed = _failures_of(col, name)
        return text + (f" ({failed} failed)" if failed else "")
    if name in col["errors"]:
        return "error: " + col["errors"][name].replace("|", "/").replace("\n", " ")[:80]
    return "-"


def value(run: dict[str, Any], column: str, name: str) -> float | None:
    v = run["columns"][column]["results"].get(name)
    return v if isinstance(v, (int, float)) and v > 0 else None


def better_ratio(name: str, a: float | None, b: float | None) -> float | None:
    """a against b, written so that >1 means a is better."""
    if a is None or b is None:
        return None
    return a / b if ROWS[name][1] == "rate" else b / a


def ratios(run: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    out = {}
    for n in ROWS:
        z, zi = value(run, "zactor", n), value(run, "zactor_insecure", n)
        p, r = value(run, "plain", n), value(run, "ray", n)
        out[n] = {
            "zactor/plain": better_ratio(n, z, p),
            "zactor/ray": better_ratio(n, z, r),
            "secure/insecure": better_ratio(n, z, zi),
            "insecure/plain": better_ratio(n, zi, p),
        }
        if n.endswith("_tcp"):
            ipc = value(run, "zactor", n[: -len("_tcp")] + "_ipc")
            out[n]["tcp/ipc"] = better_ratio(n, z, ipc)
    return out


def targets(run: dict[str, Any]) -> list[tuple[str, str]]:
    q = ratios(run)
    t = "transfer_1gb_gb_per_s"

    def verdict(r: float | None, need: float, pct: bool = False) -> str:
        if r is None:
            return "not measured"
        shown = f"{r:.0%}" if pct else f"{r:.2f}x"
        return f"{'MET' if r >= need else 'MISSED'} ({shown})"

    out = [
        ("transfer 1 GB (best) ≥ 70% of the plain TCP copy",
         verdict(q[t]["zactor/plain"], 0.7, pct=True)),
        ("transfer 1 GB (best) ≥ 2x Ray's", verdict(q[t]["zactor/ray"], 2.0)),
        ("transfer 1 GB insecure (best) ≥ 70% of the plain TCP copy (information)",
         verdict(q[t]["insecure/plain"], 0.7, pct=True)),
    ]
    return out


def _info_lines(run: dict[str, Any]) -> list[str]:
    q = ratios(run)
    lines = []

    def pct(r: float | None) -> str:
        return "-" if r is None else f"{r:.0%}"

    t = "transfer_1gb_gb_per_s"
    if q[t]["secure/insecure"] is not None:
        lines.append(f"encryption: the 1 GB transfer (best) keeps {pct(q[t]['secure/insecure'])}"
                     " of the insecure cluster's rate")
    for n in ("tasks_sync_per_s_tcp", "tasks_async_per_s_tcp", "actor_calls_sync_per_s_tcp",
              "actor_calls_async_per_s_tcp"):
        if q[n]["secure/insecure"] is None and q[n].get("tcp/ipc") is None:
            continue
        lines.append(f"encryption: {n} keeps {pct(q[n]['secure/insecure'])} of the insecure "
                     f"rate; the TCP driver (encrypted) runs at {pct(q[n].get('tcp/ipc'))} "
                     "of the ipc driver's rate")
    d = "node_death_detect_s"
    r = q[d]["zactor/ray"]
    if r is not None:
        lines.append(f"node death: zactor declares a node dead {r:.1f}x sooner than Ray "
                     "(medians, both under their defaults)")
    for c in ("zactor", "zactor_insecure"):
        head, b = value(run, c, "transfer_1gb_to_head_gb_per_s"), value(run, c, t)
        if head and b:
            lines.append(f"{COLUMN_TITLES[c]}: the driver's get (its node, the head's, pulls "
                         f"in the head's own loop) runs at {head:.2f} GB/s against "
                         f"{b:.2f} GB/s node to node")
    return lines


def print_report(run: dict[str, Any]) -> None:
    cols = run["columns"]
    versions = {c: ", ".join(cols[c]["versions"]) or "?" for c in COLUMNS}
    print()
    print(f"cluster benchmark — zactor {versions['zactor']} vs ray {versions['ray']} — python "
          f"{run['python']}, {run['cpu_count']} cpus" + (", quick mode" if run["config"]["quick"]
                                                         else ""))
    print(f"Ray: {run['ray']}")
    print()
    q = ratios(run)
    print("| row | zactor | zactor insecure | plain | ray | zactor/plain | zactor/ray "
          "| secure/insecure |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")

    def r(x: float | None, pct: bool = False) -> str:
        return "-" if x is None else (f"{x:.0%}" if pct else f"{x:.2f}x")

    for n in ROWS:
        if not any(n in cols[c]["results"] or n in cols[c]["errors"] for c in COLUMNS):
            continue
        print(f"| {n} | " + " | ".join(cell(cols[c], n) for c in COLUMNS)
              + f" | {r(q[n]['zactor/plain'], True)} | {r(q[n]['zactor/ray'])} "
              f"| {r(q[n]['secure/insecure'], True)} |")
    print("\nRatios: zactor/plain is the share of the plain copy's rate; zactor/ray and "
          "secure/insecure are written so that >1 means the first is better.")
    print(f"node_death_replay_* include the task's own {TASK_SECONDS:.0f} s (it starts again "
          "from the beginning elsewhere).")
    notes = sorted({n for c in COLUMNS for n in cols[c]["notes"]})
    for n in notes:
        print(f"Note: {n}")
    for c in COLUMNS:
        for job, details in cols[c]["details"].items():
            for row, info in details.items():
                if isinstance(info, dict):
                    for f in info.get("failures", []):
                        print(f"Failure ({job}, {row}): {f}")
    print("\nTargets:")
    for label, v in targets(run):
        print(f"- {label}: {v}")
    for line in _info_lines(run):
        print(f"- {line}")
    busy = [m["busy_before_cores"] for m in run["jobs"].values()
            if m.get("busy_before_cores") is not None]
    if busy:
        print(f"\nCPU in use by other programs just before each job (1 s samples): "
              f"median {statistics.median(busy):.2f}, up to {max(busy):.2f} of "
              f"{run['cpu_count']} cores"
              + (" — the machine was shared; expect more noise than usual"
                 if max(busy) > 0.25 else ""))
    print(f"\n(total {run['total_s']:.0f} s)")


def write_json(data: dict[str, Any], path: str | None) -> None:
    text = json.dumps(data, indent=2, sort_keys=True, default=str)
    if path:
        Path(path).write_text(text + "\n")
    try:
        RESULTS_DIR.mkdir(exist_ok=True)
        (RESULTS_DIR / LATEST).write_text(text + "\n")
    except OSError as e:
        _log(f"could not write {RESULTS_DIR / LATEST}: {e}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--ray-python", default=None,
                   help="interpreter with ray installed (default: .venv-ray/bin/python if "
                        "it exists); without one the Ray column says n/a")
    p.add_argument("--only", default=None,
                   help="comma-separated job groups: " + ", ".join(GROUPS))
    p.add_argument("--quick", action="store_true",
                   help="fewer repetitions (still 1 GB), for smoke tests")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--_job", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in GROUPS]
        if unknown:
            p.error(f"unknown group(s): {', '.join(unknown)}; known: {', '.join(GROUPS)}")
        args.only = names
    else:
        args.only = list(GROUPS)
    if args.ray_python is None and not args._job:
        default = REPO_ROOT / ".venv-ray" / "bin" / "python"
        args.ray_python = str(default) if default.exists() else None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args._job:
        return run_job_child(args._job, args._out, args.quick)
    run = run_all(args)
    print_report(run)
    run["ratios"] = ratios(run)
    run["targets"] = dict(targets(run))
    write_json(run, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
