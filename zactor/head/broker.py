"""The head's event loop: one ROUTER socket, a dispatch table from message type to handler.

    drivers ──┐                         ┌── ObjectDirectory (values, refcounts, waiters)
    workers ──┴─► ROUTER ─► dispatch ───┼── TaskManager     (deps, retries, cancel)
                     ▲                  ├── ActorManager    (placement, calls, names)
                     └── replies ◄──────┼── Scheduler       (resources, warm workers)
    zygote pipe ─► worker exits ────────┴── NodeAgent       (this machine's workers, files)

Handlers run to completion; the scheduler runs once per batch of messages, not per message.
A message that does not parse, comes from an unknown peer or makes a handler raise is counted
in ``dropped`` and logged — it never stops the loop.
"""

from __future__ import annotations

import heapq
import logging
import os
import signal
import time
from typing import Any

import zmq

from zactor import config
from zactor._process import describe_exit, pidfd, remove_tree
from zactor._serialization import dumps_plain
from zactor._version import incompatibility
from zactor.comm import security
from zactor.comm.transport import (
    POLLIN,
    bound_address,
    has_message,
    recv_parts,
    router,
    send_routed,
    zmq_poll,
)
from zactor.exceptions import ObjectLostError
from zactor.head.actors import ActorManager
from zactor.head.control_log import ControlLog
from zactor.head.jobs import JobManager
from zactor.head.metrics import UserMetrics
from zactor.head.nodes import RemoteAgent
from zactor.head.objects import ObjectDirectory
from zactor.head.placement_groups import PlacementGroups
from zactor.head.records import Client, Worker
from zactor.head.requests import Requests
from zactor.head.runtime_envs import RuntimeEnvs
from zactor.head.scheduler import Node, Scheduler
from zactor.head.tasks import TaskManager
from zactor.head.transfers import Transfers
from zactor.node.agent import NodeAgent
from zactor.node.transfer import Puller, TransferServer
from zactor.protocol import (
    VERSION,
    Msg,
    ProtocolError,
    S,
    Status,
    TaskKind,
    decode,
    encode,
    refusal,
)
from zactor.runtime_env._setup import SETUP_UNREPORTED_EXIT

log = logging.getLogger(__name__)


class Broker:
    def __init__(self, cfg: dict, agent: NodeAgent | None = None) -> None:
        self.cfg = cfg
        self.ctx = zmq.Context()
        self.address = cfg["address"]
        self.sock = router(self.ctx, self.address)
        self.agent = agent
        # A cluster head also listens on TCP, encrypted and authenticated unless --insecure.
        self.tcp = None
        self.tcp_address: str | None = None
        self.creds = None
        self.auth = None
        self.refusals = None
        if cfg.get("tcp"):
            if cfg.get("insecure"):
                self.creds = security.INSECURE
            else:
                self.creds = security.read_key_file(cfg["key_file"])
                self.auth = security.Authenticator(self.ctx, self.creds)
            self.tcp = router(self.ctx, cfg["tcp"], self.creds)
            self.tcp_address = bound_address(self.tcp)
            if "://0.0.0.0:" in self.tcp_address:  # listening everywhere: say where, though
                self.tcp_address = self.tcp_address.replace("0.0.0.0", cfg["ip"])
            if self.auth is not None:
                self.refusals = security.RefusalMonitor(self.tcp)
        self._remote_sock = self.tcp if self.tcp is not None else self.sock
        self.remote_agents: dict[bytes, RemoteAgent] = {}  # by the agent's socket identity
        self.dead_agents: dict[bytes, bytes] = {}  # identity -> node id, of nodes declared dead
        self.head_node: Node | None = None
        self.transfers = Transfers(self)
        self.transfer_server: TransferServer | None = None
        self.puller: Puller | None = None
        # A cluster head keeps its control state in its state directory (restartable).
        self.control: ControlLog | None = None
        if cfg.get("state_dir"):
            self.control = ControlLog(cfg["state_dir"])
        self.restored_at = 0.0  # when this head took over a previous head's state
        self.recovery_until = 0.0
        self.held_messages: dict[bytes, list] = {}  # see _hold_until_hello
        self.clients: dict[bytes, Client] = {}
        self.drivers: dict[bytes, Client] = {}
        # Pids repeat across machines: workers are known by (node id, pid).
        self.workers_by_pid: dict[tuple[bytes, int], Worker] = {}
        self.objects = ObjectDirectory(self.free_copy, self._release_actor)
        self.scheduler = Scheduler(self._dispatch, self._spawn, self.notify_drivers,
                                   lambda task, why: self.tasks.unschedulable(task, why))
        self.scheduler.retire = self.retire_worker
        self.tasks = TaskManager(self)
        self.actors = ActorManager(self)
        self.requests = Requests(self)
        self.jobs = JobManager(self)
        self.envs = RuntimeEnvs(self)
        self.pgs = PlacementGroups(self)
        self.scheduler.groups = self.pgs.groups
        self.autoscaler = None
        if cfg.get("autoscaling") and self.tcp is not None:
            from zactor.autoscaler._autoscaler import Autoscaler

            self.autoscaler = Autoscaler(self, cfg["autoscaling"])
        self.timers: list = []  # (when, sequence, callable), a heap: see later()
        if self.autoscaler is not None:
            self.later(0.0, self.autoscaler.update)
        self.sys_path: list[str] = list(cfg.get("sys_path", []))
        self.dropped = 0
        # Totals for zactor.head.metrics: counted per batch of messages read, and per send.
        self.messages_received = 0
        self.messages_sent = 0
        self.started_at = time.monotonic()
        self.user_metrics = UserMetrics()  # zactor.util.metrics, as processes report them
        self.refused_hellos = 0  # peers of another version (refused connections: refusals)
        self.functions_received = 0  # SUBMITs that carried a function or class
        self.direct_calls = 0  # actor calls booked on the live incarnation from a CALLED
        self.stopping = False
        self.watched: list = [(self.sock, POLLIN)]
        self.fd_handlers: dict[int, Any] = {}
        self.handlers = {
            Msg.SUBMIT: self.on_submit,
            Msg.PUT: self.on_put,
            Msg.SUBSCRIBE: self.on_subscribe,
            Msg.REFS: self.on_refs,
            Msg.TASK_DONE: self.on_task_done,
            Msg.BLOCKED: self.on_blocked,
            Msg.CANCEL: self.on_cancel,
            Msg.KILL_ACTOR: self.on_kill_actor,
            Msg.REQUEST: self.on_request,
            Msg.LOG: self.on_log,
            Msg.ACTOR_READY: self.on_actor_ready,
            Msg.GOODBYE: self.on_goodbye,
            Msg.CHECKPOINT: self.on_checkpoint,
            Msg.LOST: self.on_lost,
            Msg.CALLED: self.on_called,
            Msg.YIELD: self.on_yield,
        }
        self.node_handlers = {
            Msg.HEARTBEAT: self.on_heartbeat,
            Msg.WORKER_EXIT: self.on_worker_exit,
            Msg.NODE_EVENT: self.on_node_event,
            Msg.PACKAGE: lambda agent, fields: self.envs.on_package(agent, fields),
            Msg.LOG_DATA: lambda agent, fields: agent.on_log_data(fields),
        }
        if agent is not None:
            node = Node(agent.node_id, agent, agent.resources, agent.info)
            agent.store.on_spilled = lambda oid, loc: self.objects.relocate(oid, loc, node)
            self.head_node = node
            self.scheduler.add_node(node)
            self.scheduler.top_up(node)
            if self.tcp is not None:
                store = agent.store
                self.transfer_server = TransferServer(store.arena_path, store.capacity, store)
                self.puller = Puller(self.ctx, self.creds, store, self._pulled_here)
                self.puller.on_socket = self._watch_puller
        if self.control is not None:
            self._restore()
        self.dashboard = None
        if cfg.get("dashboard"):
            self.dashboard = self._start_dashboard(cfg["dashboard"])

    def _start_dashboard(self, spec: dict):
        """The dashboard's port (its process starts on the first connection): a port asked
        for explicitly must be free, else the head does not start; the default one that
        cannot be had only costs the dashboard."""
        from zactor.dashboard._launcher import Dashboard

        try:
            return Dashboard(self, spec["host"], spec["port"], spec.get("explicit", False))
        except OSError as exc:
            if spec.get("explicit"):
                raise
            log.warning("%s; running without a dashboard", exc)
            return None

    def _restore(self) -> None:
        """Take over the state a previous head of this state directory left (if any)."""
        records = self.control.records
        old_head = None
        for record in records:
            if record[0] == "head_node":
                old_head = record[1]
        lost = self.actors.restore(records, old_head) if records else []
        self.jobs.restore(records)
        self.envs.restore(records)
        if records:
            self.restored_at = time.monotonic()
            self.recovery_until = self.restored_at + config.HEAD_RECOVERY_S
        self.control.compact(self._snapshot())
        self.actors.lost_with_old_head(lost)

    def _snapshot(self) -> list[list]:
        snapshot = self.actors.snapshot() + self.jobs.snapshot() + self.envs.snapshot()
        if self.head_node is not None:
            snapshot.append(["head_node", self.head_node.node_id])
        return snapshot

    def later(self, delay: float, fn) -> None:
        """Call ``fn()`` from the loop in about ``delay`` seconds."""
        self._timer_seq = getattr(self, "_timer_seq", 0) + 1
        heapq.heappush(self.timers, (time.monotonic() + delay, self._timer_seq, fn))
    # -- plumbing ----------------------------------------------------------------------------

    def send(self, identity: bytes, header: bytes, frames: tuple | list = ()) -> None:
        # Peers on TCP have identities that start with a lower-case letter (CoreClient).
        sock = self._remote_sock if identity[0] >= 97 else self.sock
        self.messages_sent += 1
        try:
            send_routed(sock, identity, header, frames)
        except zmq.ZMQError as exc:  # pragma: no cover - peer vanished mid-send
            log.debug("send to %r failed: %s", identity, exc)

    def notify_drivers(self, level: int, text: str) -> None:
        """Log ``text`` in every driver (the head's own log would repeat it on the terminal
        the head shares with its driver)."""
        log.debug("told the drivers: %s", text)
        header = encode(Msg.NOTICE, level, text)
        for client in self.drivers.values():
            self.send(client.inbox, header)

    def drop(self, why: str) -> None:
        self.dropped += 1
        log.warning("dropped a message: %s", why)

    def watch_fd(self, fd: int, on_ready) -> None:
        """Call ``on_ready()`` from the loop whenever ``fd`` is readable."""
        self.watched.append((fd, POLLIN))
        self.fd_handlers[fd] = on_ready

    def unwatch_fd(self, fd: int) -> None:
        self.watched = [w for w in self.watched if w[0] != fd]
        self.fd_handlers.pop(fd, None)

    def run(self) -> None:
        driver_pid = self.cfg.get("driver_pid")
        if driver_pid:
            driver_fd = pidfd(driver_pid)
            if driver_fd is None:
                log.warning("the driver (pid %d) is already gone; stopping", driver_pid)
                return
            self.watch_fd(driver_fd, self._on_driver_exit)
        if self.agent is not None:
            self.watch_fd(self.agent.events_fd, self._on_agent_events)
            self.watch_fd(self.agent.store.events_fd, self.agent.store.on_spills_done)
        if self.tcp is not None:
            self.watch_fd(self.tcp, self._on_tcp)
        if self.refusals is not None:
            self.watch_fd(self.refusals.socket, self.refusals.on_ready)
        sock = self.sock
        handle = self.handle
        schedule = self.scheduler.schedule
        handlers = self.fd_handlers
        last_reap = last_check = last_clients = last_groups = time.monotonic()
        while not self.stopping:
            # zmq_poll on a plain list: zmq.Poller wraps every result in enum objects.
            events = zmq_poll(self.watched, 100 if self.remote_agents else 1000)
            for sock_or_fd, _ in events:
                if sock_or_fd is sock:
                    for n in range(1, 2001):  # n: the messages read, counted once per batch
                        try:
                            frames = recv_parts(sock)
                        except zmq.Again:
                            n -= 1
                            break
                        handle(frames)
                        if self.stopping:
                            return
                        if not has_message(sock):
                            break
                    self.messages_received += n
                else:
                    on_ready = handlers.get(sock_or_fd)
                    if on_ready is not None:
                        on_ready()
                schedule()
            now = time.monotonic()
            if self.remote_agents and now - last_check > 0.1:
                last_check = now
                self._check_nodes(now)
            if self.tcp is not None and now - last_clients > 1.0:
                last_clients = now
                self._check_clients(now)
            if self.jobs.waiting:
                self.jobs.start_pending()
            if self.pgs.waiting and now - last_groups > 0.05:
                # not after every batch: a group that cannot be placed yet is planned
                # again 20 times a second at most
                last_groups = now
                self.pgs.place_waiting()
                schedule()
            while self.timers and self.timers[0][0] <= now:
                heapq.heappop(self.timers)[2]()
            if self.recovery_until and now > self.recovery_until:
                self.recovery_until = 0.0
                if self.held_messages:
                    log.warning("dropped the messages of %d client(s) of the previous head "
                                "that never introduced themselves", len(self.held_messages))
                    self.held_messages.clear()
                self.actors.recovery_over()
            if now - last_reap > 1.0:
                last_reap = now
                if self.control is not None and self.control.due():
                    self.control.compact(self._snapshot())
                self.jobs.housekeeping()
                self.scheduler.reap_idle(now, self.retire_worker, self._keep_worker)
                for node in self.scheduler.nodes.values():
                    node.agent.store.housekeeping(now)

    def _on_tcp(self) -> None:
        sock = self.tcp
        handle = self.handle
        for n in range(1, 2001):
            try:
                frames = recv_parts(sock)
            except zmq.Again:
                n -= 1
                break
            if frames[0][:1].isupper():  # a TCP peer posing as a local one
                self.drop("a TCP peer with a local identity")
            else:
                handle(frames)
            if self.stopping or not has_message(sock):
                break
        self.messages_received += n

    def _on_driver_exit(self) -> None:
        log.info("the driver exited; the head stops")
        self.stopping = True

    def handle(self, frames: list) -> None:
        if len(frames) < 2:
            self.drop("no header frame")
            return
        try:
            mtype, fields = decode(frames[1])
        except ProtocolError as exc:
            self._refuse_other_version(frames)
            self.drop(str(exc))
            return
        for f in frames:
            if len(f) > config.MAX_FRAME_BYTES:
                self.drop(f"{mtype.name}: frame over {config.MAX_FRAME_BYTES} bytes")
                return
        identity = frames[0]
        try:
            if mtype == Msg.HELLO:
                self.on_hello(identity, fields)
            else:
                client = self.clients.get(identity[:-1])
                handler = self.handlers.get(mtype)
                if client is None or handler is None:
                    if handler is not None and self.recovery_until and \
                            self._hold_until_hello(identity[:-1], frames):
                        return
                    self._from_other_peer(identity, mtype, fields, frames)
                    return
                handler(client, fields, frames[2:])
        except Exception as exc:  # noqa: BLE001 - a bad message must not stop the head
            self.dropped += 1
            log.exception("dropped %s: handler failed: %s", mtype.name, exc)

    def _from_other_peer(self, identity: bytes, mtype: Msg, fields: list, frames: list) -> None:
        """A message not from a known client: a node agent's, a pull from another node, or
        one to drop."""
        if mtype == Msg.NODE_HELLO:
            self.on_node_hello(identity, fields)
            return
        if mtype == Msg.ENV_EVENT and identity[:1] in (b"e", b"E"):
            self.envs.on_event(identity, fields)
            return
        agent = self.remote_agents.get(identity)
        if agent is not None:
            handler = self.node_handlers.get(mtype)
            if handler is not None:
                agent.heard()
                handler(agent, fields)
                return
        elif identity[:1] == b"n" and mtype in self.node_handlers:
            # An agent this head does not know: declared dead, or this head is new (it was
            # restarted) and the agent should introduce itself again.
            dead = identity in self.dead_agents
            self.send(identity, encode(Msg.RESTART, "dead" if dead else "rejoin"))
            return
        if self.transfer_server is not None and identity[0] >= 97:
            if mtype == Msg.FETCH:
                self.transfer_server.on_fetch(self.tcp, identity, fields)
                return
            if mtype == Msg.PUSH and len(frames) == 3:
                self.transfer_server.on_push(self.tcp, identity, fields, frames[2])
                return
        self.drop(f"{mtype.name} from an unknown peer or of a head-bound type")

    def _hold_until_hello(self, key: bytes, frames: list) -> bool:
        """After a restart, a client's messages may come before its new HELLO (they travel
        on its other socket): keep them, up to a bound, to handle right after it."""
        held = self.held_messages.get(key)
        if held is None:
            if len(self.held_messages) >= 10_000:
                return False
            held = self.held_messages[key] = []
        if len(held) >= 10_000:
            return False
        held.append(frames)
        return True

    def _refuse_other_version(self, frames: list) -> None:
        """A HELLO of another protocol version: tell the peer why, naming both versions (a
        refusal is readable by any version, see protocol.REFUSAL)."""
        header = frames[1]
        if len(header) < 2 or header[0] in (VERSION, 0) or \
                header[1] not in (Msg.HELLO, Msg.NODE_HELLO):
            return
        info: dict = {}
        try:
            import msgpack

            fields = msgpack.unpackb(header[2:], raw=False, strict_map_key=False)
            info = next((f for f in fields if isinstance(f, dict)), {})
        except Exception:  # noqa: BLE001 - only to name its version, if it can be read
            pass
        info["protocol"] = header[0]  # the header says which protocol it speaks
        self._refuse(frames[0], incompatibility(info) or "protocol version mismatch")

    def _refuse(self, identity: bytes, why: str) -> None:
        log.warning("refused a peer: %s", why)
        self.refused_hellos += 1
        self.send(identity, refusal(why))  # a HELLO comes on the socket that reads replies

    # -- clients -----------------------------------------------------------------------------

    def on_hello(self, identity: bytes, fields: list) -> None:
        kind, pid, node_id, info = fields
        if kind == "control":  # a worker's cancellation socket announcing itself
            return
        if not isinstance(info, dict) or kind not in ("driver", "worker", "observer"):
            raise ProtocolError("bad HELLO")
        why = incompatibility(info)
        if why is not None:
            self._refuse(identity, why)
            return
        key = identity[:-1]
        resume = info.get("resume")
        if resume is not None and key in self.clients:
            self._welcome(self.clients[key])  # reconnected to this same head: nothing lost
            return
        node = None
        if kind == "worker":
            node = self.scheduler.nodes.get(node_id)
            if node is None and resume is not None:
                return  # its node agent has not rejoined this (restarted) head yet: it retries
            if node is None or not node.alive:
                # A late worker of a node declared dead: it must not run anything.
                self.send(identity, encode(Msg.EXIT))
                return
        client = Client(key, kind, pid, info)
        self.clients[key] = client
        if kind == "worker":
            client.node = node
            worker = Worker(client, node, pid)
            worker.env = info.get("env_key")
            client.worker = worker
            node.workers[pid] = worker
            if resume is None:
                node.started(worker.env)
            self.workers_by_pid[(node.node_id, pid)] = worker
            if resume is not None:
                self._resume_worker(worker, resume)
            else:
                self.worker_idle(worker)
            self._welcome(client)
            if resume is not None:
                self.actors.resumed_client(client, resume)
                self._replay_held(key)
        elif kind == "observer":  # zactor memory, zactor status: asks, submits nothing
            client.node = self._node_of_host(client)
            if not client.remote:
                self._watch_driver(client)
            self._welcome(client)
        else:
            self.drivers[key] = client
            client.node = self._node_of_host(client)
            if info.get("job_id"):
                self.jobs.driver_joined(info["job_id"], key)
            if pid != self.cfg.get("driver_pid") and not client.remote:
                self._watch_driver(client)
            for p in info.get("sys_path", []):
                if p not in self.sys_path:
                    self.sys_path.append(p)
            self._welcome(client)
            if resume is not None:
                self.actors.resumed_client(client, resume)
                self._replay_held(key)

    def _replay_held(self, key: bytes) -> None:
        for frames in self.held_messages.pop(key, ()):
            self.handle(frames)

    def _resume_worker(self, worker: Worker, resume: dict) -> None:
        """A worker of the previous head's cluster: it hosts an actor (adopted), runs a task
        this head never heard of (idle once it ends), or waits for work."""
        actor_id = resume.get("actor_id")
        if actor_id:
            if not self.actors.adopt(worker, actor_id, resume.get("address")):
                self.retire_worker(worker)  # an actor this head does not keep: it goes
        elif resume.get("busy"):
            worker.resumed_busy = True
        else:
            self.worker_idle(worker)

    def _node_of_host(self, client: Client) -> Node | None:
        """The node whose store a driver can map: the head's own for a local driver, the node
        agent on its machine for one connected over TCP, or none."""
        if not client.remote:
            return self.head_node
        host = client.info.get("host_id")
        for node in self.scheduler.nodes.values():
            if node.alive and host and node.info.get("host_id") == host:
                return node
        return None

    def _watch_driver(self, client: Client) -> None:
        """A driver that joined this cluster: if its process dies without a GOODBYE, what it
        held and the actors it owned go (the embedded cluster's own driver is watched by
        run(), and the whole cluster stops with it)."""
        fd = pidfd(client.pid) if isinstance(client.pid, int) else None
        if fd is None:
            return
        client.pidfd = fd

        def gone() -> None:
            self._unwatch_client(client)
            if self.clients.get(client.key) is client:
                log.info("driver pid %d exited without disconnecting", client.pid)
                self.drop_client(client)

        self.watch_fd(fd, gone)

    def _unwatch_client(self, client: Client) -> None:
        fd = client.pidfd
        if fd is not None:
            client.pidfd = None
            self.unwatch_fd(fd)
            os.close(fd)

    def _welcome(self, client: Client) -> None:
        node = client.node
        store = node.agent.store if node is not None else None
        welcome: dict[str, Any] = {
            "session": self.cfg["session"],
            "shm_dir": node.info.get("shm_dir") if node is not None else None,
            "store": [store.arena_path, store.capacity] if store else [None, 0],
            "head_node_id": self.head_node.node_id if self.head_node else b"",
            "node_id": node.node_id if node is not None else None,
            "resources": self.scheduler.totals(),
            # A cluster head can be restarted: its clients reconnect (zactor._client).
            "restartable": bool(self.control is not None),
            "dashboard_url": self.dashboard.url if self.dashboard is not None else None,
        }
        if node is None and self.head_node is not None and self.tcp is not None:
            # No node on its machine: it pushes large objects into the head's node.
            welcome["push"] = self.tcp_address
            welcome["push_arena"] = self.head_node.agent.store.arena_path
        if client.worker is not None:
            welcome["sys_path"] = self.sys_path
            welcome["cwd"] = self.cfg.get("cwd")
            # Where actors of the head's node bind their sockets for direct calls.
            welcome["sock_dir"] = self.cfg.get("session_dir")
        self.send(client.inbox, encode(Msg.WELCOME, welcome))

    def drop_client(self, client: Client) -> None:
        self.clients.pop(client.key, None)
        self.drivers.pop(client.key, None)
        self._unwatch_client(client)
        if client.owned_actors:
            self.actors.owner_gone(client)
        if client.kind == "driver":
            self.pgs.owner_gone(client.key)
        self.tasks.client_gone(client.key)
        self.actors.client_gone(client.key)
        if client.node is not None:
            client.node.agent.store.client_gone(client.key)
        self.objects.release_all(client.holds)
        for actor_id in list(client.actor_holds):
            self.actors.unhold(client, actor_id)

    def on_goodbye(self, client: Client, fields: list, _frames) -> None:
        self.drop_client(client)
        if fields[0]:
            self.stopping = True

    # -- workers and nodes -------------------------------------------------------------------

    def _on_agent_events(self) -> None:
        node = self.scheduler.nodes[self.agent.node_id]
        exits = self.agent.exits()
        if exits is None:
            log.error("the node's zygote died: no worker can start any more; stopping")
            self.stopping = True
            return
        for pid, exitcode, sig, env_key in exits:
            self.worker_exited(node, pid, exitcode, sig, env_key=env_key)

    def worker_idle(self, worker: Worker) -> None:
        if worker.actor is None and not worker.exiting:
            worker.idle_since = time.monotonic()
            worker.node.pool(worker.env).append(worker)

    def worker_exited(self, node: Node, pid: int, exitcode, sig, how: str | None = None,
                      env_key: str | None = None) -> None:
        worker = self.workers_by_pid.pop((node.node_id, pid), None)
        if worker is None:  # it never joined: it failed to start (or to set up its env)
            node.started(env_key)
            if env_key is not None and exitcode == SETUP_UNREPORTED_EXIT:
                self.envs.failed(env_key, f"A worker for the runtime environment {env_key} "
                                 f"failed to set it up on node {node.node_id.hex()[:12]} "
                                 "(and could not say why)")
            self.scheduler.top_up(node)
            return
        node.workers.pop(pid, None)
        try:
            node.pool(worker.env).remove(worker)
        except ValueError:
            pass
        how = how or describe_exit(exitcode, sig)
        if not worker.exiting:
            # INFO, not WARNING: what it means for the user's work (a retry, a restart, an
            # error naming the exit code) reaches the user through that work.
            log.info("worker pid %d %s", pid, how)
        self.tasks.worker_died(worker, how)
        node.mark_blocked(worker, False)
        self.actors.worker_gone(worker, how)
        self.drop_client(worker.client)
        if not self.stopping:
            self.scheduler.top_up(node)

    # -- node agents of other machines (zactor worker) ----------------------------------------

    def on_node_hello(self, identity: bytes, fields: list) -> None:
        node_id, resources, info = fields
        if not (isinstance(node_id, bytes) and isinstance(resources, dict) and
                isinstance(info, dict)):
            raise ProtocolError("bad NODE_HELLO")
        if self.tcp is None or identity[:1] != b"n":
            raise ProtocolError("NODE_HELLO on a local socket")
        why = incompatibility(info)
        if why is not None:
            self._refuse(identity, why)
            return
        known = self.scheduler.nodes.get(node_id)
        if known is not None:
            if not known.alive:
                self.send(identity, encode(Msg.RESTART, "dead"))
                return
            if getattr(known.agent, "identity", None) == identity:
                self.send(identity, encode(Msg.WELCOME, {"node_id": node_id}))
                return
        agent = RemoteAgent(self, identity, node_id, resources, info)
        node = Node(node_id, agent, resources, info)
        agent.store.on_spilled = lambda oid, loc: self.objects.relocate(oid, loc, node)
        self.remote_agents[identity] = agent
        self.scheduler.add_node(node)
        log.info("node %s joined from %s with %s", node_id.hex()[:12], info.get("ip"),
                 {k: v for k, v in resources.items() if not k.startswith("node:")})
        self.send(identity, encode(Msg.WELCOME, {"node_id": node_id,
                                                     "session": self.cfg["session"]}))
        self.scheduler.top_up(node)
        if self.autoscaler is not None:
            self.autoscaler.node_joined(info.get("launch_tag"), node)

    def on_heartbeat(self, agent: RemoteAgent, fields: list) -> None:
        agent.heard(fields[1])
        agent.heartbeats += 1
        agent.last_heartbeat = agent.last_heard
        agent.send(encode(Msg.HEARTBEAT, fields[0], None))

    def on_worker_exit(self, agent: RemoteAgent, fields: list) -> None:
        node = self.scheduler.nodes.get(agent.node_id)
        if node is not None:
            pid, code, sig, env_key = fields
            self.worker_exited(node, pid, code, sig, env_key=env_key)

    def on_node_event(self, agent: RemoteAgent, fields: list) -> None:
        event, args = fields
        if event == "alloc":
            agent.store.answered(*args)
        elif event == "spilled":
            agent.store.on_spilled(*args)
        elif event == "pulled":
            node = self.scheduler.nodes.get(agent.node_id)
            if node is not None:
                self.transfers.pulled(node, *args)
        else:
            raise ProtocolError(f"unknown node event {event!r}")

    def _check_nodes(self, now: float) -> None:
        if has_message(self.tcp):
            return  # heartbeats may be waiting to be read: the loop was busy, not the nodes
        timeout = config.NODE_TIMEOUT_S
        for agent in list(self.remote_agents.values()):
            if now - agent.last_heard > timeout:
                node = self.scheduler.nodes.get(agent.node_id)
                if node is not None and node.alive:
                    self.node_died(node, f"no heartbeat for {now - agent.last_heard:.1f} s")

    def _check_clients(self, now: float) -> None:
        """Drivers on TCP that stopped pinging are gone (their machine died, or the network
        to it): what they held and the actors they owned go, as for a driver that exits."""
        timeout = config.CLIENT_TIMEOUT_S
        for client in [c for c in self.clients.values() if c.remote and c.worker is None]:
            if now - client.last_ping > timeout:
                log.warning("%s pid %s sent nothing for %.0f s: taking it for dead",
                            client.kind, client.pid, now - client.last_ping)
                self.drop_client(client)

    def node_died(self, node: Node, why: str, expected: bool = False) -> None:
        """Declare ``node`` dead: what ran there is replayed elsewhere, its actors restart
        elsewhere, its objects are rebuilt by lineage when they are needed (or reported
        lost), and its agent, if it ever speaks again, is told to start clean.
        ``expected``: it was let go on purpose (scaled down), nobody is warned."""
        if not node.alive:
            return
        node.alive = False
        name = node.node_id.hex()[:12]
        if expected:
            log.info("node %s (%s) removed: %s", name, node.info.get("ip"), why)
            node.info["removed"] = why
        else:
            log.warning("node %s (%s) is dead: %s", name, node.info.get("ip"), why)
            self.notify_drivers(logging.WARNING, f"Node {name} ({node.info.get('ip')}) "
                                f"died: {why}. Its tasks are retried and its actors "
                                "restarted on other nodes.")
        agent = node.agent
        identity = getattr(agent, "identity", None)
        if identity is not None:
            self.remote_agents.pop(identity, None)
            self.dead_agents[identity] = node.node_id
            if not expected:  # (one let go was told to stop: it must not start again)
                agent.send(encode(Msg.RESTART, "dead"))  # heard only if it is still there
            agent.store.died()
            agent.logs_failed(why)
        node.starting = 0
        node.env_starting.clear()
        node.idle.clear()
        node.env_idle.clear()
        how = f"was lost with its node {name} ({why})"
        for pid in list(node.workers):
            self.worker_exited(node, pid, None, None, how=how)
        self.transfers.node_died(node)
        source = self.transfer_address_of(node)
        if source:
            for other in self.scheduler.nodes.values():
                if other.alive and other is not self.head_node:
                    other.agent.store.source_gone(source, f"node {name} died")
            if self.puller is not None:
                self.puller.source_gone(source, f"node {name} died")
        self.pgs.node_died(node)
        if self.autoscaler is not None:
            self.autoscaler.node_died(node)

    def retire_node(self, node: Node, why: str) -> None:
        """Let a node go on purpose: its agent stops, and the node is gone from the
        cluster (the autoscaler scaling down)."""
        agent = node.agent
        if getattr(agent, "identity", None) is not None:
            agent.send(encode(Msg.SHUTDOWN))
        self.node_died(node, why, expected=True)

    def _dispatch(self, task, node: Node, worker: Worker) -> None:
        self.tasks.dispatch(task, node, worker)

    def _spawn(self, node: Node, count: int, env_key: str | None = None) -> None:
        if env_key is None:
            node.agent.spawn(count)
        else:
            node.agent.spawn(count, env_key, self.envs.envs[env_key])

    def kill_worker(self, worker: Worker, sig: int = signal.SIGKILL) -> None:
        worker.exiting = True
        worker.node.agent.kill(worker.pid, int(sig))

    def _keep_worker(self, worker: Worker) -> bool:
        """An idle worker that created live actors stays: they would die with it."""
        return bool(worker.client.owned_actors) and \
            self.actors.owns_live_actors(worker.client)

    def retire_worker(self, worker: Worker) -> None:
        worker.exiting = True
        self.send(worker.client.inbox, encode(Msg.EXIT))

    def store_of(self, node: Node | None):
        """The object store of ``node`` (None: the head's node's)."""
        if node is None:
            node = self.head_node
            if node is None:
                return None
        return node.agent.store

    def transfer_address_of(self, node: Node) -> str | None:
        """Where other nodes pull ``node``'s objects from."""
        if node is self.head_node:
            return self.tcp_address
        return getattr(node.agent, "transfer_address", None)

    def pull_to(self, node: Node, oid: bytes, size: int, source: str, loc: list) -> None:
        if node is self.head_node:
            if self.puller is not None:
                self.puller.pull(oid, size, source, loc)
        else:
            node.agent.store.pull(oid, size, source, loc)

    def _pulled_here(self, oid: bytes, loc: list | None, why: str | None) -> None:
        self.transfers.pulled(self.head_node, oid, loc, why)

    def _watch_puller(self, sock) -> None:
        self.watch_fd(sock, lambda: self.puller.on_ready(sock))

    def send_object(self, client: Client, oid: bytes, entry) -> None:
        """Send ``client`` the ready object ``oid``: its blob, or where its process can map
        it (after a pull to its node, if the object is elsewhere)."""
        loc = entry.loc
        if loc is None:
            self.send(client.inbox, encode(Msg.OBJECT, oid, entry.status, None), (entry.blob,))
            return
        node = client.node
        if node is None:  # no store on its machine: it fetches the bytes from their node
            self.send(client.inbox, encode(Msg.OBJECT, oid, entry.status,
                                           self.transfers.remote_loc(entry)))
            return
        here = self.transfers.loc_on(entry, node)
        if here is None:
            self.transfers.want(oid, entry, node, client.key)
            return
        self.store_of(node).touch(here)
        self.send(client.inbox, encode(Msg.OBJECT, oid, entry.status, here))

    def free_copy(self, node: Node | None, loc: list) -> None:
        store = self.store_of(node)
        if store is not None:
            store.free_object(loc)

    def holds_copy(self, entry) -> bool:
        """Whether the stored copy an object's entry names is still there."""
        store = self.store_of(entry.node)
        return store is not None and store.holds(entry.loc)

    def _on_spilled(self, oid: bytes, loc: list) -> None:
        self.objects.relocate(oid, loc)

    def _release_actor(self, actor_id: bytes) -> None:
        self.actors.release(actor_id)

    # -- client messages ---------------------------------------------------------------------

    def on_submit(self, client: Client, fields: list, frames: list) -> None:
        spec = fields[0]
        if spec[S.WITH_FUNCTION]:
            self.tasks.functions[spec[S.FN_HASH]] = frames[1]
            self.functions_received += 1
        kind = spec[S.KIND]
        if kind == TaskKind.TASK:
            self.tasks.submit(client, spec, frames[0])
        elif kind == TaskKind.ACTOR_CALL:
            self.actors.call(client, spec, frames[0])
        elif kind == TaskKind.ACTOR_CREATE:
            self.actors.create(client, spec, frames[0])
        else:
            raise ProtocolError(f"unknown task kind {kind}")

    def on_called(self, client: Client, fields: list, frames: list) -> None:
        spec, address = fields
        if spec[S.KIND] != TaskKind.ACTOR_CALL or spec[S.DEPS] or not isinstance(address, str):
            raise ProtocolError("CALLED: not a direct actor call")
        self.actors.called(client, spec, address, frames[0])

    def on_put(self, client: Client, fields: list, frames: list) -> None:
        oid, loc, contained, contained_actors, status = fields
        if status not in (Status.OK, Status.ERROR):
            raise ProtocolError(f"PUT: bad status {status!r}")
        self.objects.create(oid, client.key, client.holds)
        node = client.node or self.head_node
        if loc is not None:
            self.store_of(node).sealed(loc, oid)
        # The putting process already has the value: mark it as not the owner to push to.
        entry = self.objects.entries[oid]
        entry.owner = None
        self.tasks.deliver(oid, status, loc, frames[0] if loc is None else None, contained,
                           contained_actors, node)

    def on_subscribe(self, client: Client, fields: list, _frames) -> None:
        for oid in fields[0]:
            self.subscribe(client, oid)

    def subscribe(self, client: Client, oid: bytes) -> None:
        """Send ``client`` the object's value now if it is ready, else when it is."""
        entry = self.objects.entries.get(oid)
        if entry is None:
            if self.tasks.streams.wait_item(client, oid):
                return  # a generator's item: sent when it is yielded
            if self.restored_at:
                why = ("the head of this cluster was restarted, and objects (task results "
                       "included) are not part of the state a head keeps; it may also have "
                       "been released")
            else:
                why = ("all references to it were released, or it was never created in "
                       "this cluster")
            self.send_error_object(client, oid, ObjectLostError(
                f"Object {oid.hex()} does not exist any more: {why}"))
        elif entry.status is not None:
            self.send_object(client, oid, entry)
        elif entry.subscribers is None:
            entry.subscribers = [client.key]
        elif client.key not in entry.subscribers:
            entry.subscribers.append(client.key)

    def send_error_object(self, client: Client, oid: bytes, exc: Exception) -> None:
        self.send(client.inbox, encode(Msg.OBJECT, oid, 1, None), (dumps_plain(exc),))

    def on_lost(self, client: Client, fields: list, _frames) -> None:
        self.tasks.object_lost(client, fields[0])

    def on_refs(self, client: Client, fields: list, _frames) -> None:
        oadd, odel, aadd, adel, streams_closed = fields
        objects = self.objects
        holds = client.holds
        for oid in oadd:
            objects.add_ref(oid, holds)
        for actor_id in aadd:
            self.actors.hold(client, actor_id)
        for oid in odel:
            objects.release(oid, holds)
        for actor_id in adel:
            self.actors.unhold(client, actor_id)
        for task_id, first, known in streams_closed:
            self.tasks.streams.close(client, task_id, first, known)

    def on_task_done(self, client: Client, fields: list, frames: list) -> None:
        worker = client.worker
        if worker is None:
            raise ProtocolError("TASK_DONE from a driver")
        task_id, results, retryable, direct, error = fields
        for result in results:
            if result[2] is not None:
                worker.node.agent.store.sealed(result[2], result[0])
        self.tasks.on_done(worker, task_id, results, retryable, frames, direct, error)

    def on_yield(self, client: Client, fields: list, frames: list) -> None:
        worker = client.worker
        if worker is None:
            raise ProtocolError("YIELD from a driver")
        task_id, index, result = fields
        loc = result[2]
        if loc is not None:
            worker.node.agent.store.sealed(loc, result[0])
        self.tasks.on_yield(worker, task_id, index, result, frames[0] if loc is None else None)

    def on_blocked(self, client: Client, fields: list, _frames) -> None:
        worker = client.worker
        if worker is None or worker.task is None:
            return
        blocked = bool(fields[0])
        if blocked == worker.blocked:
            return
        task = worker.task
        cpu = task.hold.get("CPU", 0)
        worker.node.mark_blocked(worker, blocked)
        if cpu:
            pool = task.pool or worker.node  # a task in a placement group lends its bundle's
            if blocked:
                pool.release({"CPU": cpu}, None)
            else:
                pool.acquire({"CPU": cpu})

    def on_cancel(self, client: Client, fields: list, _frames) -> None:
        oid, force, recursive = fields
        self.tasks.cancel(oid[:16], bool(force), bool(recursive))

    def on_kill_actor(self, client: Client, fields: list, _frames) -> None:
        self.actors.kill(fields[0], bool(fields[1]))

    def on_actor_ready(self, client: Client, fields: list, frames: list) -> None:
        actor_id, failed, address = fields
        if client.worker is None:
            raise ProtocolError("ACTOR_READY from a driver")
        self.actors.ready(client.worker, actor_id, bool(failed), frames[0] if failed else None,
                          address if isinstance(address, str) else None)

    def on_checkpoint(self, client: Client, fields: list, frames: list) -> None:
        self.actors.save_checkpoint(fields[0], frames[0])

    def on_log(self, client: Client, fields: list, _frames) -> None:
        header = encode(Msg.LOG, *fields)
        for key in self.drivers:
            self.send(key + b"<", header)

    def on_request(self, client: Client, fields: list, _frames) -> None:
        self.requests.handle(client, *fields)

    # -- shutdown ----------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop the node agent (it stops the workers and removes the object files), exit.
        Node agents of other machines are told to stop too."""
        self.jobs.shutdown()
        if self.dashboard is not None:
            self.dashboard.shutdown()
        for agent in self.remote_agents.values():
            agent.send(encode(Msg.SHUTDOWN))
        if self.autoscaler is not None:
            self.autoscaler.shutdown()
        if self.puller is not None:
            self.puller.close()
        if self.transfer_server is not None:
            self.transfer_server.close()
        if self.agent is not None:
            self.agent.shutdown()
        shm_dir = self.cfg.get("shm_dir")
        if shm_dir:
            remove_tree(shm_dir)
        if self.cfg.get("session_dir"):
            remove_tree(self.cfg["session_dir"])
        elif self.cfg.get("driver_pid") and self.address.startswith("ipc://"):
            # The driver may be gone (SIGTERM skips its own cleanup): its session directory
            # goes with the head. When the driver is alive it removes it again, harmlessly.
            remove_tree(os.path.dirname(self.address[len("ipc://"):]))
        self.sock.close(linger=0)
        if self.refusals is not None:
            self.refusals.close()
        if self.tcp is not None:
            self.tcp.close(linger=500)  # the SHUTDOWNs above
        if self.auth is not None:
            self.auth.stop()
        if self.control is not None:
            self.control.close()
        self.ctx.term()
