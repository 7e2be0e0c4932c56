#!/usr/bin/env python3
"""zactor.tune against Ray Tune 2.60, in the same run: the overhead Tune's users feel.

Rows (each backend in a fresh child process of its own interpreter, on a local cluster of
this machine's CPUs; Ray only under ``--ray-python``, never imported here):

- trials_per_s: 200 trivial trials (a grid of 200 configs, one report each), Tuner.fit();
- reports_per_s: one trial that calls report 1,000 times.

Both with each library's defaults (Ray Tune: a fresh actor per function trial). The ratio
is zactor / Ray (higher is better).

    python benchmarks/tune_bench.py --ray-python .venv-ray/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRIALS, REPORTS = 200, 1000


def _report():
    # the backend's tune.report, looked up in the trial's own process
    if os.environ["BENCH_BACKEND"] == "ray":
        from ray import tune
    else:
        from zactor import tune
    return tune.report


def _trivial(config):
    _report()({"score": config["i"]})


def _many(config):
    report = _report()
    for i in range(REPORTS):
        report({"i": i})


def child(backend: str) -> dict:
    if backend == "ray":
        import ray
        from ray import tune

        ray.init(include_dashboard=False, log_to_driver=False)
    else:
        import zactor as ray
        from zactor import tune

        ray.init(log_to_driver=False)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = tune.RunConfig(storage_path=tmp, verbose=0, name="trivial")
        started = time.perf_counter()
        grid = tune.Tuner(_trivial, param_space={"i": tune.grid_search(list(range(TRIALS)))},
                          run_config=run).fit()
        out["trials_per_s"] = TRIALS / (time.perf_counter() - started)
        assert len(grid) == TRIALS and not grid.errors
        run = tune.RunConfig(storage_path=tmp, verbose=0, name="many")
        started = time.perf_counter()
        grid = tune.Tuner(_many, run_config=run).fit()
        out["reports_per_s"] = REPORTS / (time.perf_counter() - started)
        assert grid[0].metrics["i"] == REPORTS - 1
    ray.shutdown()
    return out


def run(python: str, backend: str) -> dict:
    proc = subprocess.run([python, __file__, "--child", backend], capture_output=True,
                          text=True, timeout=1800,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "BENCH_BACKEND": backend})
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-3:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray-python", default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    results = {"zactor": run(sys.executable, "zactor")}
    if args.ray_python:
        results["ray"] = run(args.ray_python, "ray")
    print(f"\nzactor.tune vs Ray Tune, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}\n")
    print("| row | zactor | Ray Tune | zactor / Ray |")
    print("|---|---|---|---|")
    for name in ("trials_per_s", "reports_per_s"):
        z, r = results["zactor"].get(name), results.get("ray", {}).get(name)
        ratio = f"{z / r:.1f}x" if isinstance(z, float) and isinstance(r, float) else "-"
        cells = [f"{v:,.1f}" if isinstance(v, float) else "-" for v in (z, r)]
        print(f"| {name} | {cells[0]} | {cells[1]} | {ratio} |")
    for backend, rows in results.items():
        if "error" in rows:
            print(f"{backend} failed: {rows['error']}")
    (ROOT / "bench-results").mkdir(exist_ok=True)
    (ROOT / "bench-results" / "tune-latest.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
