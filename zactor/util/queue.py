"""``Queue``: a first-in first-out queue held by an actor, shared by every process that has
its handle (Ray's ``ray.util.queue``).

The actor is an async actor around an ``asyncio.Queue``: a blocking ``put`` or ``get`` is one
call that waits inside the actor's event loop (``asyncio.wait_for``) until there is room or an
item, or its timeout passes, so nobody polls. A ``Queue`` pickles as its actor's handle: pass
it to tasks and actors as an argument.
"""

from __future__ import annotations

import asyncio
import logging
import queue
from collections.abc import Iterable
from typing import Any

import zactor

log = logging.getLogger(__name__)

__all__ = ["Empty", "Full", "Queue"]


class Empty(queue.Empty):
    """Raised by ``get`` when no item came in time (``get_nowait``: none was there)."""


class Full(queue.Full):
    """Raised by ``put`` when no room came in time (``put_nowait``: none was there)."""


class Queue:
    """A queue on an actor: ``Queue(maxsize=0)`` is unbounded; ``actor_options`` are the
    options of that actor (e.g. ``{"num_cpus": 0}``, a ``name``, ``lifetime="detached"``).

    Example::

        from zactor.util.queue import Empty, Queue

        q = Queue(maxsize=10)

        @zactor.remote
        def producer(q):
            for i in range(3):
                q.put(i)

        zactor.get(producer.remote(q))
        assert [q.get(timeout=5) for _ in range(3)] == [0, 1, 2]
        try:
            q.get(timeout=0.1)
        except Empty:
            pass
    """

    def __init__(self, maxsize: int = 0, actor_options: dict[str, Any] | None = None) -> None:
        self.maxsize = maxsize
        self.actor = _QueueActor.options(**(actor_options or {})).remote(maxsize)

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        """The number of items in the queue."""
        return zactor.get(self.actor.qsize.remote())

    def qsize(self) -> int:
        """The number of items in the queue (``size``)."""
        return self.size()

    def empty(self) -> bool:
        """Whether the queue is empty."""
        return zactor.get(self.actor.empty.remote())

    def full(self) -> bool:
        """Whether the queue holds ``maxsize`` items."""
        return zactor.get(self.actor.full.remote())

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add ``item``, waiting for room if ``block`` (at most ``timeout`` seconds), else
        raising ``Full`` at once when there is none."""
        ref = self._put_ref(item, block, timeout)
        try:
            zactor.get(ref)
        except Full:
            raise Full from None

    async def put_async(self, item: Any, block: bool = True,
                        timeout: float | None = None) -> None:
        """``put`` for ``async`` code: awaits instead of blocking the thread."""
        ref = self._put_ref(item, block, timeout)
        try:
            await ref
        except Full:
            raise Full from None

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item, waiting for one if ``block`` (at most
        ``timeout`` seconds), else raising ``Empty`` at once when there is none."""
        ref = self._get_ref(block, timeout)
        try:
            return zactor.get(ref)
        except Empty:
            raise Empty from None

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        """``get`` for ``async`` code: awaits instead of blocking the thread."""
        ref = self._get_ref(block, timeout)
        try:
            return await ref
        except Empty:
            raise Empty from None

    def put_nowait(self, item: Any) -> None:
        """``put(item, block=False)``."""
        self.put(item, block=False)

    def put_nowait_batch(self, items: Iterable) -> None:
        """Add all of ``items`` at once, or none of them (``Full``) if they do not fit."""
        if not isinstance(items, Iterable):
            raise TypeError("Argument 'items' must be an Iterable")
        try:
            zactor.get(self.actor.put_nowait_batch.remote(list(items)))
        except Full as exc:
            raise Full(*exc.args) from None

    def get_nowait(self) -> Any:
        """``get(block=False)``."""
        return self.get(block=False)

    def get_nowait_batch(self, num_items: int) -> list:
        """Remove and return the ``num_items`` oldest items, or none of them (``Empty``) if
        there are fewer."""
        if not isinstance(num_items, int):
            raise TypeError("Argument 'num_items' must be an int")
        if num_items < 0:
            raise ValueError("'num_items' must be nonnegative")
        try:
            return zactor.get(self.actor.get_nowait_batch.remote(num_items))
        except Empty as exc:
            raise Empty(*exc.args) from None

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """End the queue's actor: at once with ``force``, else after the calls it has
        queued, killing it if that takes over ``grace_period_s`` seconds."""
        if self.actor is None:
            return
        if force:
            zactor.kill(self.actor, no_restart=True)
        else:
            done = self.actor.__ray_terminate__.remote()
            ready, _ = zactor.wait([done], timeout=grace_period_s)
            if not ready:
                zactor.kill(self.actor, no_restart=True)
        self.actor = None

    def _put_ref(self, item: Any, block: bool, timeout: float | None) -> Any:
        if not block:
            return self.actor.put_nowait.remote(item)
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        return self.actor.put.remote(item, timeout)

    def _get_ref(self, block: bool, timeout: float | None) -> Any:
        if not block:
            return self.actor.get_nowait.remote()
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        return self.actor.get.remote(timeout)


@zactor.remote(num_cpus=0)  # it only waits: it must not keep a CPU from the work it feeds
class _QueueActor:
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: asyncio.Queue = asyncio.Queue(maxsize)

    def qsize(self) -> int:
        return self.queue.qsize()

    def empty(self) -> bool:
        return self.queue.empty()

    def full(self) -> bool:
        return self.queue.full()

    async def put(self, item: Any, timeout: float | None = None) -> None:
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            raise Full from None

    async def get(self, timeout: float | None = None) -> Any:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            raise Empty from None

    def put_nowait(self, item: Any) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            raise Full from None

    def put_nowait_batch(self, items: list) -> None:
        # All or nothing: check the room first (0 is unbounded).
        if self.maxsize > 0 and len(items) + self.queue.qsize() > self.maxsize:
            raise Full(f"Cannot add {len(items)} items to queue of size "
                       f"{self.queue.qsize()} and maxsize {self.maxsize}.")
        for item in items:
            self.queue.put_nowait(item)

    def get_nowait(self) -> Any:
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            raise Empty from None

    def get_nowait_batch(self, num_items: int) -> list:
        if num_items > self.queue.qsize():
            raise Empty(f"Cannot get {num_items} items from queue of size "
                        f"{self.queue.qsize()}.")
        return [self.queue.get_nowait() for _ in range(num_items)]
