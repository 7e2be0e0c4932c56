"""Streams of generator tasks in the head: items as they are yielded, held for the caller.

Each YIELD of a running generator task becomes the object ``stream_item_id(task, index)``,
held for the task's caller (its owner) until the caller takes the item (zactor._generator) or
drops the generator. A caller waiting for an item not yielded yet is remembered and sent it
when it comes. Items arrive in order; an index already seen is a retried attempt repeating
itself and is dropped, so the caller sees each item once. A generator that fails in any way
ends with the failure as one more item, and its end (its one return object) is always the
number of items, so the caller knows where the stream stops.

A stream's record lives until its caller drops the generator (or disconnects), since only
then is it known which items will never be taken.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zactor import _ids
from zactor._serialization import dumps_plain

if TYPE_CHECKING:
    from zactor.head.records import TaskRecord
    from zactor.head.tasks import TaskManager


class Stream:
    __slots__ = ("owner", "count", "waiters", "finished")

    def __init__(self, owner: bytes) -> None:
        self.owner = owner  # the client that called the generator, and holds its items
        self.count = 0  # items yielded so far
        self.waiters: dict[int, list[bytes]] = {}  # index -> clients waiting for it
        self.finished = False


class Streams:
    def __init__(self, tasks: TaskManager) -> None:
        self.tasks = tasks
        self.head = tasks.head
        self.objects = tasks.objects
        self.by_task: dict[bytes, Stream] = {}

    def open(self, task: TaskRecord) -> None:
        stream = self.by_task.get(task.task_id)
        if stream is None:
            stream = self.by_task[task.task_id] = Stream(task.owner)
        task.stream = stream

    def on_yield(self, task: TaskRecord, index: int, result: list, blob, node) -> None:
        """The worker running ``task`` yielded item ``index``."""
        stream = task.stream
        oid, status, loc = result[0], result[1], result[2]
        if stream.finished or index != stream.count or \
                oid != _ids.stream_item_id(task.task_id, index):
            self.objects.discard_copy(oid, node, loc)  # a retry repeating an item, or junk
            return
        stream.count = index + 1
        self._deliver(stream, oid, status, loc, blob, result[3], result[4], node, index)

    def _deliver(self, stream: Stream, oid: bytes, status: int, loc, blob, contained,
                 contained_actors, node, index: int) -> None:
        owner = self.head.clients.get(stream.owner)
        entry = self.objects.pending(oid)
        if owner is not None:
            self.objects.add_ref(oid, owner.holds)
        waiters = stream.waiters.pop(index, None)
        if waiters:
            entry.subscribers = waiters
        self.tasks.deliver(oid, status, loc, blob, contained, contained_actors, node,
                           push_owner=False)

    def wait_item(self, client, oid: bytes) -> bool:
        """``client`` wants item ``oid``, which does not exist: True if it is a stream item
        that may still come (the client is sent it then) or never will (the client learns
        that from the stream's end), False if ``oid`` is no stream item."""
        stream = self.by_task.get(oid[:_ids.TASK_ID_LEN])
        if stream is None:
            return False
        index = _ids.stream_index(oid)
        if not stream.finished and index >= stream.count:
            waiters = stream.waiters.setdefault(index, [])
            if client.key not in waiters:
                waiters.append(client.key)
        return True

    def failed(self, task: TaskRecord, status: int, loc, blob, node) -> bytes:
        """``task`` ends with an error: it becomes the next item. Returns the stream end's
        value: the number of items."""
        stream = task.stream
        if not stream.finished:
            index = stream.count
            stream.count += 1
            self._deliver(stream, _ids.stream_item_id(task.task_id, index), status, loc, blob,
                          (), (), node, index)
        return self.end_blob(task)

    def end_blob(self, task: TaskRecord) -> bytes:
        return dumps_plain(task.stream.count)

    def finished(self, task: TaskRecord) -> None:
        stream = task.stream
        stream.finished = True
        stream.waiters.clear()

    def close(self, client, task_id: bytes, first: int, known: int) -> None:
        """``client`` dropped its generator having taken items up to ``first``: the ones it
        never took are released."""
        stream = self.by_task.get(task_id)
        if stream is not None:
            if stream.owner != client.key:
                return
            if stream.finished:
                del self.by_task[task_id]
            else:
                stream.owner = b""  # later items are held for nobody
            end = stream.count
        else:
            end = known
        release = self.objects.release
        for index in range(first, max(first, end)):
            release(_ids.stream_item_id(task_id, index), client.holds)

    def forget(self, task_id: bytes) -> None:
        """The task ended for good and its caller dropped the generator earlier."""
        stream = self.by_task.get(task_id)
        if stream is not None and stream.finished and not stream.owner:
            del self.by_task[task_id]

    def client_gone(self, key: bytes) -> None:
        for task_id, stream in list(self.by_task.items()):
            if stream.owner == key:
                if stream.finished:
                    del self.by_task[task_id]
                else:
                    stream.owner = b""
            else:
                for waiters in stream.waiters.values():
                    if key in waiters:
                        waiters.remove(key)
