"""The head's event loop: one ROUTER socket, a dispatch table from message type to handler.

    drivers ──┐                         ┌── ObjectDirectory (values, refcounts, waiters)
    workers ──┼─► ROUTER ─► dispatch ───┼── TaskManager     (deps, retries, cancel)
    agents  ──┘      ▲                  ├── ActorManager    (placement, calls, names)
                     └── replies ◄──────┴── Scheduler       (resources, warm workers)

Handlers run to completion; the scheduler runs once per batch of messages, not per message.
A message that does not parse, comes from an unknown peer or makes a handler raise is counted
in ``dropped`` and logged — it never stops the loop.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from typing import Any

import zmq

from zactor import config
from zactor._process import describe_exit, kill, pidfd
from zactor.head.actors import ActorManager
from zactor.head.objects import ObjectDirectory
from zactor.head.records import Client, Worker
from zactor.head.scheduler import Node, Scheduler
from zactor.head.tasks import TaskManager
from zactor.protocol import Msg, ProtocolError, S, TaskKind, decode, encode

log = logging.getLogger(__name__)

_NODE_MESSAGES = frozenset({Msg.NODE_HELLO, Msg.WORKER_EXIT})


class Broker:
    def __init__(self, cfg: dict, agent_pid: int | None = None) -> None:
        self.cfg = cfg
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        for opt, val in ((zmq.SNDHWM, 0), (zmq.RCVHWM, 0), (zmq.LINGER, 0)):
            self.sock.setsockopt(opt, val)
        self.address = cfg["address"]
        self.sock.bind(self.address)
        self.agent_pid = agent_pid
        self.clients: dict[bytes, Client] = {}
        self.drivers: dict[bytes, Client] = {}
        self.agents: dict[bytes, Node] = {}
        self.workers_by_pid: dict[int, Worker] = {}
        self.objects = ObjectDirectory(self.free_file, self._release_actor)
        self.scheduler = Scheduler(self._dispatch, self._spawn)
        self.tasks = TaskManager(self)
        self.actors = ActorManager(self)
        self.sys_path: list[str] = list(cfg.get("sys_path", []))
        self.dropped = 0
        self.stopping = False
        self._free_batches: dict[bytes, list[str]] = {}
        # Drivers are welcomed once a node has joined, so their first view of the cluster's
        # resources is complete.
        self._unwelcomed: list[tuple[bytes, Client]] = []
        self._send = self.sock.send_multipart
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
        }

    # -- plumbing ----------------------------------------------------------------------------

    def send(self, identity: bytes, header: bytes, frames: tuple | list = ()) -> None:
        try:
            self._send([identity, header, *frames], copy=False) if frames else \
                self._send([identity, header])
        except zmq.ZMQError as exc:  # pragma: no cover - peer vanished mid-send
            log.debug("send to %r failed: %s", identity, exc)

    def drop(self, why: str) -> None:
        self.dropped += 1
        log.warning("dropped a message: %s", why)

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        watch: dict[int, str] = {}
        driver_pid = self.cfg.get("driver_pid")
        for pid, what in ((driver_pid, "driver"), (self.agent_pid, "agent")):
            if pid:
                fd = pidfd(pid)
                if fd is None:
                    log.warning("the %s (pid %d) is already gone; stopping", what, pid)
                    return
                watch[fd] = what
                poller.register(fd, zmq.POLLIN)
        recv = self.sock.recv_multipart
        handle = self.handle
        schedule = self.scheduler.schedule
        last_reap = time.monotonic()
        while not self.stopping:
            events = poller.poll(1000)
            for sock_or_fd, _ in events:
                if sock_or_fd is self.sock:
                    for _ in range(2000):
                        try:
                            frames = recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        handle(frames)
                        if self.stopping:
                            return
                    schedule()
                    if self._free_batches:
                        self._flush_frees()
                else:
                    log.info("the %s exited; the head stops", watch[sock_or_fd])
                    self.stopping = True
            now = time.monotonic()
            if now - last_reap > 1.0:
                last_reap = now
                self.scheduler.reap_idle(now, self.retire_worker)

    def handle(self, frames: list) -> None:
        if len(frames) < 2:
            self.drop("no header frame")
            return
        try:
            mtype, fields = decode(frames[1])
        except ProtocolError as exc:
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
            elif mtype in _NODE_MESSAGES:
                self.on_node_message(identity, mtype, fields)
            else:
                client = self.clients.get(identity[:-1])
                handler = self.handlers.get(mtype)
                if client is None or handler is None:
                    self.drop(f"{mtype.name} from an unknown peer or of a head-bound type")
                    return
                handler(client, fields, frames[2:])
        except Exception as exc:  # noqa: BLE001 - a bad message must not stop the head
            self.dropped += 1
            log.exception("dropped %s: handler failed: %s", mtype.name, exc)

    # -- clients -----------------------------------------------------------------------------

    def on_hello(self, identity: bytes, fields: list) -> None:
        kind, pid, node_id, info = fields
        if not isinstance(info, dict) or kind not in ("driver", "worker"):
            raise ProtocolError("bad HELLO")
        key = identity[:-1]
        client = Client(key, kind, pid, info)
        self.clients[key] = client
        if kind == "worker":
            node = self.scheduler.nodes.get(node_id)
            if node is None:
                raise ProtocolError("worker of an unknown node")
            worker = Worker(client, node, pid)
            client.worker = worker
            node.workers[pid] = worker
            node.starting = max(0, node.starting - 1)
            self.workers_by_pid[pid] = worker
            self.worker_idle(worker)
            self._welcome(client)
        else:
            self.drivers[key] = client
            for p in info.get("sys_path", []):
                if p not in self.sys_path:
                    self.sys_path.append(p)
            if self.scheduler.nodes:
                self._welcome(client)
            else:
                self._unwelcomed.append(client)

    def _welcome(self, client: Client) -> None:
        welcome: dict[str, Any] = {
            "session": self.cfg["session"],
            "shm_dir": self.cfg["shm_dir"],
            "head_node_id": next(iter(self.scheduler.nodes), b""),
            "resources": self.scheduler.totals(),
        }
        if client.worker is not None:
            welcome["sys_path"] = self.sys_path
            welcome["cwd"] = self.cfg.get("cwd")
        self.send(client.inbox, encode(Msg.WELCOME, welcome))

    def drop_client(self, client: Client) -> None:
        self.clients.pop(client.key, None)
        self.drivers.pop(client.key, None)
        self.objects.release_all(client.holds)
        for actor_id, n in list(client.actor_holds.items()):
            for _ in range(n):
                self.actors.unhold(client, actor_id)

    def on_goodbye(self, client: Client, fields: list, _frames) -> None:
        self.drop_client(client)
        if fields[0]:
            self.stopping = True

    # -- workers and nodes -------------------------------------------------------------------

    def on_node_message(self, identity: bytes, mtype: Msg, fields: list) -> None:
        if mtype == Msg.NODE_HELLO:
            node_id, resources, info = fields
            node = Node(node_id, identity, resources, info)
            self.agents[identity] = node
            self.scheduler.add_node(node)
            self.scheduler.top_up(node)
            for client in self._unwelcomed:
                self._welcome(client)
            self._unwelcomed.clear()
            return
        node = self.agents.get(identity)
        if node is None:
            raise ProtocolError("message from an unknown node agent")
        pid, exitcode, sig = fields
        self.worker_exited(node, pid, exitcode, sig)

    def worker_idle(self, worker: Worker) -> None:
        if worker.actor is None and not worker.exiting:
            worker.idle_since = time.monotonic()
            worker.node.idle.append(worker)

    def worker_exited(self, node: Node, pid: int, exitcode, sig) -> None:
        worker = self.workers_by_pid.pop(pid, None)
        if worker is None:
            node.starting = max(0, node.starting - 1)
            self.scheduler.top_up(node)
            return
        node.workers.pop(pid, None)
        try:
            node.idle.remove(worker)
        except ValueError:
            pass
        how = describe_exit(exitcode, sig)
        if not worker.exiting:
            log.warning("worker pid %d %s", pid, how)
        self.tasks.worker_died(worker, how)
        self.actors.worker_gone(worker, how)
        self.drop_client(worker.client)
        if not self.stopping:
            self.scheduler.top_up(node)

    def _dispatch(self, task, node: Node, worker: Worker) -> None:
        self.tasks.dispatch(task, node, worker)

    def _spawn(self, node: Node, count: int) -> None:
        self.send(node.identity, encode(Msg.SPAWN, count))

    def kill_worker(self, worker: Worker, sig: int = signal.SIGKILL) -> None:
        worker.exiting = True
        self.send(worker.node.identity, encode(Msg.KILL_WORKER, worker.pid, int(sig)))

    def retire_worker(self, worker: Worker) -> None:
        worker.exiting = True
        self.send(worker.client.inbox, encode(Msg.EXIT))

    def free_file(self, node: Node | None, path: str) -> None:
        if node is None:
            node = next(iter(self.scheduler.nodes.values()), None)
            if node is None:
                return
        batch = self._free_batches.get(node.identity)
        if batch is None:
            batch = self._free_batches[node.identity] = []
        batch.append(path)

    def _flush_frees(self) -> None:
        for identity, paths in self._free_batches.items():
            self.send(identity, encode(Msg.FREE, paths))
        self._free_batches.clear()

    def _release_actor(self, actor_id: bytes) -> None:
        self.actors.release(actor_id)

    # -- client messages ---------------------------------------------------------------------

    def on_submit(self, client: Client, fields: list, frames: list) -> None:
        spec = fields[0]
        if spec[S.WITH_FUNCTION]:
            self.tasks.functions[spec[S.FN_HASH]] = frames[1]
        kind = spec[S.KIND]
        if kind == TaskKind.TASK:
            self.tasks.submit(client, spec, frames[0])
        elif kind == TaskKind.ACTOR_CALL:
            self.actors.call(client, spec, frames[0])
        elif kind == TaskKind.ACTOR_CREATE:
            self.actors.create(client, spec, frames[0])
        else:
            raise ProtocolError(f"unknown task kind {kind}")

    def on_put(self, client: Client, fields: list, frames: list) -> None:
        oid, loc, contained, contained_actors = fields
        self.objects.create(oid, client.key, client.holds)
        node = client.worker.node if client.worker else None
        # The putting process already has the value: mark it as not the owner to push to.
        entry = self.objects.entries[oid]
        entry.owner = None
        self.tasks.deliver(oid, 0, loc, frames[0] if loc is None else None, contained,
                           contained_actors, node)

    def on_subscribe(self, client: Client, fields: list, _frames) -> None:
        entries = self.objects.entries
        for oid in fields[0]:
            entry = entries.get(oid)
            if entry is None:
                from zactor._serialization import dumps_plain
                from zactor.exceptions import ObjectLostError

                blob = dumps_plain(ObjectLostError(
                    f"Object {oid.hex()} does not exist any more (all references to it were "
                    "released, or it was never created in this cluster)"))
                self.send(client.inbox, encode(Msg.OBJECT, oid, 1, None), (blob,))
            elif entry.status is not None:
                self.send(client.inbox, encode(Msg.OBJECT, oid, entry.status, entry.loc),
                          (entry.blob,) if entry.loc is None else ())
            elif entry.subscribers is None:
                entry.subscribers = [client.key]
            else:
                entry.subscribers.append(client.key)

    def on_refs(self, client: Client, fields: list, _frames) -> None:
        oadd, odel, aadd, adel = fields
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

    def on_task_done(self, client: Client, fields: list, frames: list) -> None:
        worker = client.worker
        if worker is None:
            raise ProtocolError("TASK_DONE from a driver")
        task_id, results, retryable = fields
        self.tasks.on_done(worker, task_id, results, retryable, frames)

    def on_blocked(self, client: Client, fields: list, _frames) -> None:
        worker = client.worker
        if worker is None or worker.task is None:
            return
        blocked = bool(fields[0])
        if blocked == worker.blocked:
            return
        task = worker.task
        cpu = task.hold.get("CPU", 0)
        worker.blocked = blocked
        if cpu:
            if blocked:
                worker.node.release({"CPU": cpu}, None)
            else:
                worker.node.acquire({"CPU": cpu})

    def on_cancel(self, client: Client, fields: list, _frames) -> None:
        oid, force, recursive = fields
        self.tasks.cancel(oid[:16], bool(force), bool(recursive))

    def on_kill_actor(self, client: Client, fields: list, _frames) -> None:
        self.actors.kill(fields[0], bool(fields[1]))

    def on_actor_ready(self, client: Client, fields: list, frames: list) -> None:
        actor_id, failed = fields
        if client.worker is None:
            raise ProtocolError("ACTOR_READY from a driver")
        self.actors.ready(client.worker, actor_id, bool(failed), frames[0] if failed else None)

    def on_log(self, client: Client, fields: list, _frames) -> None:
        header = encode(Msg.LOG, *fields)
        for key in self.drivers:
            self.send(key + b"<", header)

    def on_request(self, client: Client, fields: list, _frames) -> None:
        req_id, what, args = fields
        try:
            value = self._answer(client, what, args)
            ok = True
        except LookupError as exc:
            is_name = what == "reserve_name"
            value = ["ActorNameTakenError" if is_name else "ValueError", str(exc.args[0])]
            ok = False
        except (TypeError, ValueError) as exc:
            value = [type(exc).__name__, str(exc)]
            ok = False
        self.send(client.inbox, encode(Msg.REPLY, req_id, ok, value))

    def _answer(self, client: Client, what: str, args: Any) -> Any:
        sched = self.scheduler
        if what == "cluster_resources":
            return sched.totals()
        if what == "available_resources":
            return sched.availability()
        if what == "nodes":
            return [
                {"NodeID": n.node_id.hex(), "Alive": n.alive, "Resources": n.total,
                 "NodeManagerAddress": n.info.get("ip", "127.0.0.1"),
                 "NodeManagerHostname": n.info.get("hostname", ""),
                 "NodeName": n.info.get("ip", "127.0.0.1"), "alive": n.alive}
                for n in sched.nodes.values()
            ]
        if what == "reserve_name":
            actor_id, name, namespace, get_if_exists = args
            return self.actors.reserve_name(client, actor_id, name, namespace, get_if_exists)
        if what == "get_actor":
            name, namespace = args
            return self.actors.lookup(client, name, namespace)
        if what == "list_named_actors":
            return self.actors.named(args)
        if what == "stats":
            return {"dropped_messages": self.dropped, "tasks": len(self.tasks.tasks),
                    "objects": len(self.objects.entries), "clients": len(self.clients),
                    "workers": len(self.workers_by_pid), "queued": sched.queued,
                    "actors": sum(1 for a in self.actors.actors.values() if a.state != "dead")}
        if what == "worker_pids":
            return sorted(self.workers_by_pid)
        raise ValueError(f"unknown request {what!r}")

    # -- shutdown ----------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop the node agents (they stop their workers and remove their files), then exit."""
        for identity in self.agents:
            self.send(identity, encode(Msg.SHUTDOWN))
        if self.agent_pid and not self.agents:  # it has not registered: it cannot be told
            kill(self.agent_pid, signal.SIGTERM)
        if self.agent_pid:
            deadline = time.monotonic() + config.SHUTDOWN_TIMEOUT_S
            while time.monotonic() < deadline:
                try:
                    done, _ = os.waitpid(self.agent_pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                time.sleep(0.01)
            else:
                kill(self.agent_pid)
                try:
                    os.waitpid(self.agent_pid, 0)
                except ChildProcessError:
                    pass
        shm_dir = self.cfg.get("shm_dir")
        if shm_dir:
            shutil.rmtree(shm_dir, ignore_errors=True)
        self.sock.close(linger=0)
        self.ctx.term()
