"""``RayExecutor``: a ``concurrent.futures.Executor`` whose workers are actors (Ray's
``ray.util.concurrent.futures.ray_executor.RayExecutor``; ``ZactorExecutor`` is the same class).

Calls wait in the executor until one of at most ``max_workers`` actors is free, as in the
standard library's executors, so that a queued call can still be cancelled (``Future.cancel``,
``shutdown(cancel_futures=True)``) and a running one reports ``running()``. One thread of the
executor's own hands calls to actors and results to futures: never zactor's I/O thread, where
the ``ObjectRef.future()`` callbacks fire and where sending more work must not happen.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

import zactor
from zactor.exceptions import ActorError

log = logging.getLogger(__name__)

__all__ = ["RayExecutor", "ZactorExecutor"]


@zactor.remote(num_cpus=0)  # max_workers, not CPUs, bounds the executor's work (as Pool's)
class _ExecutorActor:
    """One worker of an executor: runs the initializer once, then one call at a time."""

    def __init__(self, initializer: Callable | None, initargs: tuple) -> None:
        if initializer is not None:
            initializer(*initargs)

    def ping(self) -> int:
        return os.getpid()

    def run(self, fn: Callable, args: tuple, kwargs: dict) -> Any:
        return fn(*args, **kwargs)


class _Worker:
    __slots__ = ("actor", "count")

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.count = 0


class RayExecutor(Executor):
    """Run calls on up to ``max_workers`` actors (default: the cluster's CPUs), returning
    ``concurrent.futures.Future`` objects that ``concurrent.futures.wait`` and
    ``as_completed`` accept.

    If zactor is not initialized, the executor calls ``zactor.init(**kwargs)`` and, unless
    ``shutdown_ray=False``, shuts the cluster down again in ``shutdown``. ``initializer
    (*initargs)`` runs once in each worker actor; ``max_tasks_per_child`` replaces an actor
    after that many calls. ``mp_context`` is accepted for compatibility and ignored.

    Example::

        from concurrent.futures import as_completed
        from zactor.util.concurrent.futures import RayExecutor

        with RayExecutor(max_workers=2) as ex:
            futures = [ex.submit(pow, 2, n) for n in range(4)]
            assert sorted(f.result() for f in as_completed(futures)) == [1, 2, 4, 8]
    """

    def __init__(self, max_workers: int | None = None, shutdown_ray: bool | None = None,
                 initializer: Callable | None = None, initargs: tuple = (),
                 mp_context: Any = None, max_tasks_per_child: int | None = None,
                 **kwargs: Any) -> None:
        if max_tasks_per_child is not None and max_tasks_per_child < 1:
            raise ValueError("max_tasks_per_child must be >= 1 or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._initialised_ray = not zactor.is_initialized()
        if self._initialised_ray:
            zactor.init(**kwargs)
        self.shutdown_ray = shutdown_ray
        if max_workers is None:
            max_workers = int(zactor.cluster_resources().get("CPU", 1)) or 1
        if max_workers < 1:
            raise ValueError("max_workers must be greater than 0")
        self.max_workers = max_workers
        self._max_tasks = max_tasks_per_child
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._shutdown = False
        self._shutdown_lock = threading.Lock()
        self._finished = threading.Event()
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        # Owned by the dispatcher thread alone:
        self._pending: collections.deque = collections.deque()
        self._idle: list[_Worker] = []
        self._workers: list[_Worker] = []
        self._running = 0
        self._closing = False
        self._thread = threading.Thread(target=self._dispatch_loop, daemon=True,
                                        name="zactor-executor")
        self._thread.start()

    # -- the Executor API --------------------------------------------------------------------

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        """Schedule ``fn(*args, **kwargs)`` on a worker actor; a ``Future`` of its result."""
        with self._shutdown_lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future: Future = Future()
            self._events.put(("submit", (future, fn, args, kwargs)))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more calls; with ``cancel_futures`` cancel the ones still queued; with
        ``wait`` return once the rest have finished and the actors are gone. Shutting down a
        cluster the executor started always waits first."""
        with self._shutdown_lock:
            first = not self._shutdown
            self._shutdown = True
            if first:
                self._events.put(("shutdown", cancel_futures))
        stop_ray = self.shutdown_ray if self.shutdown_ray is not None else self._initialised_ray
        if wait or stop_ray:
            self._finished.wait()
            self._thread.join()
        if first and stop_ray and zactor.is_initialized():
            zactor.shutdown()

    # -- the dispatcher thread ---------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while not self._finished.is_set():
            kind, payload = self._events.get()
            try:
                if kind == "submit":
                    self._pending.append(payload)
                elif kind == "done":
                    self._complete(*payload)
                else:
                    self._closing = True
                    if payload:  # cancel_futures: what has not started never will
                        while self._pending:
                            self._pending.popleft()[0].cancel()
                self._dispatch()
            except Exception:  # noqa: BLE001 - the loop must outlive one bad event
                log.exception("the executor's dispatcher failed on %s", kind)
            if self._closing and not self._pending and self._running == 0:
                self._stop_workers()
                self._finished.set()

    def _dispatch(self) -> None:
        while self._pending and (self._idle or len(self._workers) < self.max_workers):
            future, fn, args, kwargs = self._pending.popleft()
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while it waited
            if self._idle:
                worker = self._idle.pop()
            else:
                worker = _Worker(_ExecutorActor.remote(self._initializer, self._initargs))
                self._workers.append(worker)
            try:
                ref = worker.actor.run.remote(fn, args, kwargs)
            except BaseException as exc:  # noqa: BLE001 - e.g. fn does not pickle
                future.set_exception(exc)
                self._idle.append(worker)
                continue
            worker.count += 1
            self._running += 1
            ref.future().add_done_callback(
                lambda done, w=worker, f=future: self._events.put(("done", (w, f, done))))

    def _complete(self, worker: _Worker, future: Future, done: Future) -> None:
        self._running -= 1
        exc = done.exception()
        if exc is None:
            future.set_result(done.result())
        else:
            future.set_exception(exc)
        if isinstance(exc, ActorError):  # its actor is gone: a new one takes its place
            self._workers.remove(worker)
        elif self._max_tasks is not None and worker.count >= self._max_tasks:
            self._workers.remove(worker)
            worker.actor.__ray_terminate__.remote()
        else:
            self._idle.append(worker)

    def _stop_workers(self) -> None:
        for worker in self._workers:
            try:
                zactor.kill(worker.actor)
            except Exception:  # noqa: BLE001 - already gone, or the cluster is
                log.debug("killing an executor actor failed", exc_info=True)
        self._workers.clear()
        self._idle.clear()


ZactorExecutor = RayExecutor
