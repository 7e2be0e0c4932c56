"""The local node provider: node agents as processes on the head's machine, with the
resources each node type declares. The tests' and the demo's provider (and a way to carve
one large machine into several nodes)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
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
        self.logs: dict[str, str] = {}
        # Each agent's output goes to a file: log_dir's, kept, or a directory of our own,
        # removed with the provider. Either way a launch that fails says how it ended.
        self.log_dir = provider_config.get("log_dir")
        self._own_log_dir = None
        if not self.log_dir:
            self.log_dir = self._own_log_dir = tempfile.mkdtemp(prefix="zactor-nodes-")

    def create_node(self, launch: Launch) -> str:
        path = os.path.join(self.log_dir, f"node-{launch.tag}.log")
        with open(path, "ab") as log:
            proc = subprocess.Popen(launch.command, env={**os.environ, **launch.env},
                                    stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        node_id = f"local-{proc.pid}"
        self.procs[node_id] = proc
        self.logs[node_id] = path
        return node_id

    def log_tail(self, node_id: str, lines: int = 20) -> str:
        path = self.logs.get(node_id)
        try:
            with open(path, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 64 * 1024))
                text = f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def terminate_node(self, node_id: str) -> None:
        self.logs.pop(node_id, None)
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
        if self._own_log_dir:
            shutil.rmtree(self._own_log_dir, ignore_errors=True)
