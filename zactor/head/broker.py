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

import logging
import os
import signal
import time
from typing import Any

import zmq

from zactor import config
from zactor._process import describe_exit, pidfd, remove_tree
from zactor._serialization import dumps_plain
from zactor._transport import POLLIN, has_message, recv_parts, router, send_routed, zmq_poll
from zactor.exceptions import ObjectLostError
from zactor.head.actors import ActorManager
from zactor.head.objects import ObjectDirectory
from zactor.head.records import Client, Worker
from zactor.head.requests import Requests
from zactor.head.scheduler import Node, Scheduler
from zactor.head.tasks import TaskManager
from zactor.node.agent import NodeAgent
from zactor.protocol import Msg, ProtocolError, S, Status, TaskKind, decode, encode

log = logging.getLogger(__name__)


class Broker:
    def __init__(self, cfg: dict, agent: NodeAgent | None = None) -> None:
        self.cfg = cfg
        self.ctx = zmq.Context()
        self.address = cfg["address"]
        self.sock = router(self.ctx, self.address)
        self.agent = agent
        self.clients: dict[bytes, Client] = {}
        self.drivers: dict[bytes, Client] = {}
        self.workers_by_pid: dict[int, Worker] = {}
        self.objects = ObjectDirectory(self.free_copy, self._release_actor)
        self.scheduler = Scheduler(self._dispatch, self._spawn, self.notify_drivers)
        self.tasks = TaskManager(self)
        self.actors = ActorManager(self)
        self.requests = Requests(self)
        self.sys_path: list[str] = list(cfg.get("sys_path", []))
        self.dropped = 0
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
        if agent is not None:
            agent.store.on_spilled = self._on_spilled
            node = Node(agent.node_id, agent, agent.resources, agent.info)
            self.scheduler.add_node(node)
            self.scheduler.top_up(node)

    # -- plumbing ----------------------------------------------------------------------------

    def send(self, identity: bytes, header: bytes, frames: tuple | list = ()) -> None:
        try:
            send_routed(self.sock, identity, header, frames)
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
        sock = self.sock
        handle = self.handle
        schedule = self.scheduler.schedule
        handlers = self.fd_handlers
        last_reap = time.monotonic()
        while not self.stopping:
            # zmq_poll on a plain list: zmq.Poller wraps every result in enum objects.
            events = zmq_poll(self.watched, 1000)
            for sock_or_fd, _ in events:
                if sock_or_fd is sock:
                    for _ in range(2000):
                        try:
                            frames = recv_parts(sock)
                        except zmq.Again:
                            break
                        handle(frames)
                        if self.stopping:
                            return
                        if not has_message(sock):
                            break
                else:
                    on_ready = handlers.get(sock_or_fd)
                    if on_ready is not None:
                        on_ready()
                schedule()
            now = time.monotonic()
            if now - last_reap > 1.0:
                last_reap = now
                self.scheduler.reap_idle(now, self.retire_worker, self._keep_worker)
                for node in self.scheduler.nodes.values():
                    node.agent.store.housekeeping(now)

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
                    self.drop(f"{mtype.name} from an unknown peer or of a head-bound type")
                    return
                handler(client, fields, frames[2:])
        except Exception as exc:  # noqa: BLE001 - a bad message must not stop the head
            self.dropped += 1
            log.exception("dropped %s: handler failed: %s", mtype.name, exc)

    # -- clients -----------------------------------------------------------------------------

    def on_hello(self, identity: bytes, fields: list) -> None:
        kind, pid, node_id, info = fields
        if kind == "control":  # a worker's cancellation socket announcing itself
            return
        if not isinstance(info, dict) or kind not in ("driver", "worker", "observer"):
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
        elif kind == "observer":  # zactor memory, zactor status: asks, submits nothing
            self._watch_driver(client)
            self._welcome(client)
        else:
            self.drivers[key] = client
            if pid != self.cfg.get("driver_pid"):
                self._watch_driver(client)
            for p in info.get("sys_path", []):
                if p not in self.sys_path:
                    self.sys_path.append(p)
            self._welcome(client)

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
        store = self.store_of(client.worker.node if client.worker else None)
        welcome: dict[str, Any] = {
            "session": self.cfg["session"],
            "shm_dir": self.cfg["shm_dir"],
            "store": [store.arena_path, store.capacity] if store else [None, 0],
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
        self._unwatch_client(client)
        if client.owned_actors:
            self.actors.owner_gone(client)
        self.tasks.client_gone(client.key)
        self.actors.client_gone(client.key)
        store = self.store_of(client.worker.node if client.worker else None)
        if store is not None:
            store.client_gone(client.key)
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
        for pid, exitcode, sig in exits:
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
            # INFO, not WARNING: what it means for the user's work (a retry, a restart, an
            # error naming the exit code) reaches the user through that work.
            log.info("worker pid %d %s", pid, how)
        self.tasks.worker_died(worker, how)
        node.mark_blocked(worker, False)
        self.actors.worker_gone(worker, how)
        self.drop_client(worker.client)
        if not self.stopping:
            self.scheduler.top_up(node)

    def _dispatch(self, task, node: Node, worker: Worker) -> None:
        self.tasks.dispatch(task, node, worker)

    def _spawn(self, node: Node, count: int) -> None:
        node.agent.spawn(count)

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
        """The object store of ``node`` (None: a driver's, which is the head's node's)."""
        if node is None:
            node = next(iter(self.scheduler.nodes.values()), None)
            if node is None:
                return None
        return node.agent.store

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
        node = client.worker.node if client.worker else None
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
            self.send_error_object(client, oid, ObjectLostError(
                f"Object {oid.hex()} does not exist any more (all references to it were "
                "released, or it was never created in this cluster)"))
        elif entry.status is not None:
            if entry.loc is not None:
                self.store_of(entry.node).touch(entry.loc)
            self.send(client.inbox, encode(Msg.OBJECT, oid, entry.status, entry.loc),
                      (entry.blob,) if entry.loc is None else ())
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
        task_id, results, retryable, direct = fields
        for result in results:
            if result[2] is not None:
                worker.node.agent.store.sealed(result[2], result[0])
        self.tasks.on_done(worker, task_id, results, retryable, frames, direct)

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
        """Stop the node agent (it stops the workers and removes the object files), exit."""
        if self.agent is not None:
            self.agent.shutdown()
        shm_dir = self.cfg.get("shm_dir")
        if shm_dir:
            remove_tree(shm_dir)
        if self.cfg.get("driver_pid") and self.address.startswith("ipc://"):
            # The driver may be gone (SIGTERM skips its own cleanup): its session directory
            # goes with the head. When the driver is alive it removes it again, harmlessly.
            remove_tree(os.path.dirname(self.address[len("ipc://"):]))
        self.sock.close(linger=0)
        self.ctx.term()
