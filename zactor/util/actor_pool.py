"""``ActorPool``: spread work over a fixed set of actors (Ray's ``ray.util.ActorPool``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from zactor import _api
from zactor._object_ref import ObjectRef


class ActorPool:
    """Run ``fn(actor, value)`` calls on whichever actor of the pool is free.

    Example::

        pool = ActorPool([Worker.remote() for _ in range(4)])
        results = list(pool.map(lambda a, v: a.double.remote(v), range(10)))
    """

    def __init__(self, actors: list) -> None:
        self._idle = list(actors)
        self._future_to_actor: dict[ObjectRef, tuple[int, Any]] = {}
        self._index_to_future: dict[int, ObjectRef] = {}
        self._next_task_index = 0
        self._next_return_index = 0
        self._pending: list[tuple[Callable, Any]] = []

    def map(self, fn: Callable, values: Iterable) -> Iterator:
        """Results in the order of ``values``."""
        while self.has_next():  # drain what was submitted before
            self.get_next_unordered()
        for v in values:
            self.submit(fn, v)
        while self.has_next():
            yield self.get_next()

    def map_unordered(self, fn: Callable, values: Iterable) -> Iterator:
        """Results as they complete."""
        while self.has_next():
            self.get_next_unordered()
        for v in values:
            self.submit(fn, v)
        while self.has_next():
            yield self.get_next_unordered()

    def submit(self, fn: Callable, value: Any) -> None:
        """Schedule ``fn(actor, value)`` on an idle actor, or queue it until one frees up."""
        if self._idle:
            actor = self._idle.pop()
            ref = fn(actor, value)
            self._future_to_actor[ref] = (self._next_task_index, actor)
            self._index_to_future[self._next_task_index] = ref
            self._next_task_index += 1
        else:
            self._pending.append((fn, value))

    def has_next(self) -> bool:
        """Whether any submitted result has not been returned yet."""
        return bool(self._future_to_actor) or bool(self._pending)

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The next result in submission order."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return_index >= self._next_task_index:
            raise ValueError("It is not allowed to call get_next() after get_next_unordered().")
        ref = self._index_to_future[self._next_return_index]
        if timeout is not None:
            ready, _ = _api.wait([ref], timeout=timeout)
            if not ready:
                if ignore_if_timedout:
                    return None
                raise TimeoutError("Timed out waiting for result")
        del self._index_to_future[self._next_return_index]
        self._next_return_index += 1
        _, actor = self._future_to_actor.pop(ref)
        self._return_actor(actor)
        return _api.get(ref)

    def get_next_unordered(self, timeout: float | None = None,
                           ignore_if_timedout: bool = False) -> Any:
        """Any next result, whichever finishes first."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        ready, _ = _api.wait(list(self._future_to_actor), num_returns=1, timeout=timeout)
        if not ready:
            if ignore_if_timedout:
                return None
            raise TimeoutError("Timed out waiting for result")
        ref = ready[0]
        index, actor = self._future_to_actor.pop(ref)
        self._index_to_future.pop(index, None)
        self._next_return_index = max(self._next_return_index, index + 1)
        self._return_actor(actor)
        return _api.get(ref)

    def _return_actor(self, actor: Any) -> None:
        self._idle.append(actor)
        if self._pending:
            self.submit(*self._pending.pop(0))

    def has_free(self) -> bool:
        """Whether an actor is idle."""
        return bool(self._idle) and not self._pending

    def pop_idle(self) -> Any:
        """Remove and return an idle actor, or None."""
        return self._idle.pop() if self.has_free() else None

    def push(self, actor: Any) -> None:
        """Add an actor to the pool."""
        busy = [a for _, a in self._future_to_actor.values()]
        if actor in self._idle or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)
