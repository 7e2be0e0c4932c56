"""The examples and the demo the README points to run and print their result."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args: list[str]) -> str:
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.timeout(150)
@pytest.mark.parametrize("example, expect", [
    ("wordcount.py", "OK"),
    ("quickstart.py", "counter"),
    ("montecarlo_pi.py", "pi"),
    ("supervised_pipeline.py", "OK"),
    ("placement_groups.py", "removed; OK"),
    ("gpus.py", "OK"),
    ("serve_app.py", "OK"),
])
def test_example_runs(example, expect):
    assert expect in _run([sys.executable, os.path.join("examples", example)])


@pytest.mark.timeout(150)
def test_zactor_demo_command_runs():
    out = _run([sys.executable, "-m", "zactor_cli.main", "demo", "--num-cpus", "2"])
    assert "OK" in out


def test_zactor_version_command():
    out = _run([sys.executable, "-m", "zactor_cli.main", "--version"])
    assert "zactor" in out
