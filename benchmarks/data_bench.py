#!/usr/bin/env python3
"""zactor.data against Ray Data 2.60, in the same run, on the same generated files.

Rows (each in a fresh child process of its backend's interpreter, on a local cluster of
this machine's CPUs; Ray only under ``--ray-python``, never imported here):

- parquet_rows_per_s: read_parquet -> map_batches(numpy) -> write_parquet over a data set
  of at least 2 GB on disk (generated once, by this script, into bench-results/data/);
- csv_rows_per_s: the same over CSV files;
- groupby_mean_s, sort_s: groupby(key).mean() and sort() on 10 M rows;
- actor_pool_rows_per_s: map_batches with a callable class in a pool of actors (the shape
  of batch inference), over the Parquet files.

Next to each: the peak memory of the backend's processes together (the sum of their PSS,
sampled every 0.2 s: shared memory counted once). The ratio column is zactor / Ray, higher is
better for rates and lower for costs and memory.

    python benchmarks/data_bench.py --ray-python .venv-ray/bin/python \
        --dask-python .venv-dask/bin/python
    python benchmarks/data_bench.py --quick      # 200 MB and 1 M rows, to try it out
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench-results" / "data"
ROWS = {  # name -> unit, kind
    "parquet_rows_per_s": ("rows/s", "rate"),
    "csv_rows_per_s": ("rows/s", "rate"),
    "groupby_mean_s": ("s", "cost"),
    "sort_s": ("s", "cost"),
    "actor_pool_rows_per_s": ("rows/s", "rate"),
}


def generate(folder: Path, target_bytes: int, files: int, csv: bool) -> int:
    """Parquet (or CSV) files of random rows, ``target_bytes`` on disk in all, made once."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    marker = folder.parent / f"{folder.name}.rows"  # beside it: readers take every file in it
    if marker.exists():
        return int(marker.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def write(i: int, rows: int, start: int) -> int:
        table = pa.table({"id": np.arange(start, start + rows), "a": rng.random(rows),
                          "b": rng.random(rows), "c": rng.random(rows),
                          "k": rng.integers(0, 100, rows)})
        path = folder / f"part-{i:04d}.{'csv' if csv else 'parquet'}"
        if csv:
            pacsv.write_csv(table, path)
        else:
            pq.write_table(table, path, compression="none", use_dictionary=False)
        return path.stat().st_size

    # a first file measures the bytes per row; the others are sized to reach the target
    probe = 100_000
    per_row = write(0, probe, 0) / probe
    rows_per_file = max(1, int((target_bytes - per_row * probe) / per_row / (files - 1)) + 1)
    total = probe
    for i in range(1, files):
        write(i, rows_per_file, total)
        total += rows_per_file
    marker.write_text(str(total))
    return total


class Scale:
    """Adds one to column a: the user's code in the actor pool row."""

    def __init__(self):
        self.offset = 1.0

    def __call__(self, batch):
        batch["a"] = batch["a"] + self.offset
        return batch


def _double(batch):
    batch["a"] = batch["a"] * 2 + 1
    return batch


def dask_child(paths: dict, sort_rows: int) -> dict:
    """The same rows with Dask DataFrame (its default, threaded scheduler), where Dask can
    express them: the reads, maps and writes, groupby().mean() and sort_values()."""
    import dask.dataframe as dd
    import numpy as np
    import pandas as pd

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        phase("parquet_rows_per_s")
        started = time.perf_counter()
        df = dd.read_parquet(paths["parquet"])
        df.assign(a=df["a"] * 2 + 1).to_parquet(os.path.join(tmp, "parquet"))
        out["parquet_rows_per_s"] = paths["parquet_rows"] / (time.perf_counter() - started)
        phase("csv_rows_per_s")
        started = time.perf_counter()
        df = dd.read_csv(os.path.join(paths["csv"], "*.csv"))
        df.assign(a=df["a"] * 2 + 1).to_csv(os.path.join(tmp, "csv", "*.csv"), index=False)
        out["csv_rows_per_s"] = paths["csv_rows"] / (time.perf_counter() - started)
    phase("groupby_mean_s")
    ids = np.arange(sort_rows)
    source = dd.from_pandas(pd.DataFrame({"k": ids % 100, "v": (ids * 7919) % 1000003}),
                            npartitions=max(2, 2 * (os.cpu_count() or 1))).persist()
    started = time.perf_counter()
    source.groupby("k")["v"].mean().compute()
    out["groupby_mean_s"] = time.perf_counter() - started
    phase("sort_s")
    started = time.perf_counter()
    source.sort_values("v").persist()
    out["sort_s"] = time.perf_counter() - started
    return out


def phase(name: str) -> None:
    """Tells the parent's memory sampler which row runs now (a file it reads)."""
    Path(os.environ["BENCH_PHASE_FILE"]).write_text(name)


def child(backend: str, paths: dict, sort_rows: int) -> dict:
    if backend == "dask":
        return dask_child(paths, sort_rows)
    if backend == "ray":
        import ray
        ray.init(include_dashboard=False, log_to_driver=False)
        from ray.data import DataContext
    else:
        import zactor as ray
        ray.init(log_to_driver=False)
        from zactor.data import DataContext
    DataContext.get_current().enable_progress_bars = False
    out = {}
    cpus = int(ray.cluster_resources()["CPU"])
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("parquet", "csv"):
            phase(f"{fmt}_rows_per_s")
            read = ray.data.read_parquet if fmt == "parquet" else ray.data.read_csv
            started = time.perf_counter()
            ds = read(paths[fmt]).map_batches(_double, batch_format="numpy", batch_size=None)
            getattr(ds, f"write_{'parquet' if fmt == 'parquet' else 'csv'}")(
                os.path.join(tmp, fmt))
            out[f"{fmt}_rows_per_s"] = paths[f"{fmt}_rows"] / (time.perf_counter() - started)
        phase("actor_pool_rows_per_s")
        started = time.perf_counter()
        (ray.data.read_parquet(paths["parquet"])
         .map_batches(Scale, concurrency=max(1, cpus - 1), batch_size=None)
         .write_parquet(os.path.join(tmp, "pool")))
        out["actor_pool_rows_per_s"] = paths["parquet_rows"] / (time.perf_counter() - started)
    phase("groupby_mean_s")
    source = ray.data.range(sort_rows).map_batches(
        lambda b: {"k": b["id"] % 100, "v": (b["id"] * 7919) % 1000003})
    source = source.materialize()
    started = time.perf_counter()
    source.groupby("k").mean("v").materialize()
    out["groupby_mean_s"] = time.perf_counter() - started
    phase("sort_s")
    started = time.perf_counter()
    source.sort("v").materialize()
    out["sort_s"] = time.perf_counter() - started
    ray.shutdown()
    return out


def _pss(pid: int) -> int:
    import psutil

    total = 0
    try:
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            try:
                total += p.memory_full_info().pss
            except (psutil.Error, AttributeError):
                pass
    except psutil.Error:
        pass
    return total


def run(python: str, backend: str, paths: dict, sort_rows: int) -> dict:
    phase_file = tempfile.NamedTemporaryFile(prefix="bench-phase-", delete=False)
    phase_file.close()
    proc = subprocess.Popen([python, __file__, "--child", backend, json.dumps(paths),
                             str(sort_rows)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT),
                                            "BENCH_PHASE_FILE": phase_file.name})
    peak = {"": 0}  # per row, and "" for the whole run

    def watch():
        while proc.poll() is None:
            now = _pss(proc.pid)
            current = Path(phase_file.name).read_text() or "start"
            peak[""] = max(peak[""], now)
            peak[current] = max(peak.get(current, 0), now)
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = proc.communicate(timeout=3600)
    watcher.join()
    os.unlink(phase_file.name)
    if proc.returncode != 0:
        return {"error": (err or out).strip().splitlines()[-1:]}
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_memory_mb"] = peak.pop("") / 2**20
    result["peak_memory_mb_by_row"] = {name: v / 2**20 for name, v in peak.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray-python", default=None)
    parser.add_argument("--dask-python", default=None,
                        help="interpreter with dask[dataframe], for a Dask column")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], json.loads(args.child[1]), int(args.child[2]))))
        return
    size = 200 << 20 if args.quick else 2100 << 20
    sort_rows = 1_000_000 if args.quick else 10_000_000
    tag = "quick" if args.quick else "full"
    paths = {"parquet": str(DATA / f"parquet-{tag}"), "csv": str(DATA / f"csv-{tag}")}
    print(f"generating (once) {size >> 20} MB of Parquet and of CSV in {DATA} ...",
          flush=True)
    paths["parquet_rows"] = generate(Path(paths["parquet"]), size, 32, csv=False)
    paths["csv_rows"] = generate(Path(paths["csv"]), size, 32, csv=True)
    results = {"zactor": run(sys.executable, "zactor", paths, sort_rows)}
    if args.ray_python:
        results["ray"] = run(args.ray_python, "ray", paths, sort_rows)
    if args.dask_python:
        results["dask"] = run(args.dask_python, "dask", paths, sort_rows)
    print(f"\nzactor.data vs Ray Data, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}, "
          f"{size >> 20} MB per format, {sort_rows:,} rows for groupby and sort\n")
    print("| row | zactor | Ray Data | zactor / Ray | Dask | zactor / Dask |")
    print("|---|---|---|---|---|---|")
    for name, (unit, _kind) in {**ROWS, "peak_memory_mb": ("MB", "cost")}.items():
        z = results["zactor"].get(name)
        r, d = results.get("ray", {}).get(name), results.get("dask", {}).get(name)
        cell = [f"{v:,.3g}" if isinstance(v, float) else "-" for v in (z, r, d)]
        ratios = [f"{z / o:.2f}x" if isinstance(z, float) and isinstance(o, float) and o
                  else "-" for o in (r, d)]
        print(f"| {name} ({unit}) | {cell[0]} | {cell[1]} | {ratios[0]} | {cell[2]} | "
              f"{ratios[1]} |")
    print("\npeak memory (PSS, MB) while each row ran:")
    for backend, rows in results.items():
        by_row = rows.get("peak_memory_mb_by_row", {})
        print(f"  {backend:7} " + ", ".join(f"{k} {v:,.0f}" for k, v in by_row.items()))
    for backend, rows in results.items():
        if "error" in rows:
            print(f"{backend} failed: {rows['error']}")
    out = ROOT / "bench-results" / "data-latest.json"
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
