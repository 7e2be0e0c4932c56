"""Node providers the autoscaler tests name (``provider: {type: external, module: ...}``):
one whose launches fail, one whose nodes never join. Imported by the head process."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess

from zactor.autoscaler import Launch, NodeProvider
from zactor.autoscaler._local import LocalNodeProvider


class FailingProvider(NodeProvider):
    """Every launch raises, as a cloud API out of quota would."""

    def create_node(self, launch: Launch) -> str:
        raise RuntimeError("no capacity in this test's imaginary cloud")

    def terminate_node(self, node_id: str) -> None:
        pass

    def non_terminated_nodes(self) -> list[str]:
        return []


class SilentProvider(NodeProvider):
    """Starts a process that never becomes a node agent (a machine that boots, but whose
    agent never reaches the head); writes each pid to ``pid_dir``."""

    def __init__(self, provider_config: dict, cluster_name: str) -> None:
        super().__init__(provider_config, cluster_name)
        self.procs: dict[str, subprocess.Popen] = {}

    def create_node(self, launch: Launch) -> str:
        proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
        with open(os.path.join(self.provider_config["pid_dir"], str(proc.pid)), "w"):
            pass
        self.procs[str(proc.pid)] = proc
        return str(proc.pid)

    def terminate_node(self, node_id: str) -> None:
        proc = self.procs.pop(node_id, None)
        if proc is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def non_terminated_nodes(self) -> list[str]:
        return list(self.procs)


class ExitingProvider(SilentProvider):
    """Starts a process that exits at once (an agent that crashes on start)."""

    def create_node(self, launch: Launch) -> str:
        proc = subprocess.Popen(["true"], start_new_session=True)
        self.procs[str(proc.pid)] = proc
        return str(proc.pid)

    def terminate_node(self, node_id: str) -> None:
        proc = self.procs.pop(node_id, None)
        if proc is not None:
            proc.wait()

    def non_terminated_nodes(self) -> list[str]:
        return [i for i, p in self.procs.items() if p.poll() is None]


class CrashingLocalProvider(LocalNodeProvider):
    """The local provider, starting an "agent" that prints a reason and exits at once."""

    def create_node(self, launch: Launch) -> str:
        crash = dataclasses.replace(launch, command=[
            "sh", "-c", "echo 'agent exploded: no such device' >&2; exit 3"])
        return super().create_node(crash)
