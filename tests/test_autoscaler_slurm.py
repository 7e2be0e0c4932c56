"""The autoscaler with the Slurm provider, against a real Slurm (tests/slurm.py): a job
needing 8 CPUs on a 2-CPU head grows the cluster with node agents run as Slurm jobs, finishes
right, and the cluster shrinks back (the jobs are cancelled) after the idle timeout. And the
sbatch script of examples/slurm/ starts a whole zactor cluster inside one allocation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from remote_helpers import wait_until
from slurm import SlurmCluster, missing
from test_autoscaler import run_job_needing_8_cpus

import zactor
from zactor.testing import Cluster

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(missing() is not None, reason=missing() or "")]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    with SlurmCluster(str(tmp_path_factory.mktemp("slurm"))) as cluster:
        yield cluster


def ours(slurm) -> list:
    return [j for j in slurm.jobs() if j[1].startswith("zactor-")]


def test_a_job_grows_the_cluster_with_slurm_jobs_and_it_shrinks_back(slurm, tmp_path,
                                                                      monkeypatch):
    logs = tmp_path / "slurm-logs"
    logs.mkdir()
    config = tmp_path / "scale.yaml"
    config.write_text(textwrap.dedent(f"""\
        cluster_name: slurmtest
        max_workers: 3
        idle_timeout_minutes: 0.05
        provider:
          type: slurm
          partition: test
          log_dir: {logs}
        available_node_types:
          cpu2:
            resources: {{CPU: 2}}
            max_workers: 3
        """))
    cluster = Cluster(initialize_head=True, env={"SLURM_CONF": slurm.conf},
                      head_node_args={"num_cpus": 2, "autoscaling_config": str(config)})
    try:
        cluster.connect()
        run_job_needing_8_cpus(cluster, tmp_path, monkeypatch)
        assert len(os.listdir(logs)) == 3  # three Slurm jobs ran node agents
        wait_until(lambda: not ours(slurm), timeout=90,
                   message="the Slurm jobs cancelled after the idle timeout")
        nodes = zactor._api.core().request("cluster_status")["nodes"]
        assert sum(n["alive"] for n in nodes) == 1
    finally:
        zactor.shutdown()
        cluster.shutdown()
    assert not ours(slurm)


def test_the_sbatch_script_runs_a_cluster_in_one_allocation(slurm, tmp_path):
    script = os.path.join(REPO, "examples", "slurm", "zactor-cluster.sbatch")
    out_file = tmp_path / "out.log"
    env = {**slurm.env, "ZACTOR_PYTHON": sys.executable,
           "ZACTOR_DRIVER": os.path.join(REPO, "examples", "slurm", "driver.py"),
           "ZACTOR_STATE_DIR": str(tmp_path / "state"), "ZACTOR_PORT": "0"}
    job = subprocess.run(["sbatch", "--parsable", "--wait", "--nodes=1",
                          f"--output={out_file}", script], env=env, capture_output=True,
                         text=True, timeout=180)
    text = out_file.read_text() if out_file.exists() else ""
    assert job.returncode == 0, job.stderr + text
    assert "sum of squares 285 on 1 node(s)" in text and "OK" in text
