"""Task lifecycle in the head: submit → wait for dependencies → queue → run → done (or retry).

Normal tasks wait here until every top-level ObjectRef argument is ready, then queue in the
scheduler. Actor calls skip the queue and go straight to the actor's worker in arrival order
(the worker resolves arguments that are not ready yet), which keeps each caller's submission
order.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from zactor import _ids, config
from zactor._serialization import dumps_plain
from zactor.exceptions import ObjectLostError, TaskCancelledError, WorkerCrashedError
from zactor.head.lineage import Lineage
from zactor.head.records import TaskRecord
from zactor.head.state import TaskHistory
from zactor.head.streams import Streams
from zactor.protocol import STREAMING, Msg, S, Status, TaskKind, encode, return_count

if TYPE_CHECKING:
    from zactor.head.broker import Broker
    from zactor.head.records import Client, Worker

log = logging.getLogger(__name__)
_now = time.time


class TaskManager:
    def __init__(self, head: Broker) -> None:
        self.head = head
        self.objects = head.objects
        self.tasks: dict[bytes, TaskRecord] = {}
        self.children: dict[bytes, set[bytes]] = {}
        self.functions: dict[bytes, bytes] = {}
        # Finished tasks that made an object in the store, to run again if it is lost.
        self.lineage = Lineage(self)
        self.streams = Streams(self)  # generator tasks' items
        self.history = TaskHistory(config.TASK_HISTORY_MAX)  # finished tasks, for the state API
        # Results of direct actor calls that reached the head before the caller's CALLED did:
        # task id -> (node, results, retryable, blobs, replied), and who made each call.
        self.early: dict[bytes, tuple] = {}
        self.early_by_caller: dict[bytes, set[bytes]] = {}

    # -- submission --------------------------------------------------------------------------

    def new_record(self, client: Client, spec: list, args_blob, place: dict, hold: dict,
                   num_returns: int) -> TaskRecord:
        task_id = spec[S.TASK_ID]
        num_returns = return_count(num_returns)
        rids = _ids.return_ids(task_id, num_returns) if num_returns else []
        create = self.objects.create
        holds = client.holds
        for rid in rids:
            create(rid, client.key, holds)
        task = TaskRecord(spec, [args_blob], client.key, rids, place, hold)
        self.tasks[task_id] = task
        if spec[S.NUM_RETURNS] == STREAMING:
            self.streams.open(task)
        parent = task.parent
        if parent:
            kids = self.children.get(parent)
            if kids is None:
                kids = self.children[parent] = set()
            kids.add(task_id)
        return task

    def pin_args(self, task: TaskRecord) -> bool:
        """Hold the task's argument objects and actors until it ends; False if one is gone."""
        spec = task.spec
        objects = self.objects
        ok = True
        for oid in spec[S.DEPS]:
            ok = objects.add_ref(oid) and ok
        for oid in spec[S.CONTAINED]:
            objects.add_ref(oid)
        for actor_id in spec[S.CONTAINED_ACTORS]:
            self.head.actors.add_ref(actor_id)
        if not ok:
            lost = [o.hex() for o in spec[S.DEPS] if o not in objects.entries]
            self.fail(task, ObjectLostError(
                f"Task {spec[S.NAME]}: argument object(s) {', '.join(lost)} no longer exist"))
        return ok

    def unpin_args(self, task: TaskRecord) -> None:
        spec = task.spec
        release = self.objects.release
        for oid in spec[S.DEPS]:
            release(oid)
        for oid in spec[S.CONTAINED]:
            release(oid)
        for actor_id in spec[S.CONTAINED_ACTORS]:
            self.head.actors.release(actor_id)

    def submit(self, client: Client, spec: list, args_blob) -> None:
        res = spec[S.RESOURCES]
        task = self.new_record(client, spec, args_blob, res, res, spec[S.NUM_RETURNS])
        if self.pin_args(task):
            self.wait_for_deps(task)

    def wait_for_deps(self, task: TaskRecord) -> None:
        entries = self.objects.entries
        for oid in task.spec[S.DEPS]:
            entry = entries[oid]
            if entry.status is None:
                if entry.waiting_tasks is None:
                    entry.waiting_tasks = [task]
                else:
                    entry.waiting_tasks.append(task)
                task.waiting += 1
        if task.waiting == 0:
            self.deps_ready(task)

    def deps_ready(self, task: TaskRecord) -> None:
        if task.state != "waiting":
            return
        entries = self.objects.entries
        for oid in task.spec[S.DEPS]:
            entry = entries.get(oid)
            if entry is not None and entry.status == Status.ERROR:
                # An argument failed: the task fails with the same error, without running.
                self.complete_all(task, Status.ERROR, entry.loc, entry.blob)
                return
        if task.env is not None and task.env not in self.head.envs.envs:
            from zactor.exceptions import RuntimeEnvSetupError

            self.cannot_run(task, RuntimeEnvSetupError(
                f"Task {task.spec[S.NAME]}: its runtime environment {task.env} was never "
                "registered with this head"))
            return
        task.state = "queued"
        if len(self.head.scheduler.nodes) > 1:
            task.prefer = self._holder_of_args(task)
        self.head.scheduler.enqueue(task)

    def _holder_of_args(self, task: TaskRecord):
        """The node that stores most bytes of ``task``'s arguments (None: none stored)."""
        entries = self.objects.entries
        head_node = self.head.head_node
        sizes: dict = {}
        for oid in task.spec[S.DEPS]:
            entry = entries.get(oid)
            if entry is not None and entry.loc is not None:
                node = entry.node or head_node
                sizes[node] = sizes.get(node, 0) + entry.loc[1]
        return max(sizes, key=sizes.__getitem__) if sizes else None

    # -- running -----------------------------------------------------------------------------

    def execute_frames(self, worker: Worker, task: TaskRecord) -> None:
        """Send the task to ``worker``, with its function if the worker lacks it and the
        values of its arguments that are ready."""
        spec = task.spec
        frames = [task.frames[0]]
        fn_hash = spec[S.FN_HASH]
        with_fn = False
        if fn_hash is not None and fn_hash not in worker.known_fns:
            frames.append(self.functions[fn_hash])
            worker.known_fns.add(fn_hash)
            with_fn = True
        deps = []
        entries = self.objects.entries
        transfers = self.head.transfers
        node = worker.node
        for oid in spec[S.DEPS]:
            entry = entries.get(oid)
            if entry is not None and entry.status is not None:
                if entry.loc is None:
                    deps.append((oid, entry.status, None))
                    frames.append(entry.blob)
                    continue
                loc = transfers.loc_on(entry, node)
                if loc is None:
                    # Stored on another node: the worker asks for it, and its node pulls it
                    # meanwhile.
                    transfers.want(oid, entry, node, None)
                else:
                    deps.append((oid, entry.status, loc))
        placement = None
        if spec[S.KIND] != TaskKind.ACTOR_CALL:
            owner = self.head.clients.get(task.owner)
            namespace = owner.namespace if owner is not None else ""
            if spec[S.KIND] == TaskKind.ACTOR_CREATE:
                namespace = spec[S.OPTIONS].get("namespace") or namespace
            worker.client.namespace = namespace
            gpus = task.assigned.get("GPU", []) if task.assigned else []
            placement = (task.hold, gpus, namespace)
            if spec[S.KIND] == TaskKind.ACTOR_CREATE:
                placement += self.head.actors.placement_extra(spec[S.ACTOR_ID])
        self.head.send(worker.client.inbox, encode(Msg.EXECUTE, spec, deps, with_fn,
                                                   placement), frames)

    def dispatch(self, task: TaskRecord, node, worker: Worker) -> None:
        """The scheduler placed ``task`` on ``worker``."""
        task.assigned = (task.pool or node).acquire(task.hold)
        task.acquired = True
        task.node = node
        task.worker = worker
        task.state = "running"
        task.started = _now()
        node.mark_blocked(worker, False)  # a task that ended while blocked left it marked
        if task.spec[S.KIND] == TaskKind.ACTOR_CREATE:
            self.head.actors.placed(task, node, worker)
        else:
            worker.task = task
            self.execute_frames(worker, task)

    def release_resources(self, task: TaskRecord) -> None:
        if task.acquired:
            task.acquired = False
            worker = task.worker
            hold = task.hold
            if worker is not None and worker.blocked and "CPU" in hold:
                hold = {k: v for k, v in hold.items() if k != "CPU"}
            (task.pool or task.node).release(hold, task.assigned)

    def on_done(self, worker: Worker, task_id: bytes, results: list, retryable: bool,
                blobs: list, direct: list | None = None, error: list | None = None) -> None:
        if worker.actor is not None:
            task = worker.calls.pop(task_id, None)
            if task is None and direct is not None and direct[0] in self.head.clients:
                self._stash_early(task_id, direct[0], (worker.node, results, retryable, blobs,
                                                       bool(direct[1]), error))
                return
        else:
            task = worker.task
            if task is not None and task.task_id == task_id:
                worker.task = None
                self.release_resources(task)
                worker.node.mark_blocked(worker, False)
                self.head.worker_idle(worker)
            else:
                task = None
                if worker.resumed_busy:  # the previous head's task ended: it is free now
                    worker.resumed_busy = False
                    self.head.worker_idle(worker)
        if task is None or task.state == "done":
            self._discard_results(results, worker.node)
            return
        self.settle(task, worker.node, results, retryable, blobs,
                    direct is not None and bool(direct[1]), error)

    def settle(self, task: TaskRecord, node, results: list, retryable: bool, blobs: list,
               replied: bool, error: list | None = None) -> None:
        """A worker finished ``task``: retry it, or complete it with ``results`` (which its
        caller already has if ``replied``; ``error``: what it raised, for the history)."""
        if retryable and task.retries_left != 0 and not task.cancelled:
            if task.retries_left > 0:
                task.retries_left -= 1
            self._discard_results(results, node)
            self.retry(task)
            return
        task.error = error  # (None: a success, after an attempt that may have failed)
        self.complete(task, results, blobs, node, push_owner=not replied)

    def _stash_early(self, task_id: bytes, caller: bytes, early: tuple) -> None:
        stash = self.early
        if len(stash) >= config.EARLY_RESULTS_MAX:  # callers that died before their CALLED
            oldest = next(iter(stash))
            self._drop_early(oldest, stash.pop(oldest))
        stash[task_id] = early + (caller,)  # (node, results, retryable, blobs, replied,
        # error, caller)
        ids = self.early_by_caller.get(caller)
        if ids is None:
            ids = self.early_by_caller[caller] = set()
        ids.add(task_id)

    def take_early(self, task_id: bytes) -> tuple | None:
        """The results a direct call's worker sent before the call's CALLED arrived."""
        if not self.early:
            return None
        early = self.early.pop(task_id, None)
        if early is None:
            return None
        ids = self.early_by_caller.get(early[6])
        if ids is not None:
            ids.discard(task_id)
            if not ids:
                del self.early_by_caller[early[6]]
        return early[:6]

    def _drop_early(self, task_id: bytes, early: tuple) -> None:
        ids = self.early_by_caller.get(early[6])
        if ids is not None:
            ids.discard(task_id)
        self._discard_results(early[1], early[0])

    def client_gone(self, key: bytes) -> None:
        self.streams.client_gone(key)
        for task_id in self.early_by_caller.pop(key, ()):
            early = self.early.pop(task_id, None)
            if early is not None:
                self._discard_results(early[1], early[0])

    def _discard_results(self, results: list, node) -> None:
        for r in results:
            self.objects.discard_copy(r[0], node, r[2])

    def retry(self, task: TaskRecord) -> None:
        task.worker = None
        task.attempt += 1
        if task.spec[S.KIND] == TaskKind.ACTOR_CALL:
            self.head.actors.undirect(task)
            self.head.actors.resubmit(task)
            return
        task.state = "queued"
        self.head.scheduler.enqueue(task, front=True)

    def complete(self, task: TaskRecord, results: list, blobs: list, node,
                 push_owner: bool = True) -> None:
        if task.caller is not None and not task.direct:
            # A direct route offered with the result, not after it: a synchronous caller
            # sends its next call as soon as it has the result.
            self.head.actors.grant_ahead(task)
        deliver = self.deliver
        i = 0
        stored = False
        for oid, status, loc, contained, contained_actors in results:
            blob = None
            if loc is None:
                blob = blobs[i]
                i += 1
            else:
                stored = True
            if task.stream is not None and status == Status.ERROR:
                blob = self.streams.failed(task, status, loc, blob, node)
                status, loc, contained, contained_actors = Status.OK, None, (), ()
            deliver(oid, status, loc, blob, contained, contained_actors, node, push_owner)
        if stored:
            self.lineage.keep(task)  # before finish() unpins the arguments it looks at
        self.finish(task)

    def complete_all(self, task: TaskRecord, status: int, loc, blob) -> None:
        """End ``task`` with one value (an error) for all of its returns."""
        if status == Status.ERROR and task.error is None:
            # Not raised by the task itself (an argument failed, its actor died): the error
            # blob is zactor's own, read only if someone lists the task (zactor.head.state).
            task.error = (None, blob)
        if task.stream is not None:  # the error is the next item; the end says how many
            blob = self.streams.failed(task, status, loc, blob, None)
            status, loc = Status.OK, None
        for oid in task.return_ids:
            self.deliver(oid, status, loc, blob, (), (), None)
        self.finish(task)

    def on_yield(self, worker: Worker, task_id: bytes, index: int, result: list, blob) -> None:
        if worker.actor is None:
            task = worker.task if worker.task is not None and \
                worker.task.task_id == task_id else None
        else:
            task = worker.calls.get(task_id)
        if task is None or task.stream is None or task.state == "done":
            self.objects.discard_copy(result[0], worker.node, result[2])
            return
        self.streams.on_yield(task, index, result, blob, worker.node)

    def fail(self, task: TaskRecord, exc: Exception) -> None:
        if task.state == "done":
            return
        task.error = (type(exc).__name__, str(exc))
        self.complete_all(task, Status.ERROR, None, dumps_plain(exc))

    def finish(self, task: TaskRecord) -> None:
        if task.state == "queued":
            self.head.scheduler.remove(task)
        task.state = "done"
        if task.stream is not None:
            self.streams.finished(task)
            self.streams.forget(task.task_id)
        if task.caller is not None:
            self.head.actors.call_finished(task)
        self.release_resources(task)
        self.tasks.pop(task.task_id, None)
        self.history.record(task)
        if task.parent:
            kids = self.children.get(task.parent)
            if kids is not None:
                kids.discard(task.task_id)
                if not kids:
                    del self.children[task.parent]
        self.unpin_args(task)
        if task.return_ids and task.task_id in self.lineage.records:
            self.lineage.freed(task.return_ids[0])  # a rebuild nobody wanted after all

    def object_lost(self, client, oid: bytes) -> None:
        """A client found the file of ``oid`` gone: rebuild it from its lineage, or say why
        it cannot be."""
        entry = self.objects.entries.get(oid)
        if entry is None:
            self.head.send_error_object(client, oid, ObjectLostError(
                f"Object {oid.hex()} is lost: it was freed, or never existed here"))
            return
        subscribe = self.head.subscribe
        if entry.status is None or entry.loc is None or self.head.holds_copy(entry):
            subscribe(client, oid)  # being rebuilt already, or not lost (it moved)
            return
        why = self.lineage.rebuild(oid)
        if why is not None:
            self.objects.reset(oid)
            self.deliver(oid, Status.ERROR, None, dumps_plain(ObjectLostError(
                f"Object {oid.hex()} is lost (its copy is gone) and {why}")), (), (), None)
        subscribe(client, oid)

    def rebuild_lost(self, oid: bytes, how: str) -> None:
        """The only copy of ``oid`` is gone (``how``): rebuild it from its lineage, or make
        it the error that says why it cannot be."""
        entry = self.objects.entries.get(oid)
        if entry is None or entry.status is None:
            return  # being rebuilt already, or freed
        why = self.lineage.rebuild(oid)
        if why is not None:
            self.objects.reset(oid)
            self.deliver(oid, Status.ERROR, None, dumps_plain(ObjectLostError(
                f"Object {oid.hex()} is lost ({how}) and {why}")), (), (), None)

    def rerun(self, task: TaskRecord) -> None:
        """Run a finished task again (lineage: its objects were lost)."""
        task.state = "waiting"
        task.waiting = 0
        task.worker = None
        self.tasks[task.task_id] = task
        if self.pin_args(task):
            self.wait_for_deps(task)

    def deliver(self, oid: bytes, status: int, loc, blob, contained, contained_actors,
                node, push_owner: bool = True) -> None:
        head = self.head
        header = None
        owner = far_owner = None
        pending = self.objects.entries.get(oid)
        if push_owner and pending is not None and pending.status is None and pending.owner:
            # The owner (often blocked in get) hears first; the bookkeeping follows.
            owner = head.clients.get(pending.owner)
            if owner is None or oid not in owner.holds:
                owner = None
            elif loc is None or owner.node is (node or head.head_node):
                header = encode(Msg.OBJECT, oid, status, loc)
                head.send(owner.inbox, header, (blob,) if loc is None else ())
            else:
                far_owner, owner = owner, None  # its node needs a copy first (below)
        entry = self.objects.set_value(oid, status, loc, blob, contained, contained_actors,
                                       node)
        if entry is None:
            return
        if far_owner is not None and not entry.freed:
            # It learns the result is ready and where; its node pulls it only if it reads it
            # (a result passed on to other tasks never travels to its owner).
            head.send(far_owner.inbox, encode(Msg.OBJECT, oid, status,
                                              head.transfers.remote_loc(entry)))
            owner = far_owner  # not sent twice as a subscriber
        for actor_id in contained_actors:
            head.actors.add_ref(actor_id)
        if entry.freed:
            return
        subs = entry.subscribers
        if subs:
            entry.subscribers = None
            if header is None:
                header = encode(Msg.OBJECT, oid, status, loc)
            home = node or head.head_node
            clients = head.clients
            for key in subs:
                if key == entry.owner and owner is not None and oid in owner.holds:
                    continue
                if loc is not None:
                    client = clients.get(key)
                    if client is None:
                        continue
                    if client.node is not home:
                        head.send_object(client, oid, entry)  # a pull to its node first
                        continue
                head.send(key + b"<", header, (blob,) if loc is None else ())
        waiting = entry.waiting_tasks
        if waiting:
            entry.waiting_tasks = None
            for task in waiting:
                task.waiting -= 1
                if task.waiting == 0:
                    self.deps_ready(task)

    # -- failures ----------------------------------------------------------------------------

    def unschedulable(self, task: TaskRecord, why: str | Exception) -> None:
        """``task`` can never be placed (a hard affinity to a dead node, a placement group
        removed)."""
        from zactor.exceptions import ActorUnschedulableError, TaskUnschedulableError

        if isinstance(why, Exception):
            if task.spec[S.KIND] == TaskKind.ACTOR_CREATE:
                from zactor.exceptions import ActorPlacementGroupRemoved

                why = ActorPlacementGroupRemoved(str(why))
            self.cannot_run(task, why)
        elif task.spec[S.KIND] == TaskKind.ACTOR_CREATE:
            self.head.actors.unschedulable(task, ActorUnschedulableError(why))
        else:
            self.fail(task, TaskUnschedulableError(why))

    def cannot_run(self, task: TaskRecord, exc: Exception) -> None:
        """``task``, taken off its queue, fails with ``exc`` (an actor creation: the actor
        dies with it)."""
        if task.spec[S.KIND] == TaskKind.ACTOR_CREATE:
            self.head.actors.unschedulable(task, exc)
        else:
            self.fail(task, exc)

    def worker_died(self, worker: Worker, how: str) -> None:
        task = worker.task
        if task is None or task.state == "done":
            return
        worker.task = None
        self.release_resources(task)
        if task.cancelled:
            self.fail(task, TaskCancelledError(f"Task {task.spec[S.NAME]} was cancelled"))
        elif task.retries_left != 0:
            if task.retries_left > 0:
                task.retries_left -= 1
            log.info("worker %d %s; retrying task %s", worker.pid, how, task.spec[S.NAME])
            self.retry(task)
        else:
            self.fail(task, WorkerCrashedError(
                f"The worker running task {task.spec[S.NAME]} (pid {worker.pid}) {how}, and "
                f"the task has no retries left (max_retries={task.spec[S.MAX_RETRIES]})"))

    def fail_running(self, task: TaskRecord, exc: Exception) -> None:
        """A running normal task fails with ``exc`` now: its worker is killed."""
        worker = task.worker
        self.fail(task, exc)
        if worker is not None:
            worker.task = None
            self.head.kill_worker(worker)

    def cancel(self, task_id: bytes, force: bool, recursive: bool) -> None:
        task = self.tasks.get(task_id)
        if recursive:
            for child in list(self.children.get(task_id, ())):
                self.cancel(child, force, recursive)
        if task is None or task.state == "done":
            return
        kind = task.spec[S.KIND]
        if kind == TaskKind.ACTOR_CREATE:
            return
        task.cancelled = True
        err = TaskCancelledError(f"Task {task.spec[S.NAME]} was cancelled")
        if task.state in ("waiting", "queued"):
            if kind == TaskKind.ACTOR_CALL:
                self.head.actors.forget_pending(task)
            self.fail(task, err)
            return
        worker = task.worker
        if worker is None:
            self.fail(task, err)
            return
        if force and kind == TaskKind.TASK:
            self.fail_running(task, err)
        else:
            self.head.send(worker.client.key + b"!", encode(Msg.CANCEL_TASK, task_id, force))
