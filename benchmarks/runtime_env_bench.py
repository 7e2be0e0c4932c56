#!/usr/bin/env python3
"""Runtime environments: how long the first task in a new environment waits, zactor and Ray.

Each backend runs in a child process of its own interpreter (Ray's under ``--ray-python``,
never imported here) on a fresh local cluster of 2 CPUs and a fresh environment cache, and
prints its rows as JSON; this prints them side by side with the ratio. The pip rows install
a wheel built here, with ``--no-index``: no package registry is asked. Ray's pip
environments need the ``virtualenv`` package in Ray's virtualenv (the Makefile installs it).

Usage::

    python benchmarks/runtime_env_bench.py --ray-python .venv-ray/bin/python
    python benchmarks/runtime_env_bench.py            # zactor only

It is a report, not a test: the exit status is 0 whatever it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROWS = {  # name -> what it measures (all costs: lower is better)
    "working_dir_init_to_first_task_s": "init with a 20 MB working_dir, then one task",
    "env_vars_first_task_s": "first task with new env_vars (a new worker)",
    "pip_first_task_s": "first task with a new pip list (a virtualenv built)",
    "env_task_warm_ms": "a task in a warm worker of that environment (median of 20)",
}


def _measure(backend: str, wheel: str, workdir: str) -> dict:
    # Ray takes a local working_dir only for the whole job (init), so both get it there;
    # every task below runs in it too.
    started = time.perf_counter()
    if backend == "ray":
        import ray
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"working_dir": workdir})
    else:
        import zactor as ray
        ray.init(num_cpus=2, log_to_driver=False, runtime_env={"working_dir": workdir})

    @ray.remote
    def probe():
        return os.getpid()

    ray.get(probe.remote(), timeout=300)
    out = {"working_dir_init_to_first_task_s": time.perf_counter() - started}

    def first(options: dict) -> float:
        started = time.perf_counter()
        ray.get(probe.options(**options).remote(), timeout=300)
        return time.perf_counter() - started

    out["env_vars_first_task_s"] = first({"runtime_env": {"env_vars": {"ZQ": "1"}}})
    pip = {"pip": {"packages": [wheel], "pip_install_options": ["--no-index"]}}
    out["pip_first_task_s"] = first({"runtime_env": pip})
    warm = []
    for _ in range(20):
        started = time.perf_counter()
        ray.get(probe.options(runtime_env=pip).remote())
        warm.append(time.perf_counter() - started)
    out["env_task_warm_ms"] = statistics.median(warm) * 1000
    ray.shutdown()
    return out


def _inputs(root: str) -> tuple[str, str]:
    """A wheel of a one-module package, and a working dir of 200 files of 100 KiB."""
    project = os.path.join(root, "pkg")
    os.makedirs(os.path.join(project, "zq_bench_pkg"))
    with open(os.path.join(project, "pyproject.toml"), "w") as f:
        f.write('[build-system]\nrequires = ["setuptools>=70.1"]\n'
                'build-backend = "setuptools.build_meta"\n'
                '[project]\nname = "zq-bench-pkg"\nversion = "1.0"\n')
    with open(os.path.join(project, "zq_bench_pkg", "__init__.py"), "w") as f:
        f.write("VALUE = 1\n")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
                    "--no-build-isolation", "-w", os.path.join(root, "dist"), project],
                   check=True, capture_output=True)
    wheel = os.path.join(root, "dist", os.listdir(os.path.join(root, "dist"))[0])
    workdir = os.path.join(root, "workdir")
    os.makedirs(workdir)
    for i in range(200):
        with open(os.path.join(workdir, f"f{i}.bin"), "wb") as f:
            f.write(os.urandom(100 * 1024))
    return wheel, workdir


def _run(python: str, backend: str, wheel: str, workdir: str) -> dict:
    cache = tempfile.mkdtemp(prefix="zactor-bench-env-")
    env = {**os.environ, "ZACTOR_RUNTIME_ENV_DIR": cache}
    try:
        out = subprocess.run([python, __file__, "--child", backend, wheel, workdir],
                             capture_output=True, text=True, timeout=900, env=env)
    finally:
        subprocess.run(["rm", "-rf", cache], check=False)
    if out.returncode != 0:
        return {"error": (out.stderr or out.stdout).strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray-python", default=None)
    parser.add_argument("--child", nargs=3, metavar=("BACKEND", "WHEEL", "WORKDIR"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure(*args.child)))
        return
    with tempfile.TemporaryDirectory(prefix="zactor-bench-inputs-") as root:
        wheel, workdir = _inputs(root)
        results = {"zactor": _run(sys.executable, "zactor", wheel, workdir)}
        if args.ray_python:
            results["ray"] = _run(args.ray_python, "ray", wheel, workdir)
    print(f"\nRuntime environments, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}\n")
    print("| row | zactor | ray | ray / zactor |")
    print("|---|---|---|---|")
    for name, what in ROWS.items():
        z = results["zactor"].get(name)
        r = results.get("ray", {}).get(name)
        cells = [f"{v:.3f}" if isinstance(v, float) else "-" for v in (z, r)]
        ratio = f"{r / z:.1f}x" if isinstance(z, float) and isinstance(r, float) and z else "-"
        print(f"| {name} ({what}) | {cells[0]} | {cells[1]} | {ratio} |")
    for backend, rows in results.items():
        if "error" in rows:
            print(f"{backend} failed: {rows['error']}")


if __name__ == "__main__":
    main()
