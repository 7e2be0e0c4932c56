"""Runtime environments on a real two-node cluster: a job's working dir and pip list reach
its driver and its tasks on every node (a node on another "machine" — its own cache — fetches
the packages from the head), a job whose environment cannot be set up fails saying why, and
a driver's ``init(runtime_env=...)`` applies to all its work. Through the real CLI (a
subprocess) and the SDK."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap

import pytest
from remote_helpers import wait_until
from wheels import OFFLINE, build_wheel

import zactor
from zactor.job_submission import JobStatus, JobSubmissionClient
from zactor.testing import Cluster

pytestmark = pytest.mark.timeout(240)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "examples", "job_demo")


@pytest.fixture(scope="module")
def cluster():
    other_cache = tempfile.mkdtemp(prefix="zactor-test-node-cache-")
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        c.worker = c.add_node(num_cpus=1, env_vars={"ZACTOR_RUNTIME_ENV_DIR": other_cache})
        c.other_cache = other_cache
        c.env = {**os.environ,
                 "ZACTOR_CLUSTER_KEY_FILE": os.path.join(c._state_dir, "cluster.key")}
        yield c
    finally:
        c.shutdown()
        import shutil

        shutil.rmtree(other_cache, ignore_errors=True)


@pytest.fixture
def client(cluster, monkeypatch):
    monkeypatch.setenv("ZACTOR_CLUSTER_KEY_FILE", cluster.env["ZACTOR_CLUSTER_KEY_FILE"])
    c = JobSubmissionClient(cluster.address)
    yield c
    c.close()


def submit(cluster, *args):
    return subprocess.run([sys.executable, "-m", "zactor_cli.main", "job", "submit",
                           "--address", cluster.address, *args], env=cluster.env,
                          capture_output=True, text=True, timeout=200, cwd="/tmp")


def test_the_demo_job_imports_its_working_dir_and_its_pip_package(cluster):
    out = submit(cluster, "--working-dir", DEMO, "--runtime-env",
                 os.path.join(DEMO, "runtime_env.yaml"), "--", "python", "job.py")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Hello from greeter 1.0: the sum of squares is 285 (tasks saw greeter 1.0)" \
        in out.stdout
    # the setup's progress (pip's steps too, unless an earlier test built the virtualenv)
    assert "runtime_env: setting up the job's environment" in out.stdout


PINNED = textwrap.dedent("""
    import zactor
    from zactor.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    zactor.init()
    other = [n["NodeID"] for n in zactor.nodes()
             if n["Alive"] and n["NodeID"] != zactor.get_runtime_context().get_node_id()]

    @zactor.remote
    def there():
        import os, zq_job_pkg, module_of_the_job
        return (zactor.get_runtime_context().get_node_id(), zq_job_pkg.WHO,
                module_of_the_job.VALUE, os.environ["ZQ_JOB_VAR"])

    node, who, value, var = zactor.get(there.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(other[0], soft=False)).remote())
    print("ran on", node == other[0], who, value, var, flush=True)
""")


def test_the_jobs_tasks_on_another_node_get_its_environment(cluster, client, tmp_path):
    wheel = build_wheel(str(tmp_path / "build"), "zq_job_pkg", "3.1", "WHO = 'pkg 3.1'\n")
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "pinned.py").write_text(PINNED)
    (wd / "module_of_the_job.py").write_text("VALUE = 'from the working dir'\n")
    job_id = client.submit_job(entrypoint="python pinned.py", runtime_env={
        "working_dir": str(wd), "env_vars": {"ZQ_JOB_VAR": "set"},
        "pip": {"packages": [wheel], "pip_install_options": OFFLINE}})
    logs = "".join(client.follow_logs(job_id))
    assert client.get_job_status(job_id) == JobStatus.SUCCEEDED, logs
    assert "ran on True pkg 3.1 from the working dir set" in logs
    # the other node fetched the working dir from the head into its own cache
    assert os.listdir(os.path.join(cluster.other_cache, "packages"))


def test_a_job_whose_environment_cannot_be_set_up_fails_saying_why(cluster, client):
    out = submit(cluster, "--runtime-env-json",
                 '{"pip": {"packages": ["zq-missing==1.0"], "pip_install_options": '
                 '["--no-index"]}}', "--", "python", "-c", "print('never runs')")
    assert out.returncode == 1 and "never runs" not in out.stdout
    assert "No matching distribution found for zq-missing==1.0" in out.stdout
    job = [j for j in client.list_jobs() if "never runs" in j.entrypoint][0]
    assert job.status == JobStatus.FAILED
    assert "RuntimeEnvSetupError" in job.message and "zq-missing" in job.message


def test_a_drivers_init_runtime_env_applies_to_its_work(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("ZACTOR_CLUSTER_KEY_FILE", cluster.env["ZACTOR_CLUSTER_KEY_FILE"])
    (tmp_path / "driver_module.py").write_text("NAME = 'driver module'\n")
    zactor.init(address=cluster.address, runtime_env={"working_dir": str(tmp_path),
                                                      "env_vars": {"ZQ_DRIVER": "yes"}})
    try:
        @zactor.remote
        def seen():
            import driver_module

            return driver_module.NAME, os.environ["ZQ_DRIVER"]

        assert zactor.get([seen.options(scheduling_strategy="SPREAD").remote()
                           for _ in range(4)]) == [("driver module", "yes")] * 4
    finally:
        zactor.shutdown()


GATED_SETUP = """
import os, time
from setuptools import setup

deadline = time.monotonic() + 90
while not os.path.exists({gate!r}) and time.monotonic() < deadline:  # the test opens it
    time.sleep(0.05)
setup(name="zq-gated", version="1.0", py_modules=["zq_gated"])
"""


def gated_job(client, tmp_path, name):
    wd = tmp_path / name
    (wd / "gated").mkdir(parents=True)
    gate = tmp_path / f"{name}.open"
    (wd / "gated" / "setup.py").write_text(GATED_SETUP.format(gate=str(gate)))
    (wd / "gated" / "zq_gated.py").write_text("OK = 'installed'\n")
    job_id = client.submit_job(
        entrypoint="python -c 'import zq_gated; print(zq_gated.OK)'",
        runtime_env={"working_dir": str(wd),
                     "pip": {"packages": ["./gated"], "pip_install_options": OFFLINE}})
    wait_until(lambda: "pip install ./gated" in client.get_job_logs(job_id), timeout=60,
               message="the job's setup to start")
    return job_id, gate


def test_a_job_is_pending_while_its_environment_is_set_up(client, tmp_path):
    job_id, gate = gated_job(client, tmp_path, "slow")
    info = client.get_job_info(job_id)
    assert info.status == JobStatus.PENDING and "runtime environment" in info.message
    gate.touch()
    wait_until(lambda: client.get_job_status(job_id).is_terminal(), timeout=90,
               message="the job to end")
    assert client.get_job_status(job_id) == JobStatus.SUCCEEDED
    assert "installed" in client.get_job_logs(job_id)


def test_stopping_a_job_during_its_setup_ends_pip_too(client, tmp_path):
    import psutil

    job_id, gate = gated_job(client, tmp_path, "stopped")
    pid = client.get_job_info(job_id).driver_pid

    def pip_runs() -> bool:  # the setup logs its pip command just before it starts pip
        group = [p for p in psutil.process_iter() if _pgid(p.pid) == pid]
        try:
            return any("pip" in " ".join(p.cmdline()) for p in group if p.is_running())
        except psutil.Error:
            return False

    wait_until(pip_runs, timeout=30, message="pip to run in the job's process group")
    group = [p for p in psutil.process_iter() if _pgid(p.pid) == pid]
    assert client.stop_job(job_id)
    wait_until(lambda: client.get_job_status(job_id) == JobStatus.STOPPED, timeout=30,
               message="the job to stop")
    wait_until(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                               for p in group), timeout=30, message="its processes to end")
    gate.touch()


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
