"""``@serve.batch``: calls that arrive together run as one call on a list (a model's batch),
each caller getting its own element back."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any


class _Batcher:
    def __init__(self, fn: Callable, owner: Any, max_batch_size: int, timeout_s: float):
        self.fn = fn
        self.owner = owner
        self.max_batch_size = max_batch_size
        self.timeout_s = timeout_s
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.timeout_s
            while len(batch) < self.max_batch_size:
                left = deadline - loop.time()
                if left <= 0:
                    while len(batch) < self.max_batch_size and not self.queue.empty():
                        batch.append(self.queue.get_nowait())
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            await self._call(batch)

    async def _call(self, batch: list) -> None:
        futures = [f for _, f in batch]
        columns = [list(col) for col in zip(*(args for args, _ in batch), strict=False)]
        try:
            head = (self.owner,) if self.owner is not None else ()
            results = await self.fn(*head, *columns)
            if not isinstance(results, (list, tuple)) or len(results) != len(batch):
                raise TypeError(f"a @serve.batch method must return a list as long as its "
                                f"input ({len(batch)}), got {type(results).__name__}")
            for fut, value in zip(futures, results, strict=False):
                if not fut.done():
                    fut.set_result(value)
        except Exception as exc:  # noqa: BLE001 - each caller gets the batch's error
            for fut in futures:
                if not fut.done():
                    fut.set_exception(exc)


def batch(_func: Callable | None = None, *, max_batch_size: int = 10,
          batch_wait_timeout_s: float = 0.01, **_ignored: Any) -> Any:
    """Batch concurrent calls of an async method: it is called with a list per argument
    (at most ``max_batch_size`` long, gathered for up to ``batch_wait_timeout_s``) and
    returns a list of results, one per call.

        @serve.deployment(max_ongoing_requests=32)
        class Model:
            @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
            async def __call__(self, xs: list[int]) -> list[int]:
                return [x * 2 for x in xs]
    """
    if max_batch_size < 1:
        raise ValueError("max_batch_size must be >= 1")
    if batch_wait_timeout_s < 0:
        raise ValueError("batch_wait_timeout_s must be >= 0")

    def decorate(fn: Callable) -> Callable:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError("@serve.batch needs an async function or method")
        params = list(inspect.signature(fn).parameters)
        is_method = bool(params) and params[0] == "self"
        attr = f"__serve_batcher_{fn.__name__}"
        plain: dict[int, _Batcher] = {}

        @functools.wraps(fn)
        async def wrapper(*args: Any) -> Any:
            loop = asyncio.get_running_loop()
            if is_method:
                owner, args = args[0], args[1:]
                batcher = owner.__dict__.get(attr)
                if batcher is None or batcher.task.get_loop() is not loop:
                    batcher = _Batcher(fn, owner, max_batch_size, batch_wait_timeout_s)
                    owner.__dict__[attr] = batcher
            else:
                batcher = plain.get(id(loop))
                if batcher is None:
                    batcher = plain[id(loop)] = _Batcher(fn, None, max_batch_size,
                                                         batch_wait_timeout_s)
            fut = loop.create_future()
            batcher.queue.put_nowait((args, fut))
            return await fut

        wrapper._serve_batch = True
        return wrapper

    return decorate(_func) if _func is not None else decorate
