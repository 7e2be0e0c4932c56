"""A replica: the actor that holds one instance of a deployment's class and runs its
requests, up to ``max_ongoing_requests`` at once on its event loop (sync methods in a thread
pool, so they do not stop the loop). Replicas are children of their deployment's supervisor,
which restarts one whose process dies."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from typing import Any

import cloudpickle

import zactor
from zactor.serve import _http, context

log = logging.getLogger(__name__)


@zactor.remote
class Replica:
    def __init__(self, app_name: str, deployment: str, tag: str, blob: bytes) -> None:
        target, args, kwargs = cloudpickle.loads(blob)
        self.tag = tag
        ctx = context.ReplicaContext(context.ReplicaID(tag, context.DeploymentID(
            deployment, app_name)))
        context._set(ctx)
        if inspect.isclass(target):
            self.instance = target(*args, **kwargs)
            self.asgi = getattr(target, "__serve_asgi_app__", None)
        else:
            self.instance = functools.partial(target, *args, **kwargs) if args or kwargs \
                else target
            self.asgi = None
        ctx.servable_object = self.instance
        self.is_function = not inspect.isclass(target)
        self.ongoing = 0
        self.config_version: int | None = None
        self.methods: dict[str, tuple[Any, bool]] = {}

    def _method(self, name: str) -> tuple[Any, bool]:
        found = self.methods.get(name)
        if found is None:
            if self.is_function:
                if name != "__call__":
                    raise AttributeError(f"a function deployment has only __call__, "
                                         f"not {name!r}")
                fn = self.instance
            else:
                fn = getattr(self.instance, name, None)
                if fn is None:
                    raise AttributeError(f"{type(self.instance).__name__} has no method "
                                         f"{name!r}")
            target = fn.func if isinstance(fn, functools.partial) else fn
            found = self.methods[name] = (fn, inspect.iscoroutinefunction(target))
        return found

    async def _call(self, name: str, args: tuple, kwargs: dict) -> Any:
        fn, is_async = self._method(name)
        if is_async:
            return await fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))
        if inspect.isawaitable(result):
            result = await result
        return result

    async def handle_request(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.ongoing += 1
        try:
            return await self._call(method, args, kwargs)
        finally:
            self.ongoing -= 1

    async def handle_http(self, _method: str, scope: dict, body: bytes) -> tuple:
        self.ongoing += 1
        try:
            if self.asgi is not None:
                status, headers, out = await _http.run_asgi(self.asgi, scope, body)
            else:
                from starlette.requests import Request

                request = Request(scope, _http.receiver(body))
                result = await self._call("__call__", (request,), {})
                status, headers, out = await _http.to_response(result, scope)
            return status, headers, out, self.tag
        finally:
            self.ongoing -= 1

    async def stats(self) -> tuple[int, int | None]:
        return self.ongoing, self.config_version

    async def check_health(self) -> bool:
        if not self.is_function and hasattr(self.instance, "check_health"):
            await self._call("check_health", (), {})
        return True

    async def reconfigure(self, user_config: Any, version: int) -> bool:
        if not self.is_function and hasattr(self.instance, "reconfigure"):
            await self._call("reconfigure", (user_config,), {})
        elif user_config is not None and not self.is_function:
            raise ValueError(f"user_config given, but {type(self.instance).__name__} has no "
                             "reconfigure method")
        self.config_version = version
        return True

    async def drain(self, wait_loop_s: float, timeout_s: float) -> int:
        """Return once no request is running (waiting at least ``wait_loop_s`` for routers
        to stop sending, at most ``timeout_s``); the number still running then."""
        deadline = time.monotonic() + timeout_s
        await asyncio.sleep(min(wait_loop_s, timeout_s))
        while self.ongoing and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.ongoing:
            log.warning("replica %s: %d request(s) still running after the graceful "
                        "shutdown timeout (%.1f s)", self.tag, self.ongoing, timeout_s)
        return self.ongoing
