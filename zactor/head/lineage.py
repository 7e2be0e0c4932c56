"""Lineage: how to make a lost object again, by re-running the task that made it (DESIGN §6).

A finished task is kept here — its spec and argument blob, not its arguments' objects — while
an object it made lives in the object store (only such a copy can be lost; small values live
in the head) and it has retries left. Keeping it does not keep its arguments alive: once no
ref to an argument exists anywhere, the argument is freed like any other object. To rebuild
one anyway, the record remembers, as Ray's task specs do:

- the values of its small (inline) arguments, as the blobs the head had (not copies);
- for each large argument, the record of the task that made it, kept here for as long as a
  record that needs it is (``users``), so a rebuild can recurse upstream.

A large argument made by ``put`` (or by a task without retries) cannot be rebuilt once freed;
rebuilding what depended on it then fails with ObjectLostError saying so.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from zactor import _ids
from zactor.protocol import S, TaskKind

if TYPE_CHECKING:
    from zactor.head.records import TaskRecord
    from zactor.head.tasks import TaskManager

log = logging.getLogger(__name__)


class Lineage:
    def __init__(self, tasks: TaskManager) -> None:
        self.tasks = tasks
        self.objects = tasks.objects
        self.records: dict[bytes, TaskRecord] = {}

    def __len__(self) -> int:
        return len(self.records)

    def get(self, task_id: bytes) -> TaskRecord | None:
        return self.records.get(task_id)

    def keep(self, task: TaskRecord) -> None:
        """``task`` just made an object in the store: keep what it takes to run it again.
        Call while its arguments are still pinned."""
        if task.retries_left == 0 or task.spec[S.KIND] != TaskKind.TASK:
            return
        if task.task_id in self.records:
            return  # a rebuild finishing: what it needs was recorded the first time
        entries = self.objects.entries
        inline: dict[bytes, tuple] = {}
        upstream: list[bytes] = []
        spec = task.spec
        for oid in (*spec[S.DEPS], *spec[S.CONTAINED]):
            entry = entries.get(oid)
            if entry is not None and entry.status is not None and entry.loc is None:
                inline[oid] = (entry.status, entry.blob)
                continue
            producer = self.records.get(oid[:16])
            if producer is not None and producer is not task:
                producer.lineage_users += 1
                upstream.append(producer.task_id)
        task.lineage_inline = inline
        task.lineage_upstream = upstream
        self.records[task.task_id] = task
        self.objects.on_freed = self.freed

    def freed(self, oid: bytes) -> None:
        """An object was freed: forget the task that made it if nothing needs it any more."""
        task = self.records.get(oid[:16])
        if task is not None:
            self._drop_if_unused(task)

    def _drop_if_unused(self, task: TaskRecord) -> None:
        entries = self.objects.entries
        if task.lineage_users > 0 or any(rid in entries for rid in task.return_ids):
            return
        if task.state != "done":
            return  # being rebuilt: its completion keeps or frees it again
        del self.records[task.task_id]
        for up_id in task.lineage_upstream:
            up = self.records.get(up_id)
            if up is not None:
                up.lineage_users -= 1
                self._drop_if_unused(up)
        task.lineage_upstream = []
        task.lineage_inline = {}
        if not self.records:
            self.objects.on_freed = None

    def why_not(self, oid: bytes) -> str | None:
        """Why the object ``oid`` cannot be rebuilt, or None if it can."""
        task = self.records.get(oid[:16])
        if _ids.is_put(oid):
            return "it was created by put(), and put objects cannot be reconstructed"
        if task is None:
            return "the task that made it cannot be re-run (max_retries=0, or it was an " \
                   "actor call)"
        if task.retries_left == 0:
            return "the task that made it has no retries left"
        return None

    def rebuild(self, oid: bytes) -> str | None:
        """Re-run the task that made ``oid`` (and, first, whatever its freed arguments need);
        None once it is under way, else why it cannot be."""
        why = self.why_not(oid)
        if why is not None:
            return why
        task = self.records[oid[:16]]
        if task.state != "done":
            return None  # already being rebuilt
        objects = self.objects
        spec = task.spec
        made: list[bytes] = []  # arguments brought back, held by nothing until the rerun
        for arg in (*spec[S.DEPS], *spec[S.CONTAINED]):
            if arg in objects.entries:
                continue
            value = task.lineage_inline.get(arg)
            made.append(arg)
            if value is not None:
                objects.restore(arg, *value)
                continue
            objects.pending(arg)
            why = self.rebuild(arg)
            if why is not None:
                for undo in made:
                    objects.discard_unheld(undo)
                return f"its argument {arg.hex()} was freed and cannot be rebuilt: {why}"
        if task.retries_left > 0:
            task.retries_left -= 1
        log.info("rebuilding lost object %s by re-running %s", oid.hex(), spec[S.NAME])
        for rid in task.return_ids:
            if rid in objects.entries:
                objects.reset(rid)
            else:
                objects.pending(rid)  # wanted by nobody: freed as soon as it is made
        self.tasks.rerun(task)
        return None
