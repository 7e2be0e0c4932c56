"""The benchmark script runs (quick sizes, zactor only), so `make bench` does not rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.timeout(180)
def test_microbench_quick_run_reports_every_requested_row(tmp_path):
    out = tmp_path / "bench.json"
    rows = ["startup_to_first_result_s", "idle_memory_mb", "tasks_sync_per_s",
            "actor_calls_async_per_s", "worker_death_detect_ms", "actor_restart_ms"]
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "microbench.py"), "--quick",
         "--only", ",".join(rows), "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert not data["errors"], data["errors"]
    for row in rows:
        assert data["results"][row] > 0, row


@pytest.mark.timeout(240)
def test_serve_bench_quick_run_reports_every_row(tmp_path):
    out = tmp_path / "serve.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "serve_bench.py"), "--quick",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=230)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert not data["errors"], data["errors"]
    for row in ("http_c1", "http_c8", "http_c32", "handle_seq", "handle_c32"):
        for metric in ("rps", "p50_ms", "p99_ms"):
            assert data["results"]["zactor"][f"{row}_{metric}"] > 0, (row, metric)


@pytest.mark.timeout(200)
def test_dashboard_bench_quick_run_reports_every_row(tmp_path):
    out = tmp_path / "dashboard.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "dashboard_bench.py"), "--quick",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    z = json.loads(out.read_text())["zactor"]
    assert z["init_s_with"] > 0 and z["init_s_without"] > 0 and z["first_page_s"] > 0
    assert z["warm_page_ms"] > 0 and z["open_page_cpu_pct"] >= 0
    assert z["idle_mb_with_minus_without"] < 20  # no process until someone looks
