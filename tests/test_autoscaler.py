"""The autoscaler with the local provider: a job needing 8 CPUs on a 2-CPU head grows the
cluster to fit, finishes right, and the cluster shrinks back after the idle timeout;
min_workers; launches that fail (the provider raises, or the node never joins) are retried
with back-off and reported in ``zactor status``, never a hang."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import textwrap

import psutil
import pytest
from remote_helpers import wait_until
from zactor_cli.cluster import render_status

import zactor
from zactor.autoscaler import _config
from zactor.job_submission import JobStatus, JobSubmissionClient
from zactor.testing import Cluster

pytestmark = pytest.mark.timeout(180)
TESTS = os.path.dirname(os.path.abspath(__file__))

JOB = textwrap.dedent("""
    import os, sys, time, zactor
    zactor.init()

    @zactor.remote(num_cpus=2)
    def part(i, folder):
        open(os.path.join(folder, str(i)), "w").close()
        deadline = time.time() + 120
        while len(os.listdir(folder)) < 4:  # all four run at once: 8 CPUs
            if time.time() > deadline:
                return None
            time.sleep(0.05)
        return zactor.get_runtime_context().get_node_id()

    nodes = zactor.get([part.remote(i, sys.argv[1]) for i in range(4)])
    print("parts on", len(set(nodes)), "nodes; all ran:", None not in nodes, flush=True)
""")


def write_config(path, min_workers: int = 0, **provider) -> str:
    # a launch that fails is retried well within the tasks' deadline
    provider = provider or {"type": "local", "node_launch_timeout_s": 30}
    lines = "\n".join(f"  {k}: {v}" for k, v in provider.items())
    path.write_text(textwrap.dedent("""\
        cluster_name: test
        max_workers: 4
        idle_timeout_minutes: 0.05
        provider:
        """) + lines + textwrap.dedent("""
        available_node_types:
          cpu2:
            resources: {CPU: 2}
            min_workers: MIN
            max_workers: 3
        """).replace("MIN", str(min_workers)))
    return str(path)


def run_job_needing_8_cpus(cluster, tmp_path, monkeypatch) -> None:
    """Run JOB as a job on ``cluster`` (a 2-CPU head): it succeeds once the cluster has
    grown to four nodes."""
    monkeypatch.setenv("ZACTOR_CLUSTER_KEY_FILE", cluster._env["ZACTOR_CLUSTER_KEY_FILE"])
    (tmp_path / "job.py").write_text(JOB)
    (tmp_path / "barrier").mkdir()
    with contextlib.closing(JobSubmissionClient(cluster.address)) as client:
        job_id = client.submit_job(entrypoint=f"python job.py {tmp_path / 'barrier'}",
                                   runtime_env={"working_dir": str(tmp_path)})
        logs = "".join(client.follow_logs(job_id))
        assert client.get_job_status(job_id) == JobStatus.SUCCEEDED, logs
    assert "parts on 4 nodes; all ran: True" in logs  # the head and three new nodes


def status() -> dict:
    return zactor._api.core().request("cluster_status")


def alive_nodes() -> int:
    return sum(n["alive"] for n in status()["nodes"])


def test_a_job_grows_the_cluster_and_it_shrinks_back(tmp_path, monkeypatch):
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "autoscaling_config": write_config(tmp_path / "scale.yaml")})
    try:
        cluster.connect()
        run_job_needing_8_cpus(cluster, tmp_path, monkeypatch)
        report = status()["autoscaler"]
        assert any("launching 3 node(s) of type cpu2" in e["event"] for e in report["events"])
        wait_until(lambda: alive_nodes() == 1, timeout=60, message="the cluster shrunk back")
        text = render_status(status())
        assert "Autoscaler" in text and "removed" in text and "idle for" in text
    finally:
        zactor.shutdown()
        cluster.shutdown()


def test_min_workers_are_kept_and_failed_launches_back_off(tmp_path):
    config = write_config(tmp_path / "scale.yaml", min_workers=1, type="external",
                          module="scaling_providers.FailingProvider", launch_backoff_s=0.5)
    cluster = Cluster(initialize_head=True, env={"PYTHONPATH": TESTS},
                      head_node_args={"num_cpus": 1, "autoscaling_config": config})
    try:
        cluster.connect()
        wait_until(lambda: status()["autoscaler"]["failed_launches"] >= 3, timeout=30,
                   message="three failed launches")
        report = status()["autoscaler"]
        failures = report["recent_failures"]
        assert "no capacity" in failures[0]["error"]
        # Backing off: each wait twice the last, and no retry before its wait is over.
        delays = [float(re.search(r"retrying in ([0-9.]+) s", e["event"]).group(1))
                  for e in report["events"] if "retrying in" in e["event"]]
        assert delays[:3] == [0.5, 1.0, 2.0]
        for before, after, delay in zip(failures, failures[1:], delays, strict=False):
            assert after["time"] - before["time"] >= delay - 0.05
        assert "failed launches: " in render_status(status())
        assert zactor.get(zactor.remote(lambda: 1).remote(), timeout=10) == 1  # no hang
    finally:
        zactor.shutdown()
        cluster.shutdown()


def test_a_node_that_never_joins_is_stopped_and_retried(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    config = write_config(tmp_path / "scale.yaml", type="external",
                          module="scaling_providers.SilentProvider", pid_dir=str(pids),
                          node_launch_timeout_s=1, launch_backoff_s=0.5)
    cluster = Cluster(initialize_head=True, env={"PYTHONPATH": TESTS},
                      head_node_args={"num_cpus": 1, "autoscaling_config": config})
    try:
        cluster.connect()

        @zactor.remote(num_cpus=2)
        def needs_a_bigger_node():
            return "ran"

        with pytest.warns(UserWarning, match="stays pending until a node"):
            ref = needs_a_bigger_node.remote()
        wait_until(lambda: status()["autoscaler"]["failed_launches"] >= 2, timeout=30,
                   message="two launches given up on")
        assert "did not join within 1 s" in status()["autoscaler"]["recent_failures"][0][
            "error"]
        started = [int(p) for p in os.listdir(pids)]
        assert len(started) >= 2
        wait_until(lambda: sum(psutil.pid_exists(p) and psutil.Process(p).status() !=
                               psutil.STATUS_ZOMBIE for p in started) <= 1, timeout=20,
                   message="the nodes given up on stopped")
        ready, _ = zactor.wait([ref], timeout=0.1)
        assert not ready  # it waits for a node, while launches go on being retried
        zactor.cancel(ref)
    finally:
        zactor.shutdown()
        cluster.shutdown()
    wait_until(lambda: not any(psutil.pid_exists(int(p)) and psutil.Process(int(p)).status()
                               != psutil.STATUS_ZOMBIE for p in os.listdir(pids)),
               timeout=20, message="no launched process left after the cluster stopped")


@pytest.mark.parametrize("provider, output", [
    ("ExitingProvider", None),  # an external provider whose node exits at once
    ("CrashingLocalProvider", "agent exploded: no such device"),  # the local provider's log
])
def test_a_node_that_ends_before_joining_fails_at_once(tmp_path, provider, output):
    config = write_config(tmp_path / "scale.yaml", min_workers=1, type="external",
                          module=f"scaling_providers.{provider}",
                          node_launch_timeout_s=600, launch_backoff_s=0.5)
    cluster = Cluster(initialize_head=True, env={"PYTHONPATH": TESTS},
                      head_node_args={"num_cpus": 1, "autoscaling_config": config})
    try:
        cluster.connect()
        wait_until(lambda: status()["autoscaler"]["failed_launches"] >= 1, timeout=20,
                   message="the launch given up on long before its 600 s timeout")
        error = status()["autoscaler"]["recent_failures"][0]["error"]
        assert "ended before it joined" in error
        if output is not None:  # and it says how its agent ended
            assert f"its output ends:\n{output}" in error
    finally:
        zactor.shutdown()
        cluster.shutdown()


def test_bad_configs_are_refused_clearly():
    good = {"available_node_types": {"a": {"resources": {"CPU": 1}}}}
    assert _config.validate(good)["idle_timeout_s"] == 300.0
    for bad, words in [
        ({}, "available_node_types"),
        ({**good, "max_worker": 1}, "unknown"),
        ({"available_node_types": {"a": {"resources": {}}}}, "CPU"),
        ({"available_node_types": {"a": {"resources": {"CPU": 1}, "min_workers": 3,
                                         "max_workers": 1}}}, "min_workers exceeds"),
        ({**good, "upscaling_speed": -1}, "upscaling_speed"),
    ]:
        with pytest.raises(ValueError, match=words):
            _config.validate(bad)


def test_the_readme_example_grows_the_cluster():
    config = os.path.join(os.path.dirname(TESTS), "examples", "autoscaling", "local.yaml")
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 2, "autoscaling_config": config})
    try:
        out = subprocess.run([sys.executable, os.path.join(os.path.dirname(TESTS), "examples",
                                                           "autoscaling", "grow.py"),
                              cluster.address], env=cluster._env, capture_output=True,
                             text=True, timeout=150)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "ran at once on 4 nodes" in out.stdout and "OK" in out.stdout
    finally:
        cluster.shutdown()


def test_a_hung_node_the_local_provider_kills_leaves_no_files():
    import signal as signals

    from zactor import _registry
    from zactor.autoscaler._local import LocalNodeProvider
    from zactor.autoscaler.node_provider import Launch

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    provider = LocalNodeProvider({}, "test")
    try:
        command = [sys.executable, "-m", "zactor_cli.main", "worker", "--address",
                   cluster.address, "--num-cpus", "1"]
        node_id = provider.create_node(Launch("hung", "t", {"CPU": 1}, {}, command,
                                              dict(cluster._env)))
        pid = int(node_id.split("-")[1])
        record = wait_until(lambda: _registry.record_of(_registry.NODES, pid), timeout=30,
                            message="the agent's record")
        wait_until(lambda: os.path.isdir(record["shm_dir"]), message="its shm directory")
        os.kill(pid, signals.SIGSTOP)  # it cannot stop by itself: it is killed
        provider.terminate_node(node_id)
        assert not os.path.exists(record["shm_dir"])
        assert not os.path.exists(record["session_dir"])
        assert _registry.record_of(_registry.NODES, pid) is None
    finally:
        provider.shutdown()  # and the directory of its agents' logs
        cluster.shutdown()
    assert not os.path.exists(provider.log_dir)
