"""A node agent as a process of its own (``zactor worker --address tcp://HEAD:PORT``).

    head ◄──DEALER (CURVE)── NodeDaemon ──► NodeAgent: zygote, workers, the node's store
      │   NODE_HELLO, HEARTBEAT,   │  ▲
      │   WORKER_EXIT, NODE_EVENT, │  └── ROUTER on the node's one TCP port: other nodes pull
      │   LOG_DATA                 │      this node's objects (TransferServer)
      └── SPAWN, KILL_WORKER,      │  Puller: this node pulls objects it needs from others
          STORE, RESTART, LOG_READ ┘

The same NodeAgent class runs inside the head on the head's machine; here a loop of its own
turns the head's messages into calls on it. Heartbeats go out from this loop every
``HEARTBEAT_S``, whatever the workers do (they are other processes), so a node is declared
dead only when its agent is gone, stopped or cut off. Workers connect to the head themselves.

If the head stays silent for ``HEAD_TIMEOUT_S`` the agent stops its workers and exits: nothing
outlives a cluster. A head that declared this node dead answers with RESTART: the agent kills
its workers, empties its store and joins again as a new node.

The agent also serves its own numbers (store, spills, workers, heartbeats, uptime) as
Prometheus text on an HTTP port of the node's address (``zactor worker --metrics-port``,
see ``_metrics_port``), on a thread that reads only what this loop hands it; the port
outlives the agent's clean restarts and is named in its hello, so ``zactor status`` lists it.
"""

from __future__ import annotations

import logging
import os
import signal
import time

import zmq

from zactor import _process, config
from zactor._version import peer_versions
from zactor.comm.security import Credentials, to_text
from zactor.comm.transport import bound_address, dealer, router
from zactor.node.agent import NodeAgent, answer_logs
from zactor.node.packages import PackageFetcher
from zactor.node.transfer import Puller, TransferServer
from zactor.protocol import Msg, ProtocolError, Refused, decode, encode

log = logging.getLogger(__name__)


class NodeDaemon:
    """Run with :meth:`run`; build it before any ZeroMQ context exists (it forks)."""

    def __init__(self, cfg: dict, creds: Credentials, metrics: dict | None = None) -> None:
        self.cfg = cfg
        self.creds = creds
        # The metrics port (run_node starts it once, for every incarnation of the agent):
        # where it is, and the holder through which it reads this agent's numbers.
        self.metrics = metrics or {"address": "", "note": "not started"}
        self.metrics["daemon"] = self
        self.started = time.monotonic()
        self.last_stats: dict = {}
        cfg["key"] = to_text(creds)
        cfg["worker_address"] = cfg["address"]
        self.agent = NodeAgent(cfg)
        self.ctx = zmq.Context()
        self.identity = b"n" + os.urandom(8)
        self.head = dealer(self.ctx, self.identity, cfg["address"], creds=creds)
        self.transfer = router(self.ctx, f"tcp://{cfg['ip']}:{cfg.get('port') or 0}", creds)
        self.transfer_address = bound_address(self.transfer)
        store = self.agent.store
        self.server = TransferServer(store.arena_path, store.capacity)
        self.puller = Puller(self.ctx, creds, store, self._pulled)
        store.on_spilled = lambda oid, loc: self._event("spilled", [oid, loc])
        self.stopping = False
        self.exit_code = 0
        self.welcomed = False
        self.last_heard = time.monotonic()
        self.seq = 0
        self.packages = PackageFetcher(self._send)
        self.ops = {
            "sealed": lambda loc, oid: store.sealed(loc, oid),
            "free": store.free_object,
            "touch": store.touch,
            "abandon": store.abandon,
            "client_gone": store.client_gone,
            "lose": store.lose,
            "alloc": self._alloc,
            "prealloc": self._prealloc,
            "pull": self.puller.pull,
            "source_gone": self.puller.source_gone,
        }

    # -- talking to the head -----------------------------------------------------------------

    def _send(self, header: bytes, frames: tuple = ()) -> None:
        self.head.send_multipart((header, *frames))

    def _event(self, event: str, args: list) -> None:
        self._send(encode(Msg.NODE_EVENT, event, args))

    def hello(self) -> None:
        agent = self.agent
        info = {**agent.info, **peer_versions(), "transfer": self.transfer_address,
                "pid": os.getpid(), "workers": sorted(agent.workers),
                "metrics_address": self.metrics["address"],
                "metrics_note": self.metrics["note"],
                # set by the autoscaler's provider: which of its launches this node is
                "launch_tag": os.environ.get("ZACTOR_NODE_TAG")}
        self._send(encode(Msg.NODE_HELLO, agent.node_id, agent.resources, info))

    def _alloc(self, req: int, client: bytes, oid: bytes, size: int) -> None:
        self.agent.store.allocate(client, oid, size,
                                  lambda answer: self._event("alloc", [req, answer]))

    def _prealloc(self, req: int, client: bytes, length: int) -> None:
        self.agent.store.preallocate(client, length,
                                     lambda answer: self._event("alloc", [req, answer]))

    def _pulled(self, oid: bytes, loc: list | None, why: str | None) -> None:
        self._event("pulled", [oid, loc, why])

    def _heartbeat(self) -> None:
        self.seq += 1
        store = self.agent.store
        stats = {"memory_available": self.agent.available_memory(), "load": self.agent.load(),
                 "store": store.stats(), "served": self.server.served_bytes,
                 "pulled": self.puller.pulled_bytes}
        self.last_stats = stats  # what the metrics port shows (read on its thread)
        self._send(encode(Msg.HEARTBEAT, self.seq, stats))

    def metrics_snapshot(self) -> dict:
        """This node's own numbers, for its metrics port (called on the port's thread: it
        reads only what the loop replaced whole, never the store's tables)."""
        stats = self.last_stats
        store = stats.get("store") or {}
        return {
            "node_id": self.agent.node_id.hex(), "ip": self.cfg["ip"],
            "store_used_bytes": store.get("used", 0),
            "store_capacity_bytes": store.get("capacity", self.agent.store.capacity),
            "bytes_on_disk": store.get("bytes_on_disk", 0),
            "spilled_objects_total": store.get("spilled_total", 0),
            "spilled_bytes_total": store.get("spilled_bytes_total", 0),
            "workers": len(self.agent.workers), "heartbeats_sent_total": self.seq,
            "uptime_s": time.monotonic() - self.metrics.get("since", self.started),
            "served_bytes_total": stats.get("served", 0),
            "pulled_bytes_total": stats.get("pulled", 0),
            "connected": 1 if self.welcomed else 0,
        }

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        agent = self.agent
        self.hello()
        next_beat = time.monotonic() + config.HEARTBEAT_S
        last_upkeep = time.monotonic()
        while not self.stopping:
            items = [(self.head, zmq.POLLIN), (self.transfer, zmq.POLLIN),
                     (agent.events_fd, zmq.POLLIN), (agent.store.events_fd, zmq.POLLIN),
                     *self.puller.poll_items()]
            timeout = max(0.0, next_beat - time.monotonic())
            for sock, _ in zmq.zmq_poll(items, int(timeout * 1000) + 1):
                if sock is self.head:
                    self._on_head()
                elif sock is self.transfer:
                    self._on_fetch()
                elif sock == agent.events_fd:
                    self._on_worker_events()
                elif sock == agent.store.events_fd:
                    agent.store.on_spills_done()
                else:
                    self.puller.on_ready(sock)
                if self.stopping:
                    break
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + config.HEARTBEAT_S
                self._heartbeat()
                if now - self.last_heard > config.HEAD_TIMEOUT_S:
                    log.error("no word from the head at %s for %.0f s: stopping this node and "
                              "its workers", self.cfg["address"], now - self.last_heard)
                    self.exit_code = 1
                    break
                if not self.welcomed:
                    self.hello()  # the head may not have been up yet
            if now - last_upkeep > 1.0:
                last_upkeep = now
                agent.store.housekeeping(now)
                self.server.expire()
        return self.exit_code

    def _on_head(self) -> None:
        while self.head.poll(0):
            frames = self.head.recv_multipart()
            self.last_heard = time.monotonic()
            try:
                mtype, fields = decode(frames[0])
            except Refused as exc:
                log.error("the head refused this node: %s", exc)
                self.exit_code = 2
                self.stopping = True
                return
            except ProtocolError as exc:
                log.warning("dropped a malformed message from the head: %s", exc)
                continue
            try:
                self._handle(mtype, fields, frames[1:])
            except Exception:  # noqa: BLE001 - a bad message must not stop the node
                log.exception("handling %s from the head failed", mtype.name)

    def _handle(self, mtype: Msg, fields: list, frames: list) -> None:
        agent = self.agent
        if mtype == Msg.SPAWN:
            count, env_key, env = int(fields[0]), fields[1], fields[2]
            if env_key is None:
                agent.spawn(count)
            else:  # its packages first, if this machine lacks them
                self.packages.ensure(env, lambda: agent.spawn(count, env_key, env))
        elif mtype == Msg.PACKAGE:
            self.packages.on_chunk(fields, frames[0] if frames else None)
        elif mtype == Msg.KILL_WORKER:
            agent.kill(int(fields[0]), int(fields[1]))
        elif mtype == Msg.STORE:
            op, args = fields
            self.ops[op](*args)
        elif mtype == Msg.WELCOME:
            if not self.welcomed:
                log.info("joined the cluster at %s as node %s", self.cfg["address"],
                         agent.node_id.hex())
            self.welcomed = True
        elif mtype == Msg.RESTART:
            self._restart(fields[0])
        elif mtype == Msg.LOG_READ:  # zactor logs: the files of this node's workers
            req, op, args = fields
            self._send(encode(Msg.LOG_DATA, req, *answer_logs(agent.logs, op, args)))
        elif mtype == Msg.SHUTDOWN:
            log.info("the head stopped the cluster")
            self.stopping = True

    def _restart(self, why: str) -> None:
        """``rejoin``: a new head lost track of this node (it restarted): say hello again.
        Anything else: the head declared this node dead; start again, clean."""
        if self.stopping:  # told to stop (scaled down, the cluster stopping): it stops
            return
        if why == "rejoin":
            self.welcomed = False
            self.hello()
            return
        log.warning("the head declared this node dead (%s): restarting it clean", why)
        self.exit_code = 3  # the CLI starts a fresh agent on this code
        self.stopping = True

    def _on_fetch(self) -> None:
        sock = self.transfer
        while sock.poll(0):
            frames = sock.recv_multipart()
            if len(frames) < 2:
                continue
            try:
                mtype, fields = decode(frames[1])
            except ProtocolError as exc:
                log.warning("dropped a malformed transfer request: %s", exc)
                continue
            if mtype == Msg.FETCH:
                self.server.on_fetch(sock, frames[0], fields)

    def _on_worker_events(self) -> None:
        exits = self.agent.exits()
        if exits is None:
            log.error("this node's zygote died: no worker can start any more; stopping")
            self.exit_code = 1
            self.stopping = True
            return
        for pid, code, sig, env_key in exits:
            self._send(encode(Msg.WORKER_EXIT, pid, code, sig, env_key))

    def shutdown(self) -> None:
        self.puller.close()
        self.server.close()
        self.agent.shutdown()
        self.transfer.close(linger=0)
        self.head.close(linger=200)
        self.ctx.term()


def run_node(cfg: dict, creds: Credentials) -> int:
    """Run a node agent until it is stopped; restart it clean when its head says so.
    Returns the process's exit code."""
    _process.set_process_name("zactor-node")
    stop = {"now": False, "cleaning": False}

    def on_signal(signum, frame):  # noqa: ARG001
        stop["now"] = True
        if not stop["cleaning"]:  # never in the middle of removing the node's files
            raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    metrics = _metrics_port(cfg, creds)
    try:
        while True:
            os.makedirs(cfg["shm_dir"], mode=0o700, exist_ok=True)
            daemon = NodeDaemon(dict(cfg), creds, metrics)
            try:
                code = daemon.run()
            except SystemExit:
                code = 0
            finally:
                stop["cleaning"] = True
                daemon.shutdown()
                stop["cleaning"] = False
            if code != 3 or stop["now"]:
                return code
            cfg = {**cfg, "node_id": os.urandom(14).hex()}  # a new node: nothing of the old
    finally:
        server = metrics.get("server")
        if server is not None:
            server.close()
        if cfg.get("session_dir"):
            _process.remove_tree(cfg["session_dir"])


def _metrics_port(cfg: dict, creds: Credentials) -> dict:
    """Start the node's metrics port (``zactor worker --metrics-port``, 0: a free port, -1:
    none) on the node's IP: Prometheus text of this agent's own numbers. On a cluster with
    credentials it asks for the cluster's token (security.http_token)."""
    from zactor import _metrics_export
    from zactor.comm.security import INSECURE, http_token
    from zactor.comm.transport import listen_tcp

    metrics: dict = {"address": "", "note": "", "since": time.monotonic()}
    port = cfg.get("metrics_port", 0)
    if port is None or port < 0:
        metrics["note"] = "off (--metrics-port -1)"
        return metrics
    if not _metrics_export.available():
        metrics["note"] = "prometheus_client is not installed (pip install 'zactor[dashboard]')"
        log.info("no metrics port: %s", metrics["note"])
        return metrics
    ip = cfg["ip"]
    try:
        sock = listen_tcp(ip, port)
    except OSError as exc:
        metrics["note"] = f"cannot listen on {ip}:{port}: {exc}"
        log.warning("no metrics port: %s", metrics["note"])
        return metrics
    # Loopback too: any user of the machine reaches a loopback port.
    token = None if creds is INSECURE else http_token(creds)

    def fetch() -> dict:
        daemon = metrics.get("daemon")  # None only for a moment, before the first agent
        return daemon.metrics_snapshot() if daemon is not None else \
            {"node_id": cfg["node_id"], "ip": ip}

    server = _metrics_export.MetricsServer(
        sock, lambda: _metrics_export.node_registry(fetch), token)
    metrics.update(server=server, address=server.url,
                   note="the cluster's token" if token else "open (--insecure)")
    return metrics
