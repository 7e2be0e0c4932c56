"""Generator tasks: ``ObjectRefGenerator`` (Ray's streaming generators, the default for remote
functions and actor methods that ``yield``) and ``DynamicObjectRefGenerator``
(``num_returns="dynamic"``).

    worker: for value in fn(): ──YIELD(i, value)──► head: item i exists, held for the caller
            then TASK_DONE(count) ───────────────► head: the stream's end (its one return)
    caller: next(gen) waits for item i *or* the end; a ref as soon as the item exists

Item ``i`` of task ``T`` has the id ``stream_item_id(T, i)``, the same in every attempt, so a
retried generator (its worker died) re-yields values the head already has and they are
dropped: the caller sees each item once, in order. An exception in the generator, a crash with
no retries left or a cancellation becomes the next item's value (``get`` raises it), and the
stream ends after it.
"""

from __future__ import annotations

from typing import Any

from zactor import _ids, _refs, _state
from zactor._object_ref import ObjectRef

_closed = _refs.tracker.closed_streams


class ObjectRefGenerator:
    """The refs a generator task yields, each available as soon as it is yielded.

    Example::

        @zactor.remote
        def count_to(n):
            for i in range(n):
                yield i

        for ref in count_to.remote(3):
            print(zactor.get(ref))        # 0, 1, 2

    ``async for ref in gen`` works in asyncio code; ``zactor.cancel(gen)`` stops the task.
    """

    def __init__(self, end_ref: ObjectRef) -> None:
        self._end = end_ref  # the task's one return: ready when the generator is done
        self._task_id = end_ref.binary()[:_ids.TASK_ID_LEN]
        self._next = 0
        self._count: int | None = None

    # -- Ray's ObjectRefGenerator API ------------------------------------------------------

    def __iter__(self) -> ObjectRefGenerator:
        return self

    def __next__(self) -> ObjectRef:
        ref = self._next_sync(None)
        if ref is None:  # pragma: no cover - no timeout was given
            raise StopIteration
        return ref

    def __aiter__(self) -> ObjectRefGenerator:
        return self

    async def __anext__(self) -> ObjectRef:
        while True:
            ref = self._take()
            if ref is not None:
                return ref
            if self._ended():
                raise StopAsyncIteration
            await _first_ready(self._awaited())

    def completed(self) -> ObjectRef:
        """A ref that is ready once the generator task has finished."""
        return self._end

    def is_finished(self) -> bool:
        """Whether every item has been taken and the task has ended."""
        return self._ended()

    def next_ready(self) -> bool:
        """Whether ``next`` would return at once."""
        core = _state.core
        return self._item_id() in core._objects or self._ended()

    def task_id(self) -> bytes:
        return self._task_id

    def _next_sync(self, timeout_s: float | None = None) -> ObjectRef | None:
        """The next ref; None if ``timeout_s`` passes first (StopIteration at the end)."""
        core = _state.core
        if core is None:
            raise RuntimeError("zactor is not initialized")
        while True:
            ref = self._take()
            if ref is not None:
                return ref
            if self._ended():
                raise StopIteration
            if not core.wait_objects(self._awaited(), 1, timeout_s):
                return None

    def __reduce__(self):
        raise TypeError("An ObjectRefGenerator cannot be passed to other tasks or actors (as "
                        "in Ray); pass the refs it yields instead")

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._task_id.hex()}, next={self._next})"

    def __del__(self) -> None:
        try:
            count = self._count if self._count is not None else self._known_count()
            _closed.append([self._task_id, self._next, -1 if count is None else count])
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # -- internals -------------------------------------------------------------------------

    def _awaited(self) -> list[bytes]:
        """What the next item waits for: the item itself, or the end if it comes first
        (then the stream has fewer items)."""
        if self._ended_at() is not None:
            return [self._item_id()]  # the end is known: the item exists
        return [self._item_id(), self._end.binary()]

    def _item_id(self) -> bytes:
        return _ids.stream_item_id(self._task_id, self._next)

    def _take(self) -> ObjectRef | None:
        """The next item's ref if it exists (the head holds it for this process)."""
        core = _state.core
        item = self._item_id()
        if item not in core._objects:
            return None
        count = self._ended_at()
        if count is not None and self._next >= count:
            return None  # an answer to a subscription that came after the end: not an item
        self._next += 1
        return ObjectRef(item)

    def _ended(self) -> bool:
        count = self._ended_at()
        if count is None or self._next < count:
            return False
        core = _state.core
        item = self._item_id()
        with core._lock:  # a subscription to an item that never came
            core._subscribed.discard(item)
            core._objects.pop(item, None)
            core._callbacks.pop(item, None)
        return True

    def _ended_at(self) -> int | None:
        if self._count is None:
            self._count = self._known_count()
        return self._count

    def _known_count(self) -> int | None:
        core = _state.core
        entry = core._objects.get(self._end.binary()) if core is not None else None
        if entry is None:
            return None
        return core.decode(self._end.binary(), entry)


async def _first_ready(ids: list[bytes]) -> None:
    """Wait (in asyncio) until any of ``ids`` is ready in this process."""
    import asyncio  # only async code gets here: drivers need not load asyncio

    core = _state.core
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def ready(_entry: Any) -> None:
        try:
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))
        except RuntimeError:  # that loop has closed: nobody waits any more
            pass

    for oid in ids:
        core.on_ready(oid, ready)
    await done


class DynamicObjectRefGenerator:
    """The value of a ``num_returns="dynamic"`` task: the refs its generator yielded, all
    ready once the task has finished.

    Example::

        @zactor.remote(num_returns="dynamic")
        def split(n):
            for i in range(n):
                yield i

        gen = zactor.get(split.remote(3))
        assert [zactor.get(r) for r in gen] == [0, 1, 2]
    """

    def __init__(self, refs: list[ObjectRef]) -> None:
        self._refs = list(refs)

    def __iter__(self):
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def __repr__(self) -> str:
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"
