"""Actors in the head: placement, call routing, names and namespaces, handle counting, death.

An actor's creation is queued like a task (it needs resources to be placed), then it owns one
worker for life. Calls go to that worker in the order they reach the head; calls made before
placement wait here and follow the creation, in order. A caller whose calls have all finished
may be granted a direct route to a plain actor (zactor._direct); the head still books each
direct call (CALLED) as if it had forwarded it.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import TYPE_CHECKING

from zactor._serialization import dumps_plain
from zactor.exceptions import ActorDiedError, ActorUnavailableError
from zactor.head.memory import describe
from zactor.head.records import ActorRecord, CallerState, TaskRecord
from zactor.protocol import Msg, S, Status, encode

if TYPE_CHECKING:
    from zactor.head.broker import Broker
    from zactor.head.records import Client, Worker

log = logging.getLogger(__name__)
_now = time.time


class ActorManager:
    def __init__(self, head: Broker) -> None:
        self.head = head
        self.actors: dict[bytes, ActorRecord] = {}
        self.names: dict[tuple[str, str], bytes] = {}
        self.logged_fns: set[bytes] = set()  # classes already in the control log
        self.recovering: set[bytes] = set()  # restored actors whose worker has not called in

    # -- the control log (zactor.head.control_log) -------------------------------------------

    def _log(self, *record) -> None:
        control = self.head.control
        if control is not None:
            control.append(*record)

    def _log_creation(self, actor: ActorRecord) -> None:
        spec = actor.create.spec
        fn_hash = spec[S.FN_HASH]
        if fn_hash not in self.logged_fns:
            blob = self.head.tasks.functions.get(fn_hash)
            if blob is not None:
                self.logged_fns.add(fn_hash)
                self._log("fn", fn_hash, blob)
        self._log("actor", actor.actor_id, spec, actor.create.frames[0], actor.owner_key,
                  actor.owner)

    def snapshot(self) -> list[list]:
        """What the log must hold for the actors alive now (its compacted form)."""
        out: list[list] = []
        functions = self.head.tasks.functions
        fns = set()
        for actor in self.actors.values():
            if actor.state == "dead":
                continue
            spec = actor.create.spec
            fn_hash = spec[S.FN_HASH]
            if fn_hash not in fns and fn_hash in functions:
                fns.add(fn_hash)
                out.append(["fn", fn_hash, functions[fn_hash]])
            out.append(["actor", actor.actor_id, spec, actor.create.frames[0],
                        actor.owner_key, actor.owner])
            if actor.worker is not None:
                out.append(["alive", actor.actor_id, actor.worker.node.node_id])
        self.logged_fns = fns
        return out

    def restore(self, records: list[list], old_head_node: bytes | None) -> list[ActorRecord]:
        """Rebuild the actor table from a previous head's log. Actors wait ("recovering")
        for their workers to call in; those that lived on the old head's own node died with
        it and are returned, to be restarted (or ended) by the caller."""
        fns: dict[bytes, bytes] = {}
        created: dict[bytes, list] = {}
        where: dict[bytes, bytes] = {}
        for record in records:
            kind = record[0]
            if kind == "fn":
                fns[record[1]] = record[2]
            elif kind == "actor":
                created[record[1]] = record[2:]
            elif kind == "alive":
                where[record[1]] = record[2]
            elif kind == "dead":
                created.pop(record[1], None)
        functions = self.head.tasks.functions
        lost = []
        for actor_id, (spec, args_blob, owner_key, owner) in created.items():
            if spec[S.FN_HASH] in fns:
                functions[spec[S.FN_HASH]] = fns[spec[S.FN_HASH]]
            options = spec[S.OPTIONS]
            task = TaskRecord(spec, [args_blob], owner_key or b"", [],
                              options.get("place") or {}, spec[S.RESOURCES])
            task.state = "done"
            actor = ActorRecord(actor_id, task, options)
            actor.args_pinned = False  # argument objects did not survive the restart
            actor.owner, actor.owner_key = owner, owner_key
            actor.state = "recovering"
            self.actors[actor_id] = actor
            if actor.name is not None:
                self.names[(actor.namespace, actor.name)] = actor_id
            if where.get(actor_id) == old_head_node and old_head_node is not None:
                lost.append(actor)
            else:
                self.recovering.add(actor_id)
        if created:
            log.info("restored %d actor(s) from the control log", len(created))
        return lost

    def adopt(self, worker: Worker, actor_id: bytes, address: str | None) -> bool:
        """A worker that called in after a head restart hosts ``actor_id``: it is alive
        again, its held calls go to it. False if this head does not keep that actor."""
        actor = self.actors.get(actor_id)
        if actor is None or actor.state != "recovering":
            return False
        self.recovering.discard(actor_id)
        node = worker.node
        create = actor.create
        create.node, create.worker = node, worker
        create.assigned = node.acquire(create.hold)
        create.acquired = True
        actor.worker = worker
        worker.actor = actor
        node.busy_actors += 1
        actor.address = address if address and node is self.head.head_node else None
        actor.state = "alive"
        self._log("alive", actor_id, node.node_id)
        while actor.pending:
            self.send_call(actor, actor.pending.popleft())
        return True

    def resumed_client(self, client: Client, resume: dict) -> None:
        """A client of the previous head's called in: the handles it holds count again, and
        the actors it created are its own again."""
        for actor_id in resume.get("actor_holds") or ():
            if actor_id in self.actors:
                self.hold(client, actor_id)
        for actor in self.actors.values():
            if actor.owner_key == client.key and actor.state != "dead" and not actor.detached:
                client.owned_actors.add(actor.actor_id)

    def lost_with_old_head(self, actors: list[ActorRecord]) -> None:
        for actor in actors:
            self._after_worker_gone(actor, [], "died with the previous head")

    def recovery_over(self) -> None:
        """The grace period after a restart has passed: actors whose worker never called
        in are restarted (or end), actors whose owner never came back die with it, and
        actors nobody holds any more end."""
        for actor_id in list(self.recovering):
            actor = self.actors.get(actor_id)
            if actor is not None and actor.state == "recovering":
                self._after_worker_gone(actor, [], "did not reconnect after the head "
                                        "restarted")
        self.recovering.clear()
        clients = self.head.clients
        for actor in list(self.actors.values()):
            if actor.state == "dead" or actor.detached:
                continue
            if actor.owner_key is not None and actor.owner_key not in clients:
                self.died(actor, dumps_plain(ActorDiedError(
                    f"The actor {actor.class_name} died because its owner died: "
                    f"{actor.owner} did not come back after the head restarted.",
                    actor.actor_id.hex())), kill=True)
            elif actor.refs <= 0:
                self.terminate(actor, "no handle to it came back after the head restarted")

    # -- names -------------------------------------------------------------------------------

    def reserve_name(self, client: Client, actor_id: bytes, name: str, namespace: str,
                     get_if_exists: bool) -> list:
        key = (namespace, name)
        existing = self.names.get(key)
        if existing is not None:
            actor = self.actors.get(existing)
            if actor is None or actor.state != "dead":
                if get_if_exists and actor is not None:
                    self.hold(client, existing)
                    return ["exists", existing, actor.options.get("meta")]
                if get_if_exists and actor is None:
                    return ["exists", existing, None]
                raise LookupError(
                    f"An actor named {name!r} already exists in namespace {namespace!r}")
        self.names[key] = actor_id
        return ["ok"]

    def lookup(self, client: Client, name: str, namespace: str) -> list:
        actor_id = self.names.get((namespace, name))
        actor = self.actors.get(actor_id) if actor_id else None
        if actor is None or actor.state == "dead":
            raise KeyError(f"Failed to look up actor {name!r} in namespace {namespace!r}")
        self.hold(client, actor_id)
        return [actor_id, actor.options.get("meta")]

    def named(self, namespace: str | None) -> list:
        out = []
        for (ns, name), actor_id in self.names.items():
            actor = self.actors.get(actor_id)
            if actor is not None and actor.state != "dead" and (namespace is None
                                                                or ns == namespace):
                out.append({"name": name, "namespace": ns})
        return out

    # -- handles -----------------------------------------------------------------------------

    def hold(self, client: Client, actor_id: bytes) -> None:
        """``client`` holds a handle to the actor (holding two is holding one)."""
        holds = client.actor_holds
        if actor_id not in holds:
            holds.add(actor_id)
            self.add_ref(actor_id)

    def unhold(self, client: Client, actor_id: bytes) -> None:
        holds = client.actor_holds
        if actor_id in holds:
            holds.discard(actor_id)
            self.release(actor_id)

    def add_ref(self, actor_id: bytes) -> None:
        actor = self.actors.get(actor_id)
        if actor is not None:
            actor.refs += 1

    def release(self, actor_id: bytes) -> None:
        actor = self.actors.get(actor_id)
        if actor is None:
            return
        actor.refs -= 1
        if actor.refs <= 0 and not actor.detached and actor.state != "dead":
            why = "all handles to it went out of scope"
            if actor.worker is None and actor.pending and actor.state in ("pending",
                                                                          "restarting"):
                # Calls made before the last handle went still run (Ray's rule): it ends
                # once placed, after them.
                actor.doomed = why
                return
            self.terminate(actor, why)
        self._forget_if_unused(actor)

    def owner_gone(self, client: Client) -> None:
        """``client``'s process is gone: the non-detached actors it created die with it."""
        for actor_id in client.owned_actors:
            actor = self.actors.get(actor_id)
            if actor is None or actor.state == "dead":
                continue
            log.info("actor %s dies with its owner, %s", actor.class_name, actor.owner)
            self.died(actor, dumps_plain(ActorDiedError(
                f"The actor {actor.class_name} died because its owner died: {actor.owner} is "
                "gone. An actor shares the fate of the process that created it unless it was "
                "created with lifetime='detached'.", actor_id.hex())), kill=True)
        client.owned_actors.clear()

    def owns_live_actors(self, client: Client) -> bool:
        actors = self.actors
        owned = client.owned_actors
        for actor_id in list(owned):
            actor = actors.get(actor_id)
            if actor is not None and actor.state != "dead":
                return True
            owned.discard(actor_id)
        return False

    def _forget_if_unused(self, actor: ActorRecord) -> None:
        """A dead actor nobody can call any more (no handle left) leaves the table."""
        if actor.state == "dead" and actor.refs <= 0:
            if self.actors.pop(actor.actor_id, None) is not None:
                self.head.tasks.history.actor_gone(self.head, actor)

    # -- lifecycle ---------------------------------------------------------------------------

    def create(self, client: Client, spec: list, args_blob) -> None:
        options = spec[S.OPTIONS]
        place = options.get("place") or {}
        hold = spec[S.RESOURCES]
        tasks = self.head.tasks
        task = tasks.new_record(client, spec, args_blob, place, hold, 0)
        actor = ActorRecord(spec[S.ACTOR_ID], task, options)
        self.actors[actor.actor_id] = actor
        if actor.name is not None:
            self.names[(actor.namespace, actor.name)] = actor.actor_id
        if not actor.detached:
            client.owned_actors.add(actor.actor_id)
            actor.owner = f"the {describe(client)} that created it"
            actor.owner_key = client.key
        self._log_creation(actor)
        self.hold(client, actor.actor_id)
        if tasks.pin_args(task):
            tasks.wait_for_deps(task)

    def placed(self, task: TaskRecord, node, worker: Worker) -> None:
        actor = self.actors.get(task.spec[S.ACTOR_ID])
        task.worker = worker
        if actor is None or actor.state == "dead":  # killed or dropped while it waited
            self.head.tasks.finish(task)
            self.head.worker_idle(worker)
            return
        actor.worker = worker
        worker.actor = actor
        node.busy_actors += 1
        self.head.tasks.execute_frames(worker, task)
        self.head.scheduler.top_up(node)
        while actor.pending:
            self.send_call(actor, actor.pending.popleft())
        if actor.doomed is not None and actor.refs <= 0:
            self.terminate(actor, actor.doomed)

    def ready(self, worker: Worker, actor_id: bytes, failed: bool, blob,
              address: str | None = None) -> None:
        actor = self.actors.get(actor_id)
        if actor is None:
            return
        if not failed and actor.worker is worker:
            actor.address = address
        task = actor.create
        if task.state != "done":
            # The constructor's resources stay held for the actor's life; the record is done.
            task.state = "done"
            self.head.tasks.tasks.pop(task.task_id, None)
            if failed:
                task.error = (None, blob)  # the worker's ActorDiedError, zactor's own
            self.head.tasks.history.record(task)
            if actor.max_restarts == 0 and actor.supervisor is None:
                self._release_args(actor)  # it will never be rebuilt
        if failed:
            self.died(actor, blob, kill=True)
        elif actor.state in ("pending", "restarting"):
            actor.state = "alive"
            self._log("alive", actor_id, worker.node.node_id)

    def _release_args(self, actor: ActorRecord) -> None:
        if actor.args_pinned:
            actor.args_pinned = False
            self.head.tasks.unpin_args(actor.create)

    def placement_extra(self, actor_id: bytes) -> tuple:
        """What a (re)started actor's worker needs beyond the spec: its restart count and the
        state to restore, if it saved any."""
        actor = self.actors.get(actor_id)
        if actor is None:
            return (0, None)
        return (actor.restarts, actor.checkpoint)

    def save_checkpoint(self, actor_id: bytes, blob) -> None:
        actor = self.actors.get(actor_id)
        if actor is not None and actor.state != "dead":
            actor.checkpoint = blob

    def call(self, client: Client, spec: list, args_blob) -> None:
        actor = self.actors.get(spec[S.ACTOR_ID])
        caller = None
        if actor is not None:
            caller = self._count_call(actor, client.key)
            caller.granted = None  # a brokered call: the client holds no route now
            if caller.held or caller.direct_inflight:
                # It must not overtake the client's direct calls: it waits until they finish.
                task = self._book(client, spec, args_blob, actor, caller)
                if task is not None:
                    task.state = "held"
                    caller.held.append(task)
                return
            if actor.worker is not None and not spec[S.DEPS] and \
                    actor.state not in ("dead", "stopping"):
                # The common case, on the synchronous call's critical path: forward first,
                # book after (execute_frames would send exactly this: no function, no deps,
                # no placement for a call).
                worker = actor.worker
                self.head.send(worker.client.inbox,
                               encode(Msg.EXECUTE, spec, (), False, None), (args_blob,))
                task = self._book(client, spec, args_blob, actor, caller)
                task.worker = worker
                task.state = "running"
                task.started = task.created  # forwarded at once: no second clock read
                worker.calls[task.task_id] = task
                return
        task = self._book(client, spec, args_blob, actor, caller)
        if task is None:
            return
        if actor is None:
            self.head.tasks.complete_all(task, 1, None, _unknown_actor(spec))
        elif actor.state == "dead":
            self.head.tasks.complete_all(task, 1, None, actor.death_blob)
        elif actor.worker is None or actor.state == "stopping":
            task.state = "queued"
            actor.pending.append(task)
        else:
            self.send_call(actor, task)

    def called(self, client: Client, spec: list, address: str, args_blob) -> None:
        """The client sent this call straight to the actor's socket at ``address``: book it
        as running there, or, if that incarnation is gone, treat it as a call its process
        owed when it died."""
        tasks = self.head.tasks
        early = tasks.take_early(spec[S.TASK_ID])  # the actor may have answered already
        actor = self.actors.get(spec[S.ACTOR_ID])
        caller = None if actor is None else self._count_call(actor, client.key)
        task = self._book(client, spec, args_blob, actor, caller)
        if task is None:  # pragma: no cover - a direct call carries no dependency to lose
            return
        if early is not None:
            task.started = task.created
            if actor is not None and actor.worker is not None and actor.address == address:
                self.head.direct_calls += 1
                task.worker = actor.worker
                task.direct = True
                caller.direct_inflight += 1
            tasks.settle(task, *early)
        elif actor is None:
            tasks.complete_all(task, 1, None, _unknown_actor(spec))
        elif actor.worker is not None and actor.address == address:
            self.head.direct_calls += 1
            task.worker = actor.worker
            task.state = "running"
            task.started = task.created  # it reached the actor before this notice
            task.direct = True
            caller.direct_inflight += 1
            actor.worker.calls[task.task_id] = task
        elif actor.state == "dead":
            tasks.complete_all(task, 1, None, actor.death_blob)
        else:
            self._requeue_calls(actor, [task], "exited", front=False)

    def _book(self, client: Client, spec: list, args_blob, actor: ActorRecord | None,
              caller: CallerState | None) -> TaskRecord | None:
        """The head's record of a call, its arguments pinned; None if one of them is gone
        (the call has then failed)."""
        tasks = self.head.tasks
        task = tasks.new_record(client, spec, args_blob, {}, {}, spec[S.NUM_RETURNS])
        task.caller = caller
        if not tasks.pin_args(task):
            return None
        if actor is not None and spec[S.MAX_RETRIES] is None:
            task.retries_left = actor.max_task_retries
        return task

    def _count_call(self, actor: ActorRecord, key: bytes) -> CallerState:
        caller = self._caller(actor, key)
        caller.seen += 1
        caller.inflight += 1
        return caller

    def _caller(self, actor: ActorRecord, key: bytes) -> CallerState:
        caller = actor.callers.get(key)
        if caller is None:
            caller = actor.callers[key] = CallerState(key)
        return caller

    def call_finished(self, task: TaskRecord) -> None:
        """An actor call ended: release the calls held behind it, and grant its caller a
        direct route if none of its calls to the actor is left."""
        caller = task.caller
        task.caller = None
        caller.inflight -= 1
        if task.direct:
            task.direct = False
            caller.direct_inflight -= 1
        actor = self.actors.get(task.spec[S.ACTOR_ID])
        if actor is None:
            return
        if caller.held and not caller.direct_inflight:
            self._release_held(caller)
        self.grant(actor, caller)

    def grant_ahead(self, task: TaskRecord) -> None:
        actor = self.actors.get(task.spec[S.ACTOR_ID])
        if actor is not None:
            self.grant(actor, task.caller, 1)

    def grant(self, actor: ActorRecord, caller: CallerState, finishing: int = 0) -> None:
        """Offer ``caller`` a direct route if, ``finishing`` calls from now, none of its calls
        to ``actor`` is left."""
        if caller.inflight != finishing or caller.granted is not None or \
                actor.address is None or actor.state != "alive":
            return
        client = self.head.clients.get(caller.key)
        # Direct routes are ipc sockets on the head's machine: for local peers only.
        if client is not None and not client.remote and \
                (actor.worker is None or actor.worker.node is self.head.head_node):
            caller.granted = caller.connected = actor.address
            self.head.send(client.inbox, encode(Msg.ROUTE, actor.actor_id, actor.address,
                                                caller.seen))

    def undirect(self, task: TaskRecord) -> None:
        """A direct call is to run again through the head: it no longer holds calls back."""
        if task.direct:
            task.direct = False
            task.caller.direct_inflight -= 1

    def _release_held(self, caller: CallerState) -> None:
        held = caller.held
        while held and not caller.direct_inflight:
            task = held.popleft()
            if task.state != "done":  # cancelled while it waited
                self.resubmit(task)

    def _revoke(self, actor: ActorRecord) -> None:
        """The actor's process is gone: its direct routes end."""
        address = actor.address
        actor.address = None
        if address is None:
            return
        header = encode(Msg.ROUTE, actor.actor_id, address, -1)
        for caller in actor.callers.values():
            if caller.connected == address:
                caller.granted = caller.connected = None
                self.head.send(caller.key + b"<", header)

    def client_gone(self, key: bytes) -> None:
        for actor in self.actors.values():
            caller = actor.callers.pop(key, None)
            if caller is not None and caller.held:
                self._release_held(caller)

    def send_call(self, actor: ActorRecord, task: TaskRecord) -> None:
        worker = actor.worker
        task.worker = worker
        task.state = "running"
        task.started = _now()
        worker.calls[task.task_id] = task
        self.head.tasks.execute_frames(worker, task)

    def resubmit(self, task: TaskRecord) -> None:
        actor = self.actors.get(task.spec[S.ACTOR_ID])
        if actor is None or actor.state == "dead":
            blob = actor.death_blob if actor else _unknown_actor(task.spec)
            self.head.tasks.complete_all(task, 1, None, blob)
        elif actor.worker is None or actor.state == "stopping":
            task.state = "queued"
            actor.pending.append(task)
        else:
            self.send_call(actor, task)

    def forget_pending(self, task: TaskRecord) -> None:
        actor = self.actors.get(task.spec[S.ACTOR_ID])
        if actor is not None:
            try:
                actor.pending.remove(task)
            except ValueError:
                pass

    def kill(self, actor_id: bytes, no_restart: bool) -> None:
        actor = self.actors.get(actor_id)
        if actor is None or actor.state == "dead":
            return
        if not no_restart and actor.worker is not None and self._may_restart(actor):
            # Its process goes and worker_gone rebuilds it; calls from now on wait for that.
            actor.state = "stopping"
            self.head.kill_worker(actor.worker, signal.SIGKILL)
            return
        self.died(actor, dumps_plain(ActorDiedError(
            f"The actor {actor.class_name} was killed by zactor.kill()", actor_id.hex())),
            kill=True)

    def remove_with_group(self, actor: ActorRecord, exc: Exception) -> None:
        """Its placement group was removed: the actor dies, without restarts."""
        self.died(actor, dumps_plain(exc), kill=True)

    def exited(self, actor: ActorRecord) -> None:
        """The actor called exit_actor(): it ends for good, its queued calls fail. Its
        process exits by itself once told (it waits for this answer)."""
        if actor.state == "dead":
            return
        if actor.worker is not None:
            actor.worker.exiting = True
        self.died(actor, dumps_plain(ActorDiedError(
            f"The actor {actor.class_name} exited: it called exit_actor()",
            actor.actor_id.hex())))

    def terminate(self, actor: ActorRecord, why: str) -> None:
        """End an actor gracefully: calls already sent finish first."""
        blob = dumps_plain(ActorDiedError(f"The actor {actor.class_name} is dead: {why}",
                                          actor.actor_id.hex()))
        worker = actor.worker
        self._mark_dead(actor, blob)
        if worker is not None:
            worker.exiting = True
            self.head.send(worker.client.inbox, encode(Msg.EXIT))
        else:
            self._fail_pending(actor)
            if actor.create.state != "done":
                self.head.tasks.finish(actor.create)

    def died(self, actor: ActorRecord, blob, kill: bool = False, how: str = "",
             in_flight: list | None = None) -> None:
        """The actor is gone for good (killed, crashed out of restarts, constructor failed):
        fail every call it owed."""
        if blob is None:
            restarts = f" after {actor.restarts} restart(s)" if actor.restarts else ""
            blob = dumps_plain(ActorDiedError(
                f"The actor {actor.class_name} died unexpectedly{restarts}: its worker {how}",
                actor.actor_id.hex()))
        if actor.state != "dead":
            self._mark_dead(actor, blob)
        worker = actor.worker
        self._fail_pending(actor)
        for task in in_flight or ():
            self.head.tasks.complete_all(task, 1, None, actor.death_blob)
        if worker is not None:
            for task in list(worker.calls.values()):
                self.head.tasks.complete_all(task, 1, None, actor.death_blob)
            worker.calls.clear()
            if kill:
                worker.exiting = True
                self.head.kill_worker(worker, signal.SIGKILL)
        elif actor.create.state != "done":
            self.head.tasks.finish(actor.create)

    def _mark_dead(self, actor: ActorRecord, blob) -> None:
        if actor.state != "dead":
            self._log("dead", actor.actor_id)
        self.recovering.discard(actor.actor_id)
        if actor.create.state != "done" and actor.create.error is None:
            actor.create.error = (None, blob)  # its creation ends (finish) with its death
        actor.state = "dead"
        actor.death_blob = blob
        self._release_args(actor)
        actor.create.frames = [b""]  # its constructor arguments will not be needed again
        actor.checkpoint = None
        self.notify_exit(actor, "dead")
        self._stop_children(actor)
        self._forget_if_unused(actor)

    def _stop_children(self, actor: ActorRecord) -> None:
        """Children die with their supervisor, as in OTP."""
        for child in [a for a in self.actors.values()
                      if a.supervisor == actor.actor_id and a.state != "dead"]:
            self.died(child, dumps_plain(ActorDiedError(
                f"The actor {child.class_name} was stopped: its supervisor died",
                child.actor_id.hex())), kill=True)
        if actor.name is not None and self.names.get((actor.namespace, actor.name)) == \
                actor.actor_id:
            del self.names[(actor.namespace, actor.name)]

    def _fail_pending(self, actor: ActorRecord) -> None:
        while actor.pending:
            self.head.tasks.complete_all(actor.pending.popleft(), 1, None, actor.death_blob)

    def worker_gone(self, worker: Worker, how: str) -> None:
        actor = worker.actor
        if actor is None:
            return
        worker.node.busy_actors -= 1
        create = actor.create
        if create.acquired:
            self.head.tasks.release_resources(create)
        actor.worker = None
        self._revoke(actor)
        in_flight = list(worker.calls.values())
        worker.calls.clear()
        for task in in_flight:
            self.undirect(task)
        self._after_worker_gone(actor, in_flight, how)
        # Calls held behind direct ones follow the requeued calls, in order.
        for caller in list(actor.callers.values()):
            if caller.held:
                self._release_held(caller)

    def _after_worker_gone(self, actor: ActorRecord, in_flight: list, how: str) -> None:
        if actor.state == "dead":
            self.died(actor, actor.death_blob, in_flight=in_flight)
        elif actor.state == "stopping":  # its supervisor restarts it with its siblings
            self._requeue_calls(actor, in_flight, how)
            self.restart(actor)
        elif actor.supervisor is not None:
            self._hold_for_supervisor(actor, in_flight, how)
        elif self._may_restart(actor):
            self._requeue_calls(actor, in_flight, how)
            self.restart(actor)
        else:
            self.died(actor, None, how=how, in_flight=in_flight)

    def unschedulable(self, task: TaskRecord, exc: Exception) -> None:
        """The actor's creation can never be placed: it dies with ``exc``."""
        actor = self.actors.get(task.spec[S.ACTOR_ID])
        if actor is not None and actor.state != "dead":
            self.died(actor, dumps_plain(exc))

    def _may_restart(self, actor: ActorRecord) -> bool:
        return actor.max_restarts < 0 or actor.restarts < actor.max_restarts

    def _requeue_calls(self, actor: ActorRecord, in_flight: list, how: str,
                       front: bool = True) -> None:
        """Calls the dead process owed: retried on the next incarnation while
        max_task_retries allows, else they fail with ActorUnavailableError (Ray's rule).
        ``front=False``: a direct call the head heard of after the death, which follows the
        calls requeued then."""
        retry = []
        tasks = self.head.tasks
        for task in in_flight:
            if task.retries_left != 0:
                if task.retries_left > 0:
                    task.retries_left -= 1
                task.state = "queued"
                task.worker = None
                task.attempt += 1
                retry.append(task)
            else:
                tasks.complete_all(task, Status.ERROR, None, dumps_plain(ActorUnavailableError(
                    f"The actor {actor.class_name} is unavailable: its worker {how} while "
                    f"running {task.spec[S.NAME]}, which may or may not have run. The actor "
                    "is restarting; set max_task_retries to retry such calls.",
                    actor.actor_id.hex())))
        if front:
            actor.pending.extendleft(reversed(retry))
        else:
            for task in retry:
                self.resubmit(task)

    def restart(self, actor: ActorRecord) -> None:
        """Rebuild the actor in place (same id, same handles) from its constructor."""
        actor.restarts += 1
        actor.state = "restarting"
        create = actor.create
        create.attempt = actor.restarts  # its next creation is a new attempt in the history
        create.created = _now()
        create.started = 0.0
        create.error = None
        create.state = "queued"
        create.worker = None
        create.node = None
        create.assigned = None
        self.head.scheduler.enqueue(create)

    # -- supervision -------------------------------------------------------------------------

    def _hold_for_supervisor(self, actor: ActorRecord, in_flight: list, how: str) -> None:
        """A supervised actor's process died: its calls wait while its supervisor decides."""
        actor.state = "stopped"
        self._requeue_calls(actor, in_flight, how)
        self._stop_children(actor)  # a supervisor's restart starts its subtree afresh
        self.notify_exit(actor, how)

    def supervisor_restart(self, actor_id: bytes) -> bool:
        actor = self.actors.get(actor_id)
        if actor is None or actor.state == "dead":
            return False
        if actor.state == "stopped":
            self.restart(actor)
        elif actor.state == "alive" and actor.worker is not None:
            # A one_for_all / rest_for_one sibling: its process goes, then it is rebuilt.
            actor.state = "stopping"
            self.head.kill_worker(actor.worker, signal.SIGKILL)
        # pending, restarting, stopping: already on its way to a fresh start
        return True

    def notify_exit(self, actor: ActorRecord, how: str) -> None:
        watchers = actor.exit_watchers
        if not watchers:
            return
        actor.exit_watchers = None
        for key, req_id in watchers:
            client = self.head.clients.get(key)
            if client is not None:
                self.head.send(client.inbox, encode(
                    Msg.REPLY, req_id, True, [actor.actor_id, actor.state, how]))

    def watch_exit(self, client: Client, req_id: int, actor_id: bytes) -> bool:
        """Reply to ``req_id`` when the actor's process next dies; False if it is dead."""
        actor = self.actors.get(actor_id)
        if actor is None or actor.state == "dead":
            return False
        if actor.state == "stopped":
            self.head.send(client.inbox, encode(
                Msg.REPLY, req_id, True, [actor.actor_id, actor.state, "stopped"]))
            return True
        if actor.exit_watchers is None:
            actor.exit_watchers = []
        actor.exit_watchers.append((client.key, req_id))
        return True


def _unknown_actor(spec: list) -> bytes:
    return dumps_plain(ActorDiedError(
        f"Cannot call {spec[S.NAME]}: the actor is unknown to this cluster"))
