#!/usr/bin/env python3
"""Micro-benchmarks for zactor, with Ray Core as the point of comparison.

Every workload is written once against a module object ``ray`` that is either ``zactor``
(``import zactor as ray``) or the real ``ray``; Ray is imported only for ``--backend ray``.

Usage::

    python benchmarks/microbench.py                         # zactor, this interpreter
    python benchmarks/microbench.py --backend ray           # needs ray installed here
    python benchmarks/microbench.py --compare --ray-python .venv-ray/bin/python
    python benchmarks/microbench.py --only tasks_sync_per_s,idle_memory_mb --quick

It is a report, not a test: the exit status is 0 even when a target is missed or a
workload fails (a failed workload shows ``error: ...`` in its cell).  Results also go to
``bench-results/latest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench-results"
PROBE_MARKER = "MICROBENCH_PROBE_RESULT "
BACKENDS = ("zactor", "ray")

# name -> (unit, kind); kind is "rate" (higher is better) or "cost" (lower is better).
WORKLOADS: dict[str, tuple[str, str]] = {
    "startup_to_first_result_s": ("s", "cost"),
    "idle_memory_mb": ("MB", "cost"),
    "tasks_sync_per_s": ("1/s", "rate"),
    "tasks_async_per_s": ("1/s", "rate"),
    "actor_calls_sync_per_s": ("1/s", "rate"),
    "actor_calls_async_per_s": ("1/s", "rate"),
    "small_put_get_per_s": ("1/s", "rate"),
    # Large objects, at three sizes (smaller with --quick): the rate of copying the array
    # into memory already mapped (np.copyto, the limit a put can approach), put and
    # zero-copy get of it, and a task taking it as an argument.
    "numpy_copy_10mb_gb_per_s": ("GB/s", "rate"),
    "put_10mb_gb_per_s": ("GB/s", "rate"),
    "get_10mb_ms": ("ms", "cost"),
    "numpy_copy_100mb_gb_per_s": ("GB/s", "rate"),
    "put_100mb_gb_per_s": ("GB/s", "rate"),
    "get_100mb_ms": ("ms", "cost"),
    "numpy_copy_1gb_gb_per_s": ("GB/s", "rate"),
    "put_1gb_gb_per_s": ("GB/s", "rate"),
    "get_1gb_ms": ("ms", "cost"),
    "task_arg_100mb_ms": ("ms", "cost"),
    "worker_death_detect_ms": ("ms", "cost"),
    "actor_restart_ms": ("ms", "cost"),
}
PROBE_ROWS = ("startup_to_first_result_s", "idle_memory_mb")


@dataclass
class Config:
    quick: bool
    startup_runs: int = 3
    idle_s: float = 2.0
    loop_s: float = 0.7  # one repetition of a timed loop
    reps: int = 3  # repetitions per throughput row (median is reported)
    warmup_s: float = 0.3
    async_n: int = 2000
    # size label -> bytes of the array for the large-object rows
    sizes: tuple = (("10mb", 10 << 20), ("100mb", 100 << 20), ("1gb", 1 << 30))
    # puts before the measured ones: a loop of puts settles into memory the store has
    # already mapped (both backends), and that steady state is what is measured
    put_warmup: int = 10
    put_reps: int = 10
    get_reps: int = 5
    row_timeout_s: int = 120
    probe_timeout_s: int = 120

    @classmethod
    def make(cls, quick: bool) -> Config:
        if not quick:
            return cls(quick=False)
        return cls(
            quick=True,
            startup_runs=1,
            idle_s=0.5,
            loop_s=0.2,
            reps=2,
            warmup_s=0.1,
            async_n=200,
            sizes=(("10mb", 1 << 20), ("100mb", 2 << 20), ("1gb", 4 << 20)),
            put_warmup=1,
            put_reps=2,
            get_reps=3,
            row_timeout_s=60,
            probe_timeout_s=90,
        )


# --------------------------------------------------------------------------- remote bodies
# Module-level so that both backends can ship them (cloudpickle pickles __main__ by value).


def _noop():
    return None


def _length(arr):
    return arr.shape[0]


class _NoopActor:
    def ping(self):
        return None


def _pid_then_sleep(path):
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(path + ".tmp", path)
    time.sleep(120)


class _RestartableActor:
    def pid(self):
        return os.getpid()


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- probe (child)


def ensure_importable(backend_name: str) -> None:
    """Lets a source checkout of zactor be benchmarked before `pip install -e .` (the
    repository root goes on sys.path, and on PYTHONPATH for the processes zactor starts)."""
    if backend_name != "zactor" or importlib.util.find_spec("zactor") is not None:
        return
    root = str(REPO_ROOT)
    if (REPO_ROOT / "zactor" / "__init__.py").exists():
        sys.path.append(root)
        pp = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = root if not pp else pp + os.pathsep + root
        _log(f"note: zactor is not installed here; using the source tree at {root}")


def _spawn_probe(backend_name: str, cfg: Config, with_memory: bool) -> dict[str, Any]:
    # A minimal script, not this module: the harness's own imports would otherwise weigh on
    # the driver whose memory is measured (the same for both backends).
    ensure_importable(backend_name)
    probe = str(Path(__file__).resolve().parent / "_probe.py")
    cmd = [sys.executable, probe, backend_name]
    if with_memory:
        cmd.append(str(cfg.idle_s))
    rc, stdout, stderr = _run_group(cmd, cfg.probe_timeout_s, capture=True)
    if rc is None:
        return {"error": f"probe timed out after {cfg.probe_timeout_s} s"}
    for line in reversed(stdout.splitlines()):
        if line.startswith(PROBE_MARKER):
            return json.loads(line[len(PROBE_MARKER) :])
    tail = (stderr or stdout or "").strip().splitlines()[-5:]
    return {"error": f"probe exited {rc} without a result: {' | '.join(tail)}"}


def _run_group(cmd: list[str], timeout_s: float, capture: bool) -> tuple[int | None, str, str]:
    """Runs cmd in a session of its own; on timeout kills that process group (the child
    and whatever it started that stayed in the group).  Output goes through temporary
    files, not pipes, so that a daemon holding the child's stdout cannot make us wait.
    Returns (exit status or None on timeout, stdout, stderr); without capture the child's
    stdout goes to our stderr and its stderr to ours."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            cmd,
            stdout=out if capture else sys.stderr,
            stderr=err if capture else None,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        try:
            rc: int | None = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
        except BaseException:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise
        if not capture:
            return rc, "", ""
        out.seek(0)
        err.seek(0)
        return rc, out.read(), err.read()


# --------------------------------------------------------------------------- workloads


class RowTimeout(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: int):
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def _fire(signum, frame):
        raise RowTimeout(f"workload did not finish within {seconds} s")

    old = signal.signal(signal.SIGALRM, _fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _timed_loop(fn: Callable[[], Any], seconds: float) -> float:
    """Calls fn repeatedly for about `seconds`; returns calls per second."""
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    now = t0
    while now < deadline:
        fn()
        n += 1
        now = time.perf_counter()
    return n / (now - t0)


def _rate_row(cfg: Config, fn: Callable[[], Any]) -> tuple[float, dict[str, Any]]:
    _timed_loop(fn, cfg.warmup_s)
    samples = [_timed_loop(fn, cfg.loop_s) for _ in range(cfg.reps)]
    return statistics.median(samples), {"samples": samples}


def _batch_row(cfg: Config, submit: Callable[[], Any], get) -> tuple[float, dict[str, Any]]:
    def once(n: int) -> float:
        t0 = time.perf_counter()
        refs = [submit() for _ in range(n)]
        get(refs)
        return n / (time.perf_counter() - t0)

    once(max(10, cfg.async_n // 10))  # warm-up
    samples = [once(cfg.async_n) for _ in range(cfg.reps)]
    return statistics.median(samples), {"samples": samples, "n": cfg.async_n}


class Session:
    """The in-process workloads; `ray` is the backend module (zactor or ray)."""

    def __init__(self, ray, cfg: Config):
        self.ray = ray
        self.cfg = cfg
        self._noop = None
        self._actor = None
        self._arrays: dict = {}
        self._init_error: str | None = None

    def start(self) -> None:
        t0 = time.perf_counter()
        self.ray.init(num_cpus=2)
        self._noop = self.ray.remote(_noop)
        self.ray.get(self._noop.remote())
        _log(f"[{self.ray.__name__}] init + first task: {time.perf_counter() - t0:.2f} s")

    def stop(self) -> None:
        self._actor = None
        try:
            with _deadline(60):
                self.ray.shutdown()
        except Exception as e:
            _log(f"[{self.ray.__name__}] shutdown failed: {type(e).__name__}: {e}")

    # -- rows
    def tasks_sync_per_s(self):
        f, get = self._noop, self.ray.get
        return _rate_row(self.cfg, lambda: get(f.remote()))

    def tasks_async_per_s(self):
        f = self._noop
        return _batch_row(self.cfg, lambda: f.remote(), self.ray.get)

    def _get_actor(self):
        if self._actor is None:
            self._actor = self.ray.remote(_NoopActor).remote()
            self.ray.get(self._actor.ping.remote())
        return self._actor

    def actor_calls_sync_per_s(self):
        a, get = self._get_actor(), self.ray.get
        return _rate_row(self.cfg, lambda: get(a.ping.remote()))

    def actor_calls_async_per_s(self):
        a = self._get_actor()
        return _batch_row(self.cfg, lambda: a.ping.remote(), self.ray.get)

    def small_put_get_per_s(self):
        get, put = self.ray.get, self.ray.put
        return _rate_row(self.cfg, lambda: get(put(12345)))

    def _array(self, label: str):
        """The array of the large-object rows of size ``label`` (random doubles: lz4 and
        dedup by content would not shrink them)."""
        import numpy as np

        nbytes = dict(self.cfg.sizes)[label]
        if self._arrays.get(label) is None:
            self._arrays.clear()  # at most one size alive: 1 GiB arrays add up
            arr = np.empty(nbytes // 8, dtype=np.float64)
            np.random.default_rng(0).random(out=arr)
            self._arrays[label] = arr
        return self._arrays[label]

    def _numpy_copy(self, label: str):
        import numpy as np

        arr = self._array(label)
        dest = np.empty_like(arr)
        np.copyto(dest, arr)  # fault the destination in: copying into mapped memory
        samples = []
        for _ in range(self.cfg.put_reps):
            t0 = time.perf_counter()
            np.copyto(dest, arr)
            samples.append(arr.nbytes / (time.perf_counter() - t0) / 1e9)
        return statistics.median(samples), {"samples": samples, "bytes": arr.nbytes}

    def _put(self, label: str):
        """put and drop, as a loop does: after a few, the store reuses warm memory."""
        arr = self._array(label)
        samples = []
        for i in range(self.cfg.put_warmup + self.cfg.put_reps):
            t0 = time.perf_counter()
            ref = self.ray.put(arr)
            dt = time.perf_counter() - t0
            if i >= self.cfg.put_warmup:
                samples.append(arr.nbytes / dt / 1e9)
            del ref
        return statistics.median(samples), {"samples": samples, "bytes": arr.nbytes,
                                            "warmup_puts": self.cfg.put_warmup}

    def _get(self, label: str):
        import numpy as np

        arr = self._array(label)
        ref = self.ray.put(arr)
        samples = []
        info: dict[str, Any] = {"bytes": arr.nbytes}
        for i in range(self.cfg.get_reps):
            t0 = time.perf_counter()
            out = self.ray.get(ref)
            samples.append((time.perf_counter() - t0) * 1e3)
            if i == 0:  # sanity checks, not timed
                info["correct"] = bool(
                    out.shape == arr.shape and out[12345] == arr[12345] and out[-1] == arr[-1]
                )
                info["read_only"] = not out.flags.writeable
                # True would mean put() kept a reference instead of storing a copy.
                info["shares_memory_with_source"] = bool(np.shares_memory(out, arr))
            del out
        del ref
        info["samples"] = samples
        return statistics.median(samples), info

    def numpy_copy_10mb_gb_per_s(self):
        return self._numpy_copy("10mb")

    def put_10mb_gb_per_s(self):
        return self._put("10mb")

    def get_10mb_ms(self):
        return self._get("10mb")

    def numpy_copy_100mb_gb_per_s(self):
        return self._numpy_copy("100mb")

    def put_100mb_gb_per_s(self):
        return self._put("100mb")

    def get_100mb_ms(self):
        return self._get("100mb")

    def numpy_copy_1gb_gb_per_s(self):
        return self._numpy_copy("1gb")

    def put_1gb_gb_per_s(self):
        return self._put("1gb")

    def get_1gb_ms(self):
        return self._get("1gb")

    def task_arg_100mb_ms(self):
        """get(f.remote(array)): the array goes to the store and the task reads it there."""
        arr = self._array("100mb")
        f = self.ray.remote(_length)
        samples = []
        for i in range(self.cfg.put_warmup + self.cfg.put_reps):
            t0 = time.perf_counter()
            n = self.ray.get(f.remote(arr))
            if i >= self.cfg.put_warmup:
                samples.append((time.perf_counter() - t0) * 1e3)
            assert n == arr.shape[0]
        return statistics.median(samples), {"samples": samples, "bytes": arr.nbytes}

    def worker_death_detect_ms(self):
        """SIGKILL the worker of a running task (max_retries=0): time until get() raises."""
        f = self.ray.remote(_pid_then_sleep).options(max_retries=0)
        samples = []
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(3 if self.cfg.quick else 10):
                path = os.path.join(tmp, f"pid{i}")
                ref = f.remote(path)
                deadline = time.monotonic() + 30
                while not os.path.exists(path) and time.monotonic() < deadline:
                    time.sleep(0.001)
                with open(path) as fh:
                    pid = int(fh.read())
                t0 = time.perf_counter()
                os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(Exception):
                    self.ray.get(ref, timeout=60)
                samples.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(samples), {"samples": samples, "worst_ms": max(samples)}

    def actor_restart_ms(self):
        """SIGKILL an actor (max_restarts=-1): time until a call answers from the new one."""
        a = self.ray.remote(_RestartableActor).options(max_restarts=-1).remote()
        samples = []
        for _ in range(3 if self.cfg.quick else 10):
            pid = self.ray.get(a.pid.remote())
            t0 = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if self.ray.get(a.pid.remote(), timeout=30) != pid:
                        break
                except Exception:  # unavailable while it restarts: ask again
                    time.sleep(0.001)
            samples.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(samples), {"samples": samples, "worst_ms": max(samples)}

def run_backend(backend_name: str, cfg: Config, only: list[str]) -> dict[str, Any]:
    results: dict[str, float] = {}
    errors: dict[str, str] = {}
    details: dict[str, Any] = {}

    def record(
        name: str, fn: Callable[[], tuple[float, dict[str, Any]]], t0: float | None = None
    ) -> None:
        t0 = time.perf_counter() if t0 is None else t0
        try:
            with _deadline(cfg.row_timeout_s):
                value, info = fn()
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            errors[name] = f"{type(e).__name__}: {e}".strip()[:300]
            details[name] = {"traceback": traceback.format_exc()[-2000:]}
            _log(f"[{backend_name}] {name:<28} error: {errors[name]}")
            return
        results[name] = value
        details[name] = info
        took = time.perf_counter() - t0
        _log(f"[{backend_name}] {name:<28} {fmt(name, value):>14}   ({took:.1f} s)")

    # 1 + 2: fresh interpreters, run before this process starts a cluster of its own.
    want_startup = "startup_to_first_result_s" in only
    want_memory = "idle_memory_mb" in only
    if want_startup or want_memory:
        runs = cfg.startup_runs if want_startup else 1
        probe_t0 = time.perf_counter()
        probes = [
            _spawn_probe(backend_name, cfg, with_memory=(i == 0 and want_memory))
            for i in range(runs)
        ]
        if want_startup:

            def startup():
                times = [p["startup_s"] for p in probes if "startup_s" in p]
                if not times:
                    raise RuntimeError(probes[0].get("error", "no probe result"))
                info = {"samples": times}
                errs = [p["error"] for p in probes if "error" in p]
                if errs:
                    info["probe_errors"] = errs
                return statistics.median(times), info

            record("startup_to_first_result_s", startup, probe_t0)
        if want_memory:

            def memory():
                mem = probes[0].get("memory")
                if mem is None:
                    raise RuntimeError(probes[0].get("error", "no memory result"))
                if mem.get("uncounted_new_processes"):
                    _log(
                        f"[{backend_name}] warning: processes outside the driver's tree: "
                        + "; ".join(mem["uncounted_new_processes"])
                    )
                return mem["mb"], mem

            record("idle_memory_mb", memory, probe_t0)

    in_process = [n for n in WORKLOADS if n in only and n not in PROBE_ROWS]
    version = None
    if in_process:
        session = None
        try:
            with _deadline(cfg.row_timeout_s):
                backend = importlib.import_module(backend_name)
                version = getattr(backend, "__version__", None)
                session = Session(backend, cfg)
                session.start()
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            msg = f"init failed: {type(e).__name__}: {e}"[:300]
            _log(f"[{backend_name}] {msg}")
            for name in in_process:
                errors[name] = msg
            details["init"] = {"traceback": traceback.format_exc()[-2000:]}
            if session is not None:
                session.stop()
            session = None
        if session is not None:
            try:
                for name in in_process:
                    record(name, getattr(session, name))
            finally:
                session.stop()
    if version is None:
        version = _module_version(backend_name)

    return {
        "backend": backend_name,
        "backend_version": version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "quick": cfg.quick,
        "sizes": dict(cfg.sizes),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "results": results,
        "errors": errors,
        "details": details,
        "units": {n: WORKLOADS[n][0] for n in only},
    }


def _module_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


# --------------------------------------------------------------------------- formatting


def fmt(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    unit = WORKLOADS[name][0]
    if unit == "1/s":
        return f"{value:,.0f}/s"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "MB":
        return f"{value:,.1f} MB"
    if unit == "GB/s":
        return f"{value:.2f} GB/s"
    if unit == "ms":
        return f"{value:.3f} ms"
    return f"{value:g}"


def cell(run: dict[str, Any] | None, name: str) -> str:
    if run is None:
        return "n/a"
    if name in run["results"]:
        return fmt(name, run["results"][name])
    if name in run["errors"]:
        return "error: " + run["errors"][name].replace("|", "/").replace("\n", " ")[:120]
    return "-"


def ratio(name: str, z: dict[str, Any], r: dict[str, Any] | None) -> float | None:
    """>1 means zactor is better."""
    if r is None:
        return None
    zv, rv = z["results"].get(name), r["results"].get(name)
    if zv is None or rv is None or zv <= 0 or rv <= 0:
        return None
    return zv / rv if WORKLOADS[name][1] == "rate" else rv / zv


def print_single(run: dict[str, Any], names: list[str]) -> None:
    print(
        f"\n{run['backend']} {run['backend_version'] or '(version unknown)'} "
        f"(python {run['python']}, {run['cpu_count']} cpus{', quick' if run['quick'] else ''})"
    )
    print("| workload | value |")
    print("|---|---:|")
    for n in names:
        print(f"| {n} | {cell(run, n)} |")


def targets(z: dict[str, Any], r: dict[str, Any] | None) -> list[tuple[str, str]]:
    def by_ratio(name: str, need: float) -> str:
        if name not in z["results"]:
            return "not measured" if name not in z["errors"] else "MISSED (zactor error)"
        if r is None:
            return "n/a (no Ray result)"
        q = ratio(name, z, r)
        if q is None:
            return "n/a (no Ray result)"
        return f"{'MET' if q >= need else 'MISSED'} ({q:.2f}x)"

    out = [
        ("startup ≤ 1/5 of Ray's", by_ratio("startup_to_first_result_s", 5.0)),
        ("idle memory ≤ 1/10 of Ray's", by_ratio("idle_memory_mb", 10.0)),
    ]
    for n in (
        "tasks_sync_per_s",
        "tasks_async_per_s",
        "actor_calls_sync_per_s",
        "actor_calls_async_per_s",
    ):
        out.append((f"{n} ≥ 2x Ray's", by_ratio(n, 2.0)))
    res = z["results"]
    for label in ("10mb", "100mb", "1gb"):
        put, copy = res.get(f"put_{label}_gb_per_s"), res.get(f"numpy_copy_{label}_gb_per_s")
        share = "not measured" if put is None or not copy else \
            f"{'MET' if put >= 0.6 * copy else 'MISSED'} ({put / copy:.0%})"
        out.append((f"put {label} ≥ 60% of the plain copy", share))
        out.append((f"put {label} ≥ 3x Ray's", by_ratio(f"put_{label}_gb_per_s", 3.0)))
        if z["details"].get(f"get_{label}_ms", {}).get("shares_memory_with_source"):
            out.append((f"get {label}", "WRONG: get returned the driver's own array"))
    out.append(("100 MB task argument at least as fast as Ray's",
                by_ratio("task_arg_100mb_ms", 1.0)))
    small, large = res.get("get_10mb_ms"), res.get("get_1gb_ms")
    out.append(("get independent of size (1 GB within 3x of 10 MB)",
                "not measured" if not small or not large else
                f"{'MET' if large <= 3 * small else 'MISSED'} ({large:.3f} vs {small:.3f} ms)"))
    return out


def print_compare(
    z: dict[str, Any], r: dict[str, Any] | None, names: list[str], ray_note: str | None
) -> None:
    print()
    print(
        f"zactor {z['backend_version'] or '(version unknown)'} vs "
        + (f"ray {r['backend_version']}" if r else "ray (not available)")
        + f" — python {z['python']}, {z['cpu_count']} cpus"
        + (", quick mode" if z["quick"] else "")
    )
    if ray_note:
        print(f"Ray: {ray_note}")
    print()
    if r is None:
        print("| workload | zactor |")
        print("|---|---:|")
        for n in names:
            print(f"| {n} | {cell(z, n)} |")
    else:
        print("| workload | zactor | ray | ratio (>1 = zactor better) |")
        print("|---|---:|---:|---:|")
        for n in names:
            q = ratio(n, z, r)
            print(f"| {n} | {cell(z, n)} | {cell(r, n)} | {'-' if q is None else f'{q:.2f}x'} |")
    print("\nTargets:")
    for label, verdict in targets(z, r):
        print(f"- {label}: {verdict}")


# --------------------------------------------------------------------------- driver


def write_json(data: dict[str, Any], path: str | os.PathLike | None, latest: bool) -> None:
    text = json.dumps(data, indent=2, sort_keys=True, default=str)
    if path:
        Path(path).write_text(text + "\n")
    if latest:
        try:
            RESULTS_DIR.mkdir(exist_ok=True)
            (RESULTS_DIR / "latest.json").write_text(text + "\n")
        except OSError as e:
            _log(f"could not write {RESULTS_DIR / 'latest.json'}: {e}")


def _run_child(
    python: str, backend: str, args: argparse.Namespace, timeout_s: int
) -> tuple[dict[str, Any] | None, str | None]:
    fd, tmp = tempfile.mkstemp(prefix=f"microbench-{backend}-", suffix=".json")
    os.close(fd)
    cmd = [
        python,
        str(Path(__file__).resolve()),
        "--backend",
        backend,
        "--json",
        tmp,
        "--only",
        ",".join(args.only),
        "--_child",
    ]
    if args.quick:
        cmd.append("--quick")
    _log(f"$ {' '.join(cmd)}")
    try:
        # The child's table goes to our stderr: stdout carries only the comparison.
        rc, _, _ = _run_group(cmd, timeout_s, capture=False)
        if rc is None:
            return None, f"{backend} run timed out after {timeout_s} s"
        if os.path.getsize(tmp) == 0:
            return None, f"{backend} run exited {rc} without results"
        return json.loads(Path(tmp).read_text()), None
    except (OSError, ValueError) as e:
        return None, f"{backend} run failed: {e}"
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _ray_available(python: str | None) -> tuple[bool, str]:
    if not python:
        return False, "no --ray-python given"
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        return False, f"{python} is not an executable"
    try:
        proc = subprocess.run(
            [python, "-c", "import ray, numpy, psutil; print(ray.__version__)"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"could not run {python}: {e}"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return False, f"`import ray` failed under {python}: {last}"
    return True, f"ray {proc.stdout.strip()} at {python}"


def compare(args: argparse.Namespace) -> int:
    child_timeout = 900 if not args.quick else 300
    ok, note = _ray_available(args.ray_python)
    _log(f"ray: {note}")
    z, err = _run_child(sys.executable, "zactor", args, child_timeout)
    if z is None:
        _log(err or "zactor run failed")
        z = {
            "backend": "zactor",
            "backend_version": None,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "quick": args.quick,
            "results": {},
            "errors": {n: err or "run failed" for n in args.only},
            "details": {},
        }
    r, ray_note = None, None if ok else f"not available ({note}); zactor column only"
    if ok:
        r, err = _run_child(args.ray_python, "ray", args, child_timeout)
        if r is None:
            ray_note = f"run failed ({err}); zactor column only"
    print_compare(z, r, args.only, ray_note)
    combined = {
        "zactor": z,
        "ray": r,
        "ray_note": ray_note,
        "ratios": {n: ratio(n, z, r) for n in args.only},
        "targets": dict(targets(z, r)),
    }
    write_json(combined, args.json, latest=True)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--backend", choices=BACKENDS, default="zactor")
    p.add_argument(
        "--compare",
        action="store_true",
        help="run zactor here and Ray under --ray-python, print both side by side",
    )
    p.add_argument(
        "--ray-python",
        default=None,
        help="interpreter with ray installed (default for --compare: .venv-ray)",
    )
    p.add_argument(
        "--only", default=None, help="comma-separated workload names: " + ", ".join(WORKLOADS)
    )
    p.add_argument("--quick", action="store_true", help="small sizes, for smoke tests")
    p.add_argument("--json", default=None, help="also write the results to this file")
    # internal
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in WORKLOADS]
        if unknown:
            p.error(f"unknown workload(s): {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
        args.only = [n for n in WORKLOADS if n in names]
    else:
        args.only = list(WORKLOADS)
    if args.compare and args.ray_python is None:
        default = REPO_ROOT / ".venv-ray" / "bin" / "python"
        args.ray_python = str(default) if default.exists() else None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_importable(args.backend)
    if args.compare:
        return compare(args)
    cfg = Config.make(args.quick)
    t0 = time.perf_counter()
    run = run_backend(args.backend, cfg, args.only)
    run["total_s"] = time.perf_counter() - t0
    print_single(run, args.only)
    print(f"(total {run['total_s']:.0f} s)")
    write_json(run, args.json, latest=not args._child)
    return 0


if __name__ == "__main__":
    sys.exit(main())
