"""Async actors: every call is a coroutine on one asyncio loop in its own thread.

Imported only by workers that host an async actor, so the others never load asyncio. At most
``max_concurrency`` calls run at once (Ray's default for async actors: 1000).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import TYPE_CHECKING, Any

from zactor.exceptions import TaskCancelledError, _ActorExit
from zactor.protocol import S
from zactor.worker import generators

if TYPE_CHECKING:
    from zactor.worker.main import WorkerRuntime


class AsyncActorLoop:
    def __init__(self, runtime: WorkerRuntime, concurrency: int) -> None:
        self.runtime = runtime
        self.tasks: dict[bytes, asyncio.Future] = {}
        self.cancelled: set[bytes] = set()
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.slots = asyncio.Semaphore(concurrency)
            started.set()
            self.loop.run_forever()

        threading.Thread(target=run, name="zactor-actor-loop", daemon=True).start()
        started.wait()

    def submit(self, spec: list, fields: list, frames: list) -> None:
        asyncio.run_coroutine_threadsafe(self._run(spec, fields, frames), self.loop)

    def cancel(self, task_id: bytes) -> bool:
        task = self.tasks.get(task_id)
        if task is None:
            return False
        # Cancelled it stays, even if the coroutine catches CancelledError (as in Ray).
        self.cancelled.add(task_id)
        self.loop.call_soon_threadsafe(task.cancel)
        return True

    async def _run(self, spec: list, fields: list, frames: list) -> None:
        rt = self.runtime
        task_id = spec[S.TASK_ID]
        try:
            async with self.slots:
                ctx = rt.context
                ctx.task_id = task_id
                ctx.name = spec[S.NAME]
                rt.check_not_cancelled(spec)
                fn = rt.target(spec)
                if spec[S.DEPS] and len(fields[1]) < len(spec[S.DEPS]):
                    # Some arguments must be fetched: do not block the loop while they come.
                    args, kwargs, keep = await self.loop.run_in_executor(
                        None, rt.resolve_args, spec, fields, frames)
                else:
                    args, kwargs, keep = rt.resolve_args(spec, fields, frames)
                streaming = spec[S.NUM_RETURNS] < 0
                if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
                    if inspect.isasyncgenfunction(fn) and streaming:
                        work = generators.run_async(rt, spec, fn(*args, **kwargs))
                    else:
                        work = fn(*args, **kwargs)
                    task = asyncio.ensure_future(work)
                    self.tasks[task_id] = task
                    try:
                        result: Any = await task
                    finally:
                        self.tasks.pop(task_id, None)
                    if task_id in self.cancelled:
                        raise asyncio.CancelledError()
                    if streaming and inspect.isasyncgenfunction(fn):
                        return  # the stream has been sent
                else:
                    result = fn(*args, **kwargs)
                del keep
            if spec[S.NUM_RETURNS] < 0:
                generators.run(rt, spec, result)
            else:
                rt.send_results(spec, result)
        except asyncio.CancelledError:
            # Ray raises this one as a RayTaskError that is also a TaskCancelledError.
            rt.send_error(spec, TaskCancelledError(f"Task {spec[S.NAME]} was cancelled"),
                          as_task_error=True)
        except SystemExit as exc:
            rt.exit_process(exc.code)
        except _ActorExit:
            rt.exit_actor()
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            rt.send_error(spec, exc)
        finally:
            self.cancelled.discard(task_id)
            rt.track(-1)
