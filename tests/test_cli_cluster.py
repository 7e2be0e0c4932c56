"""The README's "Run a cluster" section, command for command: ``zactor head --daemon``, two
``zactor worker --address ... --daemon``, the example driver, the job submitted from another
directory (its command read from the README itself); then ``zactor status`` and
``zactor stop``. Isolated from any other cluster of this user by its own HOME, port and
socket root (where the pid files live)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import psutil
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZACTOR = os.path.join(os.path.dirname(sys.executable), "zactor")


@pytest.fixture
def env(cli_env):
    return cli_env


def zactor(env, *args, timeout=120) -> str:
    out = subprocess.run([ZACTOR, *args], env=env, capture_output=True, text=True,
                         timeout=timeout, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def readme_job_command() -> str:
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    section = text[text.index("**A job from another directory.**"):]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_the_readme_cluster_in_four_commands(env):
    port = env["ZACTOR_PORT"]
    address = f"tcp://127.0.0.1:{port}"
    text = zactor(env, "head", "--daemon")
    assert f"listening on {address}" in text
    key = os.path.join(env["HOME"], ".zactor", f"head-{port}", "cluster.key")
    assert key in text and os.stat(key).st_mode & 0o777 == 0o600
    assert f"zactor worker --address {address}" in text
    for _ in range(2):
        assert "runs in the background" in zactor(env, "worker", "--address", address,
                                                  "--daemon")
    out = subprocess.run([sys.executable, "examples/cluster_demo.py", address], env=env,
                         capture_output=True, text=True, timeout=180, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 nodes" in out.stdout and out.stdout.rstrip().endswith("OK")
    assert out.stdout.count("tasks on ") == 3  # SPREAD used every node

    job = subprocess.run(["bash", "-c", readme_job_command()], capture_output=True, text=True,
                         timeout=300, cwd=REPO,
                         env={**env, "PATH": os.path.dirname(ZACTOR) + ":" + env["PATH"]})
    assert job.returncode == 0, job.stdout + job.stderr
    assert "Hello from greeter 1.0: the sum of squares is 285 (tasks saw greeter 1.0)" \
        in job.stdout
    assert "runtime_env: setting up the job's environment" in job.stdout
    assert "succeeded" in job.stderr

    status = zactor(env, "status")
    assert status.count("alive") == 3 and "Encrypted and authenticated" in status

    records = os.path.join(env["ZACTOR_SOCKET_ROOT"], f"zactor-{os.getuid()}", "registry")
    pids = [int(name.split(".")[0]) for kind in ("heads", "nodes")
            for name in os.listdir(os.path.join(records, kind)) if name.endswith(".json")]
    assert len(pids) == 3
    stopped = zactor(env, "stop")
    assert stopped.count("stopped ") == 3
    for pid in pids:
        assert not psutil.pid_exists(pid) or \
            psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert "nothing to stop" in zactor(env, "stop")
