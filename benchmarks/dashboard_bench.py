#!/usr/bin/env python3
"""What a dashboard costs: zactor's against Ray's (``ray[default]``), in the same run.

Each backend runs in fresh child processes of its own interpreter (Ray only under
``--ray-python``, never imported here), on a local cluster of 2 CPUs. Rows:

- init_s_without / init_s_with: ``init()`` to the first task's result, with
  ``include_dashboard=False`` and ``True`` (median of ``--runs`` interleaved pairs);
- idle_mb_with_minus_without: the PSS of the whole process tree (driver included) of an
  idle cluster with the dashboard, less that of one without (after ``--idle`` seconds),
  median of the pairs: what the dashboard keeps in memory while nobody looks at it;
- first_page_s: from the first request for the page's data to its answer (zactor starts
  the dashboard's process at that moment; Ray's runs already), and warm_page_ms: the next;
- open_page_cpu_pct: CPU of the cluster's process tree (driver excluded) while one page
  is open on the live update stream, in % of one core, over ``--watch`` seconds.

Both ask for a token, on loopback too: zactor's URL carries it; Ray 2.60 (its token
authentication on by default) keeps it in ``~/.ray/auth_token``.

    python benchmarks/dashboard_bench.py --ray-python .venv-ray/bin/python
    python benchmarks/dashboard_bench.py --quick            # zactor only, fewer runs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))

# Runs in the backend's interpreter: one cluster, one measurement, a JSON line out.
CHILD = textwrap.dedent(r'''
    import json, os, sys, threading, time, urllib.request
    sys.path.insert(0, sys.argv[4])
    from _probe import measure

    name, mode, idle_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
    backend = __import__(name)
    out = {}

    @backend.remote
    def one():
        return 1

    t = time.perf_counter()
    ctx = backend.init(num_cpus=2, include_dashboard=(mode != "off"))
    backend.get(one.remote())
    out["init_s"] = time.perf_counter() - t
    if mode in ("off", "on"):
        time.sleep(idle_s)
        out["idle_mb"] = measure(backend)["mb"]
    else:  # the page: its data, then the live stream
        url = ctx.dashboard_url
        url = url if url.startswith("http") else "http://" + url
        url, _, token = url.partition("/?token=")  # zactor's URL carries its token
        ray_token = os.path.expanduser("~/.ray/auth_token")  # Ray's, when it made one
        if not token and os.path.exists(ray_token):
            token = open(ray_token).read().strip()
        headers = {"Authorization": "Bearer " + token} if token else {}
        _urlopen = urllib.request.urlopen

        def urlopen(target, timeout):
            return _urlopen(urllib.request.Request(target, headers=headers), timeout=timeout)

        urllib.request.urlopen = urlopen
        path = "/api/snapshot" if name == "zactor" else "/api/cluster_status"
        t = time.perf_counter()
        deadline = t + 60
        while True:
            try:
                urllib.request.urlopen(url + path, timeout=30).read()
                break
            except OSError:
                if time.perf_counter() > deadline:
                    raise
                time.sleep(0.05)
        out["first_page_s"] = time.perf_counter() - t
        t = time.perf_counter()
        urllib.request.urlopen(url + path, timeout=30).read()
        out["warm_page_ms"] = (time.perf_counter() - t) * 1000
        import psutil
        me = psutil.Process()

        def tree_cpu():
            total = 0.0
            for p in me.children(recursive=True):
                try:
                    c = p.cpu_times()
                    total += c.user + c.system
                except psutil.Error:
                    pass
            return total

        stop = threading.Event()

        def watch():  # what a browser tab does: zactor's stream, or Ray's page polling
            if name == "zactor":
                with urllib.request.urlopen(url + "/api/events", timeout=60) as r:
                    while not stop.is_set() and r.readline():
                        pass
            else:
                while not stop.is_set():
                    for p in ("/api/cluster_status", "/nodes?view=summary",
                              "/logical/actors"):
                        try:
                            urllib.request.urlopen(url + p, timeout=30).read()
                        except OSError:
                            pass
                    stop.wait(1.0)

        th = threading.Thread(target=watch, daemon=True)
        th.start()
        time.sleep(1.0)
        c0, t0 = tree_cpu(), time.perf_counter()
        time.sleep(idle_s)
        out["open_page_cpu_pct"] = (tree_cpu() - c0) / (time.perf_counter() - t0) * 100
        stop.set()
    backend.shutdown()
    print("RESULT " + json.dumps(out), flush=True)
''')


def run_child(python: str, name: str, mode: str, seconds: float) -> dict:
    proc = subprocess.run([python, "-c", CHILD, name, mode, str(seconds), HERE],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{name} {mode} failed:\n{proc.stderr[-3000:]}")


def bench(python: str, name: str, runs: int, idle: float, watch: float) -> dict:
    on, off = [], []
    for _ in range(runs):  # interleaved: the machine's noise falls on both alike
        off.append(run_child(python, name, "off", idle))
        on.append(run_child(python, name, "on", idle))
    page = run_child(python, name, "page", watch)
    return {
        "init_s_without": statistics.median(r["init_s"] for r in off),
        "init_s_with": statistics.median(r["init_s"] for r in on),
        "idle_mb_with_minus_without": statistics.median(
            a["idle_mb"] - b["idle_mb"] for a, b in zip(on, off, strict=True)),
        "first_page_s": page["first_page_s"],
        "warm_page_ms": page["warm_page_ms"],
        "open_page_cpu_pct": page["open_page_cpu_pct"],
    }


ROWS = [("init_s_without", "init() to first result, no dashboard (s)"),
        ("init_s_with", "init() to first result, with dashboard (s)"),
        ("idle_mb_with_minus_without", "idle memory the dashboard adds (MB, PSS)"),
        ("first_page_s", "first page answer (s)"),
        ("warm_page_ms", "next page answer (ms)"),
        ("open_page_cpu_pct", "CPU with one page open (% of a core)")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ray-python", help="an interpreter with ray[default] installed")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--idle", type=float, default=3.0)
    ap.add_argument("--watch", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true", help="2 runs, short waits")
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.idle, args.watch = 2, 1.0, 3.0
    results = {"zactor": bench(sys.executable, "zactor", args.runs, args.idle, args.watch)}
    if args.ray_python:
        try:
            results["ray"] = bench(args.ray_python, "ray", args.runs, args.idle, args.watch)
        except RuntimeError as exc:
            results["ray_error"] = str(exc)
    z, r = results["zactor"], results.get("ray")
    width = max(len(label) for _, label in ROWS)
    print(f"{'':{width}}  {'zactor':>10}  {'Ray':>10}  {'zactor/Ray':>10}")
    for key, label in ROWS:
        ray = f"{r[key]:10.3g}" if r else f"{'-':>10}"
        ratio = f"{z[key] / r[key]:10.2f}" if r and r[key] else f"{'-':>10}"
        print(f"{label:{width}}  {z[key]:10.3g}  {ray}  {ratio}")
    if "ray_error" in results:
        print("Ray failed:", results["ray_error"].splitlines()[-1])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
