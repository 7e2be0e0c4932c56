"""Jobs (``zactor job ...`` and zactor.job_submission): driver programs run on the cluster's
head machine, their logs, their end, their stop, and their survival of a head restart."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import pytest
from remote_helpers import wait_until

from zactor._client import HeadUnreachableError
from zactor.job_submission import JobStatus, JobSubmissionClient
from zactor.testing import Cluster

JOB = textwrap.dedent("""
    import os, time, zactor
    from helper_mod import answer
    zactor.init()

    @zactor.remote
    def double(x):
        return 2 * x

    print("answer", answer(), zactor.get([double.remote(i) for i in range(3)]),
          os.environ.get("GREETING"), flush=True)
""")

LONG_JOB = textwrap.dedent("""
    import sys, time, zactor
    zactor.init()

    @zactor.remote
    class Keeper:
        def ping(self):
            return "pong"

    @zactor.remote
    def forever():
        time.sleep(600)

    keeper = Keeper.options(name="job-keeper", namespace="jobs").remote()
    zactor.get(keeper.ping.remote())
    running = forever.remote()
    print("started", flush=True)
    time.sleep(600)
""")


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2},
                env={"ZACTOR_JOB_STOP_GRACE_S": "1"})
    c.env = {**os.environ,
             "ZACTOR_CLUSTER_KEY_FILE": os.path.join(c._state_dir, "cluster.key")}
    try:
        yield c
    finally:
        c.shutdown()


@pytest.fixture
def client(cluster, monkeypatch):
    monkeypatch.setenv("ZACTOR_CLUSTER_KEY_FILE", cluster.env["ZACTOR_CLUSTER_KEY_FILE"])
    c = JobSubmissionClient(cluster.address)
    yield c
    c.close()


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "job_script.py").write_text(JOB)
    (tmp_path / "helper_mod.py").write_text("def answer():\n    return 42\n")
    return tmp_path


def cli(cluster, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "zactor_cli.main", "job", *args,
                           "--address", cluster.address] if args[0] != "submit" else
                          [sys.executable, "-m", "zactor_cli.main", "job", "submit",
                           "--address", cluster.address, *args[1:]],
                          env=cluster.env, capture_output=True, text=True, timeout=timeout,
                          cwd="/")


def test_submit_follows_the_logs_and_exits_with_the_jobs_outcome(cluster, workdir):
    out = cli(cluster, "submit", "--working-dir", str(workdir), "--runtime-env-json",
              '{"env_vars": {"GREETING": "hello"}}', "--", "python", "job_script.py")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "answer 42 [0, 2, 4] hello" in out.stdout  # a module only its working dir has
    assert "succeeded" in out.stderr
    failed = cli(cluster, "submit", "--", "sh", "-c", "echo going down; exit 3")
    assert failed.returncode == 1 and "going down" in failed.stdout
    listed = cli(cluster, "list")
    assert "SUCCEEDED" in listed.stdout and "FAILED" in listed.stdout


def test_the_sdk(client, workdir):
    job_id = client.submit_job(entrypoint="python job_script.py",
                               runtime_env={"working_dir": str(workdir)},
                               submission_id="sdk-job", metadata={"who": "test"})
    assert job_id == "sdk-job"
    with pytest.raises(ValueError, match="already exists"):
        client.submit_job(entrypoint="true", submission_id="sdk-job")

    async def tail():
        return "".join([text async for text in client.tail_job_logs(job_id)])

    assert "answer 42" in asyncio.run(tail())
    info = client.get_job_info(job_id)
    assert info.status == JobStatus.SUCCEEDED and info.status.is_terminal()
    assert info.metadata == {"who": "test"} and info.driver_exit_code == 0
    assert "answer 42" in client.get_job_logs(job_id)
    assert job_id in [j.submission_id for j in client.list_jobs()]
    assert client.delete_job(job_id)
    with pytest.raises(ValueError, match="does not exist"):
        client.get_job_status(job_id)
    with pytest.raises(ValueError, match="entrypoint"):
        client.submit_job(entrypoint="  ")


def test_stop_ends_the_job_and_what_it_started(client, cluster, tmp_path):
    import zactor

    (tmp_path / "long.py").write_text(LONG_JOB)
    job_id = client.submit_job(entrypoint="python long.py",
                               runtime_env={"working_dir": str(tmp_path)})
    wait_until(lambda: "started" in client.get_job_logs(job_id), 60, message="the job")
    zactor.init(address=cluster.address)
    try:
        assert zactor.get(zactor.get_actor("job-keeper", namespace="jobs").ping.remote()) \
            == "pong"
        assert client.stop_job(job_id)
        wait_until(lambda: client.get_job_status(job_id) == JobStatus.STOPPED, 30,
                   message="the job to stop")

        def actor_gone():
            try:
                zactor.get_actor("job-keeper", namespace="jobs")
            except ValueError:
                return True
            return False
        wait_until(actor_gone, 30, message="the job's actor to go")
        wait_until(lambda: zactor.testing.head_stats()["tasks"] == 0, 30,
                   message="the job's task to be cancelled")
    finally:
        zactor.shutdown()
    assert not client.stop_job(job_id)  # it had ended


def test_no_key_no_jobs(cluster, monkeypatch):
    monkeypatch.delenv("ZACTOR_CLUSTER_KEY_FILE", raising=False)
    from zactor.comm.security import Credentials

    monkeypatch.setenv("ZACTOR_CLUSTER_KEY", Credentials.generate().text())
    with pytest.raises(HeadUnreachableError):
        JobSubmissionClient(cluster.address)._ask("job_list")


def test_jobs_survive_a_head_restart(client, cluster):
    job_id = client.submit_job(entrypoint="sleep 2; echo slept")
    done = client.submit_job(entrypoint="echo quick")
    wait_until(lambda: client.get_job_status(done).is_terminal(), 30, message="a quick job")
    client.close()
    cluster.kill_head()
    cluster.restart_head()
    again = JobSubmissionClient(cluster.address)
    try:
        jobs = {j.submission_id: j.status for j in again.list_jobs()}
        assert jobs[done] == JobStatus.SUCCEEDED
        assert jobs[job_id] in (JobStatus.RUNNING, JobStatus.SUCCEEDED)
        wait_until(lambda: again.get_job_status(job_id) == JobStatus.SUCCEEDED, 30,
                   message="the job that outlived its head to succeed")
        assert "slept" in again.get_job_logs(job_id)
    finally:
        again.close()


def test_entrypoint_cpus_are_held_while_the_job_runs(client, cluster, tmp_path):
    gate = tmp_path / "go"
    first = client.submit_job(entrypoint=f"while [ ! -e {gate} ]; do sleep 0.05; done",
                              entrypoint_num_cpus=2)
    wait_until(lambda: client.get_job_status(first) == JobStatus.RUNNING, 30,
               message="the first job to run")
    second = client.submit_job(entrypoint="echo second", entrypoint_num_cpus=1)
    # The head's node has 2 CPUs, all held by the first job: the second waits its turn.
    assert client.get_job_status(second) == JobStatus.PENDING
    gate.touch()
    wait_until(lambda: client.get_job_status(second) == JobStatus.SUCCEEDED, 30,
               message="the second job, once the CPUs were free")
    assert client.get_job_status(first) == JobStatus.SUCCEEDED
    with pytest.raises(ValueError, match="only 2 CPUs"):
        client.submit_job(entrypoint="true", entrypoint_num_cpus=3)


def test_a_stopped_cluster_takes_its_running_jobs_along(tmp_path, monkeypatch):
    import psutil

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        monkeypatch.setenv("ZACTOR_CLUSTER_KEY_FILE", os.path.join(c._state_dir,
                                                                    "cluster.key"))
        jobs = JobSubmissionClient(c.address)
        job_id = jobs.submit_job(entrypoint="sleep 600")
        wait_until(lambda: jobs.get_job_info(job_id).driver_pid, 30, message="the job")
        pid = jobs.get_job_info(job_id).driver_pid
        jobs.close()
    finally:
        c.shutdown()
    proc = psutil.Process(pid) if psutil.pid_exists(pid) else None
    assert proc is None or proc.status() == psutil.STATUS_ZOMBIE or \
        not proc.is_running(), "the job outlived its cluster"
