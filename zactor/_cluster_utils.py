"""A cluster of real processes on this machine, for tests: ``zactor.testing.Cluster`` (and, for
the import switch, ``zactor.cluster_utils.Cluster``), the counterpart of Ray's
``ray.cluster_utils.Cluster``.

Each node is what ``zactor head`` / ``zactor worker`` start — a head process, or a node agent
process of its own with its workers and its own object store — connected over TCP on
loopback, encrypted with a key made for this cluster. As in Ray, the driver that
:meth:`Cluster.connect` connects sits on the head node.

Example::

    from zactor.testing import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=2)
    cluster.connect()
    ...
    cluster.remove_node(worker, allow_graceful=False)   # SIGKILL: the node dies
    cluster.shutdown()
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from zactor import _process, _registry

_NODE_ARGS = {"num_cpus", "num_gpus", "resources", "object_store_memory"}


class ClusterNode:
    """A node of a :class:`Cluster`: its process and its id."""

    def __init__(self, proc: subprocess.Popen, node_id: str, is_head: bool,
                 args: dict) -> None:
        self.process = proc
        self.node_id = node_id  # hex, as zactor.nodes() gives it
        self.unique_id = node_id
        self.is_head = is_head
        self.args = args

    @property
    def pid(self) -> int:
        return self.process.pid

    def __repr__(self) -> str:
        return f"ClusterNode({'head' if self.is_head else 'worker'} {self.node_id[:12]})"


class Cluster:
    """Start a head with ``initialize_head`` (its node made from ``head_node_args``), connect
    this process as its driver with ``connect``, add and remove nodes."""

    def __init__(self, initialize_head: bool = False, connect: bool = False,
                 head_node_args: dict | None = None, shutdown_at_exit: bool = True,
                 env: dict | None = None, insecure: bool = False) -> None:
        """``env``: extra environment of the cluster's processes (``ZACTOR_*`` tunables);
        ``insecure``: no encryption (zactor head --insecure), to measure what it costs."""
        self.head_node: ClusterNode | None = None
        self.worker_nodes: set[ClusterNode] = set()
        self._state_dir = tempfile.mkdtemp(prefix="zactor-cluster-")
        self._env = {**os.environ, **(env or {})}
        self._env.pop("ZACTOR_CLUSTER_KEY", None)
        self._env["ZACTOR_CLUSTER_KEY_FILE"] = os.path.join(self._state_dir, "cluster.key")
        self.insecure = insecure
        if insecure:
            self._env["ZACTOR_CLUSTER_KEY"] = "insecure"
        self._address: str | None = None
        self._ipc: str | None = None
        self._observer = None
        self.connected = False
        if shutdown_at_exit:
            atexit.register(self.shutdown)
        if initialize_head:
            self.add_node(**(head_node_args or {}))
            if connect:
                self.connect()
        elif connect:
            raise ValueError("connect=True needs initialize_head=True")

    # -- addresses ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The head's ``HOST:PORT`` (what ``zactor.init(address=...)`` takes)."""
        if self._address is None:
            raise RuntimeError("the cluster has no head yet: add_node() first")
        return self._address[len("tcp://"):]

    @property
    def gcs_address(self) -> str:  # Ray's name for the same
        return self.address

    # -- nodes -------------------------------------------------------------------------------

    def add_node(self, wait: bool = True, **node_args: Any) -> ClusterNode:
        """Start a node: the head, the first time; a worker node after that. Takes
        ``num_cpus`` (default 1), ``num_gpus``, ``resources``, ``object_store_memory``."""
        unknown = set(node_args) - _NODE_ARGS - {"env_vars", "autoscaling_config"}
        if unknown:
            raise TypeError(f"add_node() got unsupported argument(s): {sorted(unknown)}")
        argv = ["--num-cpus", str(node_args.get("num_cpus", 1)),
                "--num-gpus", str(node_args.get("num_gpus", 0))]
        if node_args.get("resources"):
            argv += ["--resources", json.dumps(node_args["resources"])]
        if node_args.get("object_store_memory"):
            argv += ["--object-store-memory", str(int(node_args["object_store_memory"]))]
        env = {**self._env, **(node_args.get("env_vars") or {})}
        if self.head_node is None:
            ready = os.path.join(self._state_dir, "head.ready")
            extra = ["--insecure"] if self.insecure else []
            if node_args.get("autoscaling_config"):  # (the head only)
                extra += ["--autoscaling-config", node_args["autoscaling_config"]]
            proc = self._spawn(["head", "--port", "0", "--state-dir", self._state_dir, *argv,
                                *extra], env, "head.log")
            self._wait_for(lambda: os.path.exists(ready), proc, "the head to start")
            record = self._record(_registry.HEADS, proc)
            self._address, self._ipc = record["address"], record["ipc"]
            node = ClusterNode(proc, self._node_ids()[0], True, node_args)
            node.dirs = [record.get("session_dir"), record.get("shm_dir")]
            node.argv = ["head", "--port", "0", "--state-dir", self._state_dir, *argv, *extra]
            self.head_node = node
            return node
        proc = self._spawn(["worker", "--address", self._address, *argv], env,
                           f"node-{len(self.worker_nodes) + 1}.log")
        record = self._wait_for(lambda: self._record(_registry.NODES, proc), proc,
                                "the node agent to start")
        node = ClusterNode(proc, record["node_id"], False, node_args)
        node.dirs = [record.get("session_dir"), record.get("shm_dir")]
        self.worker_nodes.add(node)
        if wait:
            self._wait_alive(node.node_id, 30.0)
        return node

    def remove_node(self, node: ClusterNode, allow_graceful: bool = True) -> None:
        """Stop a node: gracefully (SIGTERM: its workers stop, its objects go), or not
        (SIGKILL to the agent and all its workers at once: the node dies, and the head finds
        out by its missing heartbeats)."""
        proc = node.process
        if proc.poll() is None:
            if allow_graceful:
                proc.terminate()
            else:
                _process.kill(-proc.pid, signal.SIGKILL)  # its process group: agent, workers
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                _process.kill(-proc.pid, signal.SIGKILL)
                proc.wait(10)
        for path in getattr(node, "dirs", ()):
            if path:  # what a killed node could not remove itself
                _process.remove_tree(path)
        if node is self.head_node:
            self.head_node = None
            self._close_observer()
        else:
            self.worker_nodes.discard(node)

    def kill_head(self) -> None:
        """SIGKILL the head, and with it the head node's workers (the node agents of the
        other nodes live on, waiting for a head)."""
        node = self.head_node
        if node is None:
            raise RuntimeError("the cluster has no head")
        self._close_observer()
        _process.kill(-node.process.pid, signal.SIGKILL)
        node.process.wait(30)
        for path in node.dirs:  # what the killed head could not remove itself
            if path:
                _process.remove_tree(path)

    def restart_head(self) -> ClusterNode:
        """Start the head again with the same state directory (same port, same key, its
        control state): after :meth:`kill_head`, or a head that died by itself."""
        node = self.head_node
        if node is None:
            raise RuntimeError("the cluster never had a head")
        if node.process.poll() is None:
            self.kill_head()
        ready = os.path.join(self._state_dir, "head.ready")
        if os.path.exists(ready):
            os.unlink(ready)
        proc = self._spawn(node.argv, self._env, "head.log")
        self._wait_for(lambda: os.path.exists(ready), proc, "the head to start again")
        record = self._wait_for(lambda: self._record(_registry.HEADS, proc), proc,
                                "the head's record")
        node.dirs = [record.get("session_dir"), record.get("shm_dir")]
        node.process = proc
        node.node_id = node.unique_id = self._node_ids()[0]
        return node

    def list_all_nodes(self) -> list[ClusterNode]:
        return ([self.head_node] if self.head_node else []) + sorted(
            self.worker_nodes, key=lambda n: n.pid)

    def wait_for_nodes(self, timeout: float = 30) -> None:
        """Wait until the head counts every node of this cluster alive."""
        deadline = time.monotonic() + timeout
        for node in self.list_all_nodes():
            self._wait_alive(node.node_id, max(0.0, deadline - time.monotonic()))

    # -- the driver --------------------------------------------------------------------------

    def connect(self, namespace: str | None = None) -> dict:
        """Connect this process as a driver, on the head node (``zactor.init``)."""
        import zactor

        if self._ipc is None:
            raise RuntimeError("the cluster has no head yet: add_node() first")
        info = zactor.init(address=self._ipc, namespace=namespace)
        self.connected = True
        return info

    def shutdown(self) -> None:
        """Disconnect the driver (if this cluster connected it) and stop every node."""
        import zactor

        if self.connected and zactor.is_initialized():
            zactor.shutdown()
        self.connected = False
        self._close_observer()
        for node in list(self.worker_nodes):
            self.remove_node(node, allow_graceful=True)
        if self.head_node is not None:
            self.remove_node(self.head_node, allow_graceful=True)
        _process.remove_tree(self._state_dir)

    # -- helpers -----------------------------------------------------------------------------

    def _spawn(self, argv: list[str], env: dict, log_name: str) -> subprocess.Popen:
        log = open(os.path.join(self._state_dir, log_name), "ab")  # noqa: SIM115
        try:
            return subprocess.Popen([sys.executable, "-m", "zactor_cli.main", *argv], env=env,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True)
        finally:
            log.close()

    def _wait_for(self, check, proc: subprocess.Popen, what: str, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if proc.poll() is not None:
                raise RuntimeError(f"waiting for {what}: it exited with code {proc.returncode}"
                                   f"; its log is in {self._state_dir}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {what}")
            time.sleep(0.02)

    @staticmethod
    def _record(kind: str, proc: subprocess.Popen) -> dict | None:
        for record in _registry.live(kind):
            if record.get("pid") == proc.pid:
                return record
        return None

    def _ask(self, what: str) -> Any:
        if self._observer is None:
            from zactor._client import CoreClient

            self._observer = CoreClient(self._ipc, "observer", connect_timeout=30.0)
        return self._observer.request(what)

    def _close_observer(self) -> None:
        if self._observer is not None:
            self._observer.close(goodbye=(False,))
            self._observer = None

    def _node_ids(self) -> list[str]:
        """Node ids, the head's first."""
        nodes = sorted(self._ask("nodes"), key=lambda n: not n.get("IsHead"))
        return [n["NodeID"] for n in nodes]

    def _wait_alive(self, node_id: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if any(n["NodeID"] == node_id and n["Alive"] for n in self._ask("nodes")):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {node_id[:12]} did not join within {timeout:.0f} s")
            time.sleep(0.02)
