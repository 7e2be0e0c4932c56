"""``Pool``: the standard library's ``multiprocessing.Pool`` with actors as its worker processes
(Ray's ``ray.util.multiprocessing.Pool``).

Work goes to the pool's actors in chunks (one actor call runs a whole chunk). A thread of the
pool's own turns finished chunks into results and runs the callbacks, as the standard
library's result handler does: never zactor's I/O thread, so a callback may call ``zactor.get``
or submit more work.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from multiprocessing import TimeoutError
from multiprocessing.pool import RemoteTraceback
from typing import Any

import cloudpickle

import zactor

log = logging.getLogger(__name__)

__all__ = ["AsyncResult", "IMapIterator", "Pool", "TimeoutError"]

_RUN, _CLOSE, _TERMINATE = "RUN", "CLOSE", "TERMINATE"


class _Failure:
    """What a chunk holds in place of the result of a call that raised: the exception and its
    traceback as text (the traceback object itself does not pickle)."""

    __slots__ = ("exc", "tb")

    def __init__(self, exc: BaseException, tb: str) -> None:
        self.exc = exc
        self.tb = tb

    def exception(self) -> BaseException:
        # As the standard library does: the original exception, its remote traceback as cause.
        self.exc.__cause__ = RemoteTraceback(self.tb)
        return self.exc


def _failure(exc: Exception) -> _Failure:
    tb = traceback.format_exc()
    try:
        cloudpickle.dumps(exc)
    except Exception:  # noqa: BLE001 - an exception that does not pickle must not lose the chunk
        exc = RuntimeError(f"{type(exc).__name__}: {exc} (the exception could not be pickled)")
    return _Failure(exc, tb)


@zactor.remote(num_cpus=0)  # as Ray's PoolActor: the pool's size, not CPUs, bounds its work
class _PoolActor:
    """One worker process of a pool."""

    def __init__(self, initializer: Callable | None, initargs: tuple) -> None:
        if initializer is not None:
            initializer(*initargs)

    def ping(self) -> int:
        return os.getpid()

    def run_batch(self, func: Callable, batch: list[tuple[tuple, dict | None]]) -> list:
        results: list = []
        for args, kwargs in batch:
            try:
                results.append(func(*args, **(kwargs or {})))
            except Exception as exc:  # noqa: BLE001 - returned in its place, raised by get()
                results.append(_failure(exc))
        return results


class _Slot:
    """A place in the pool: its current actor, the chunks it was sent, those not yet back."""

    __slots__ = ("actor", "count", "in_flight")

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.count = 0
        self.in_flight = 0


class AsyncResult:
    """The result of ``apply_async``, ``map_async`` or ``starmap_async``.

    Example::

        result = pool.apply_async(pow, (2, 10))
        result.wait(timeout=5)
        assert result.ready() and result.successful() and result.get() == 1024
    """

    def __init__(self, num_chunks: int, single: bool, callback: Callable | None,
                 error_callback: Callable | None) -> None:
        self._chunks: list = [None] * num_chunks
        self._remaining = num_chunks
        self._single = single
        self._callback = callback
        self._error_callback = error_callback
        self._error: BaseException | None = None
        self._value: Any = None
        self._event = threading.Event()
        if num_chunks == 0:  # an empty map: ready at once, and (as the stdlib) no callback
            self._value = []
            self._event.set()

    def _chunk_done(self, index: int, batch: Any) -> None:
        """Called on the pool's result thread with a chunk's results (or why it failed)."""
        if self._event.is_set():
            return  # an earlier chunk failed: the result is already decided
        error: BaseException | None = batch if isinstance(batch, BaseException) else None
        if error is None:
            failed = next((r for r in batch if isinstance(r, _Failure)), None)
            error = failed.exception() if failed is not None else None
        if error is not None:
            # As the standard library: the first error decides the result at once.
            self._error = error
            _call(self._error_callback, error)
            self._event.set()
            return
        self._chunks[index] = batch
        self._remaining -= 1
        if self._remaining == 0:
            values = [v for chunk in self._chunks for v in chunk]
            self._value = values[0] if self._single else values
            self._chunks = []
            _call(self._callback, self._value)
            self._event.set()

    def ready(self) -> bool:
        """Whether the call has completed."""
        return self._event.is_set()

    def successful(self) -> bool:
        """Whether the call completed without raising; ``ValueError`` if it is not ready."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._error is None

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the result is ready or ``timeout`` seconds pass."""
        self._event.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        """The result; the function's own exception if it raised; ``multiprocessing.
        TimeoutError`` if it is not ready within ``timeout`` seconds."""
        self.wait(timeout)
        if not self.ready():
            raise TimeoutError
        if self._error is not None:
            raise self._error
        return self._value


ApplyResult = AsyncResult  # the standard library's names for it
MapResult = AsyncResult


def _call(callback: Callable | None, value: Any) -> None:
    if callback is None:
        return
    try:
        callback(value)
    except Exception:  # noqa: BLE001 - as the stdlib's handler would, keep serving the others
        log.exception("a Pool callback raised")


class IMapIterator:
    """The iterator ``imap`` and ``imap_unordered`` return: it takes its input lazily, keeping
    at most two chunks per actor in flight, and ``next(timeout)`` raises ``multiprocessing.
    TimeoutError`` when no result comes in time."""

    def __init__(self, pool: Pool, func: Callable, iterable: Iterable, chunksize: int,
                 ordered: bool, star: bool = False) -> None:
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        self._pool = pool
        self._func = func
        self._input = iter(iterable)
        self._chunksize = chunksize
        self._ordered = ordered
        self._star = star
        self._cond = threading.Condition()
        self._results: dict[int, list] = {}
        self._completed: collections.deque[int] = collections.deque()  # unordered: done order
        self._sizes: list[int] = []
        self._next_chunk = 0  # ordered: the chunk to yield from next
        self._yielded_chunks = 0
        self._in_flight = 0
        self._input_done = False
        self._buffer: collections.deque = collections.deque()
        self._limit = 2 * len(pool._slots)
        with self._cond:
            self._top_up()

    def _top_up(self) -> None:
        """Send more chunks while fewer than the limit are out (called holding the lock, on
        the consumer's thread only: the input iterator is never touched by two threads)."""
        while not self._input_done and self._in_flight < self._limit:
            chunk = list(itertools.islice(self._input, self._chunksize))
            if not chunk:
                self._input_done = True
                break
            batch = [(tuple(a), None) if self._star else ((a,), None) for a in chunk]
            self._sizes.append(len(batch))
            self._in_flight += 1
            self._pool._submit(self._func, batch, self, len(self._sizes) - 1)

    def _chunk_done(self, index: int, batch: Any) -> None:
        if isinstance(batch, BaseException):  # the whole chunk was lost (its actor died)
            batch = [batch] * self._sizes[index]
        with self._cond:
            self._results[index] = batch
            self._completed.append(index)
            self._in_flight -= 1
            self._cond.notify_all()

    def __iter__(self) -> Iterator:
        return self

    def next(self, timeout: float | None = None) -> Any:
        """The next result (the next in input order for ``imap``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._buffer:
                self._top_up()
                index = self._ready_chunk()
                if index is not None:
                    self._buffer.extend(self._results.pop(index))
                    self._yielded_chunks += 1
                    continue
                if self._input_done and self._yielded_chunks == len(self._sizes):
                    raise StopIteration
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError
                self._cond.wait(left)
            value = self._buffer.popleft()
        if isinstance(value, _Failure):
            raise value.exception()
        if isinstance(value, BaseException):
            raise value
        return value

    __next__ = next  # type: ignore[assignment]

    def _ready_chunk(self) -> int | None:
        if self._ordered:
            if self._next_chunk in self._results:
                self._next_chunk += 1
                return self._next_chunk - 1
            return None
        while self._completed:
            index = self._completed.popleft()
            if index in self._results:
                return index
        return None


class Pool:
    """A process pool whose workers are actors on the cluster (Ray's
    ``ray.util.multiprocessing.Pool``), with ``multiprocessing.Pool``'s methods.

    ``processes`` defaults to the cluster's CPUs. If zactor is not initialized yet, the pool
    initializes it: connecting to ``ray_address`` (or ``ZACTOR_ADDRESS``) when given, else
    starting a local cluster of ``processes`` CPUs. ``ray_remote_args`` are the actors'
    options. Leaving a ``with`` block terminates the pool, as the standard library does.

    Example::

        from zactor.util.multiprocessing import Pool

        with Pool(processes=2) as pool:
            assert pool.map(abs, [-1, -2, 3]) == [1, 2, 3]
            assert sorted(pool.imap_unordered(abs, range(-3, 0))) == [1, 2, 3]
    """

    def __init__(self, processes: int | None = None, initializer: Callable | None = None,
                 initargs: Iterable = (), maxtasksperchild: int | None = None,
                 context: Any = None, ray_address: str | None = None,
                 ray_remote_args: dict[str, Any] | None = None) -> None:
        if maxtasksperchild is not None and (
                not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if context is not None:
            log.warning("Pool ignores 'context': its workers are zactor actors")
        self._initializer = initializer
        self._initargs = tuple(initargs or ())
        self._maxtasksperchild = maxtasksperchild
        self._actor_class = _PoolActor.options(**(ray_remote_args or {}))
        processes = self._init_cluster(processes, ray_address)
        self._state = _RUN
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._outstanding = 0  # chunks sent whose results the result thread has not handled
        self._next_slot = 0
        self._stopping: list = []  # __ray_terminate__ refs of actors told to end
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._slots = [_Slot(self._new_actor()) for _ in range(processes)]
        # Wait for every actor, so that an initializer's error is raised here.
        zactor.get([slot.actor.ping.remote() for slot in self._slots])
        self._handler = threading.Thread(target=self._handle_results, daemon=True,
                                         name="zactor-pool-results")
        self._handler.start()

    # -- set-up ------------------------------------------------------------------------------

    @staticmethod
    def _init_cluster(processes: int | None, address: str | None) -> int:
        if not zactor.is_initialized():
            if address is not None:
                zactor.init(address=address)
            elif os.environ.get("ZACTOR_ADDRESS"):
                zactor.init()
            else:
                zactor.init(num_cpus=processes)
        cpus = int(zactor.cluster_resources().get("CPU", 0))
        if processes is None:
            processes = cpus
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if processes > cpus:
            raise ValueError(f"Tried to start a pool with {processes} processes on a cluster "
                             f"that has only {cpus} CPUs.")
        return processes

    def _new_actor(self) -> Any:
        return self._actor_class.remote(self._initializer, self._initargs)

    # -- sending work and collecting it ------------------------------------------------------

    def _submit(self, func: Callable, batch: list, sink: Any, index: int) -> None:
        """Send one chunk to the least busy actor; ``sink._chunk_done(index, results)`` runs on
        the result thread once it is back."""
        with self._lock:
            if self._state != _RUN:
                raise ValueError("Pool not running")
            n = len(self._slots)
            # Round-robin among the least busy, so equal loads still spread out.
            order = [(self._next_slot + i) % n for i in range(n)]
            pick = min(order, key=lambda i: self._slots[i].in_flight)
            self._next_slot = (pick + 1) % n
            slot = self._slots[pick]
            ref = slot.actor.run_batch.remote(func, batch)
            slot.in_flight += 1
            slot.count += 1
            self._outstanding += 1
            if self._maxtasksperchild is not None and slot.count >= self._maxtasksperchild:
                # Its end is queued behind the chunks it has: they still run.
                self._stopping.append(slot.actor.__ray_terminate__.remote())
                slot.actor = self._new_actor()
                slot.count = 0
        ref.future().add_done_callback(
            lambda fut: self._events.put((sink, index, slot, fut)))

    def _handle_results(self) -> None:
        while True:
            event = self._events.get()
            if event is None:
                return
            sink, index, slot, fut = event
            try:
                batch = fut.result()
            except BaseException as exc:  # noqa: BLE001 - the chunk failed as a whole
                batch = exc
            try:
                sink._chunk_done(index, batch)
            except Exception:  # noqa: BLE001 - keep the thread serving the other results
                log.exception("handling a Pool result failed")
            with self._lock:
                slot.in_flight -= 1
                self._outstanding -= 1
                self._drained.notify_all()

    def _check_running(self) -> None:
        if self._state != _RUN:
            raise ValueError("Pool not running")

    def _chunksize(self, n: int) -> int:
        # The standard library's choice: about four chunks per worker.
        chunksize, extra = divmod(n, len(self._slots) * 4)
        return chunksize + 1 if extra else chunksize

    def _map_async(self, func: Callable, iterable: Iterable, chunksize: int | None,
                   star: bool, callback: Callable | None,
                   error_callback: Callable | None) -> AsyncResult:
        self._check_running()
        items = iterable if hasattr(iterable, "__len__") else list(iterable)
        if chunksize is None:
            chunksize = self._chunksize(len(items))
        elif chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        batches = []
        it = iter(items)
        while chunk := list(itertools.islice(it, chunksize)):
            batches.append([(tuple(a), None) if star else ((a,), None) for a in chunk])
        result = AsyncResult(len(batches), False, callback, error_callback)
        # One copy of the function in the object store serves every chunk.
        fn = zactor.put(func) if len(batches) > 1 else func
        for i, batch in enumerate(batches):
            self._submit(fn, batch, result, i)
        return result

    # -- the multiprocessing.Pool API --------------------------------------------------------

    def apply(self, func: Callable, args: tuple = (), kwds: dict | None = None) -> Any:
        """``func(*args, **kwds)`` on one of the pool's actors, waiting for its result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func: Callable, args: tuple = (), kwds: dict | None = None,
                    callback: Callable | None = None,
                    error_callback: Callable | None = None) -> AsyncResult:
        """``func(*args, **kwds)`` on one of the pool's actors; ``callback(result)`` or
        ``error_callback(exception)`` runs on the pool's result thread when it ends."""
        self._check_running()
        result = AsyncResult(1, True, callback, error_callback)
        self._submit(func, [(tuple(args or ()), kwds)], result, 0)
        return result

    def map(self, func: Callable, iterable: Iterable, chunksize: int | None = None) -> list:
        """``[func(x) for x in iterable]``, run in chunks on the pool's actors."""
        return self._map_async(func, iterable, chunksize, False, None, None).get()

    def map_async(self, func: Callable, iterable: Iterable, chunksize: int | None = None,
                  callback: Callable | None = None,
                  error_callback: Callable | None = None) -> AsyncResult:
        """``map`` without waiting: ``callback`` gets the whole list of results."""
        return self._map_async(func, iterable, chunksize, False, callback, error_callback)

    def starmap(self, func: Callable, iterable: Iterable[Iterable],
                chunksize: int | None = None) -> list:
        """``[func(*args) for args in iterable]``."""
        return self._map_async(func, iterable, chunksize, True, None, None).get()

    def starmap_async(self, func: Callable, iterable: Iterable[Iterable],
                      chunksize: int | None = None, callback: Callable | None = None,
                      error_callback: Callable | None = None) -> AsyncResult:
        """``starmap`` without waiting."""
        return self._map_async(func, iterable, chunksize, True, callback, error_callback)

    def imap(self, func: Callable, iterable: Iterable, chunksize: int = 1) -> IMapIterator:
        """Like ``map``, lazily: results in input order as an iterator."""
        self._check_running()
        return IMapIterator(self, func, iterable, chunksize, ordered=True)

    def imap_unordered(self, func: Callable, iterable: Iterable,
                       chunksize: int = 1) -> IMapIterator:
        """Like ``imap``, but results come as they complete."""
        self._check_running()
        return IMapIterator(self, func, iterable, chunksize, ordered=False)

    def close(self) -> None:
        """Take no more work; the actors end once the work they have is done."""
        with self._lock:
            if self._state != _RUN:
                return
            self._state = _CLOSE
            for slot in self._slots:
                self._stopping.append(slot.actor.__ray_terminate__.remote())

    def terminate(self) -> None:
        """End the actors now; work still running is lost."""
        with self._lock:
            if self._state == _TERMINATE:
                return
            self._state = _TERMINATE
            actors = [slot.actor for slot in self._slots]
        for actor in actors:
            try:
                zactor.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                log.debug("killing a pool actor failed", exc_info=True)
        self._events.put(None)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the actors of a closed or terminated pool to end (after a ``close``,
        for every result to be delivered and its callbacks run)."""
        if self._state == _RUN:
            raise ValueError("Pool is still running")
        if self._state == _CLOSE:
            with self._lock:
                self._drained.wait_for(lambda: self._outstanding == 0, timeout)
            if self._stopping:
                zactor.wait(self._stopping, num_returns=len(self._stopping), timeout=timeout)
            self._events.put(None)
        self._handler.join(timeout)

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.terminate()

    def __reduce__(self) -> Any:
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")
