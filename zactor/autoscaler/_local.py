"""The local node provider: node agents as processes on the head's machine, with the
resources each node type declares. The tests' and the demo's provider (and a way to carve
one large machine into several nodes)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from zactor import _registry
from zactor.autoscaler.node_provider import Launch, NodeProvider

#: Seconds a node told to stop by the head gets to do so, then between SIGTERM and SIGKILL.
_OWN_EXIT_S = 3.0
_STOP_GRACE_S = 10.0


class LocalNodeProvider(NodeProvider):
    def __init__(self, provider_config: dict, cluster_name: str) -> None:
        super().__init__(provider_config, cluster_name)
        self.procs: dict[str, subprocess.Popen] = {}
        self.log_dir = provider_config.get("log_dir")

    def create_node(self, launch: Launch) -> str:
        log = subprocess.DEVNULL
        if self.log_dir:
            log = open(os.path.join(self.log_dir, f"node-{launch.tag}.log"), "ab")  # noqa: SIM115
        try:
            proc = subprocess.Popen(launch.command, env={**os.environ, **launch.env},
                                    stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        node_id = f"local-{proc.pid}"
        self.procs[node_id] = proc
        return node_id

    def terminate_node(self, node_id: str) -> None:
        proc = self.procs.pop(node_id, None)
        if proc is None:
            return
        record = _registry.record_of(_registry.NODES, proc.pid)  # the agent's own record
        try:
            proc.wait(_OWN_EXIT_S)  # a node the head let go stops by itself
        except subprocess.TimeoutExpired:
            pass
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + _STOP_GRACE_S
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the agent and any worker left behind
            except ProcessLookupError:
                pass
        proc.wait()
        if record is not None:  # a killed agent could not remove its directories
            _registry.clean_up(record)

    def non_terminated_nodes(self) -> list[str]:
        return [i for i, p in self.procs.items() if p.poll() is None]

    def shutdown(self) -> None:
        for node_id in list(self.procs):
            self.terminate_node(node_id)
