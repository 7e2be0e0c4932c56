"""The Slurm node provider: each node agent is a Slurm job (``sbatch``), stopped with
``scancel``, for clusters whose machines are handed out by Slurm.

Provider settings (``provider:`` in the autoscaling config): ``partition``, ``account``,
``sbatch_options`` (a list of extra ``sbatch`` arguments), ``log_dir`` (where each job's
output goes: ``slurm-<jobid>.log``). A node type's ``node_config`` may add its own
``sbatch_options``. Each job asks for one node with the type's CPUs (``--cpus-per-task``)
and GPUs (``--gres=gpu:N``). The agent finds the head at its TCP address and reads the
cluster key from the head's key file, so that file must be on a file system the Slurm
nodes share (as the state directory usually is, under $HOME).
"""

from __future__ import annotations

import os
import shlex
import subprocess

from zactor.autoscaler.node_provider import Launch, NodeProvider

#: Seconds a Slurm command may take before it counts as failed.
_COMMAND_TIMEOUT_S = 60.0
_ENDED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
          "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


class SlurmNodeProvider(NodeProvider):
    def __init__(self, provider_config: dict, cluster_name: str) -> None:
        super().__init__(provider_config, cluster_name)
        self.jobs: set[str] = set()

    def _run(self, argv: list[str], env: dict | None = None) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, env=env,
                                 timeout=_COMMAND_TIMEOUT_S)
        except FileNotFoundError:
            raise RuntimeError(f"{argv[0]} not found: is Slurm installed here?") from None
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{argv[0]} took longer than {_COMMAND_TIMEOUT_S:g} s") \
                from None
        if out.returncode != 0:
            raise RuntimeError(f"{shlex.join(argv[:2])} failed ({out.returncode}): "
                               f"{(out.stderr or out.stdout).strip()}")
        return out.stdout

    def create_node(self, launch: Launch) -> str:
        config = self.provider_config
        cpus = int(launch.resources.get("CPU", 1))
        argv = ["sbatch", "--parsable", f"--job-name=zactor-{launch.tag}", "--nodes=1",
                "--ntasks=1", f"--cpus-per-task={cpus}"]
        gpus = int(launch.resources.get("GPU", 0))
        if gpus:
            argv.append(f"--gres=gpu:{gpus}")
        if config.get("log_dir"):
            argv.append(f"--output={os.path.join(config['log_dir'], 'slurm-%j.log')}")
        if config.get("partition"):
            argv.append(f"--partition={config['partition']}")
        if config.get("account"):
            argv.append(f"--account={config['account']}")
        argv += [str(o) for o in config.get("sbatch_options") or ()]
        argv += [str(o) for o in launch.node_config.get("sbatch_options") or ()]
        exports = ",".join(f"{k}={v}" for k, v in launch.env.items())
        argv += [f"--export=ALL,{exports}", "--wrap", "exec " + shlex.join(launch.command)]
        job_id = self._run(argv, env={**os.environ, **launch.env}).strip().split(";")[0]
        if not job_id.isdigit():
            raise RuntimeError(f"sbatch printed no job id: {job_id!r}")
        self.jobs.add(job_id)
        return job_id

    def log_tail(self, node_id: str, lines: int = 20) -> str:
        log_dir = self.provider_config.get("log_dir")
        if not log_dir:
            return ""
        try:
            with open(os.path.join(log_dir, f"slurm-{node_id}.log"), errors="replace") as f:
                return "\n".join(f.read().strip().splitlines()[-lines:])
        except OSError:
            return ""

    def terminate_node(self, node_id: str) -> None:
        self.jobs.discard(node_id)
        self._run(["scancel", node_id])

    def non_terminated_nodes(self) -> list[str]:
        if not self.jobs:
            return []
        out = self._run(["squeue", "-h", "--me", "-o", "%i %T"])
        alive = {line.split()[0] for line in out.splitlines()
                 if len(line.split()) == 2 and line.split()[1] not in _ENDED}
        return sorted(alive & self.jobs)

    def shutdown(self) -> None:
        if self.jobs:
            self._run(["scancel", *sorted(self.jobs)])
            self.jobs.clear()
