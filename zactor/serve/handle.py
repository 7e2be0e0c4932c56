"""``DeploymentHandle``: calls a deployment from Python (a driver, a replica, a task), and
``DeploymentResponse``: its answer, got with ``.result()`` or ``await``.

A response passed as an argument of another handle call is resolved in the callee: the
second call gets the first one's ObjectRef, so the value never comes back through the
caller (model composition).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

from zactor.serve import _router


class DeploymentResponse:
    """The result of ``handle.remote()``: ``.result(timeout_s=)`` blocks, ``await`` does not.

        response = handle.remote(3)
        assert response.result(timeout_s=10) == 6
    """

    __slots__ = ("_request",)

    def __init__(self, request: _router.Request) -> None:
        self._request = request

    def result(self, *, timeout_s: float | None = None) -> Any:
        """The value (or the error the call raised); TimeoutError after ``timeout_s``."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None and not self._request.result.done():
            raise RuntimeError("Sync methods should not call `.result()` when running in an "
                               "asyncio loop: use `await response` instead")
        try:
            return self._request.result.result(timeout_s)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"the request did not finish within {timeout_s} s") from None

    def __await__(self):
        return asyncio.wrap_future(self._request.result).__await__()

    def cancel(self) -> None:
        """Cancel the request (only one that has not been sent to a replica yet stops)."""
        from zactor.serve.exceptions import RequestCancelledError

        self._request.fail(RequestCancelledError("the request was cancelled"))

    def cancelled(self) -> bool:
        from zactor.serve.exceptions import RequestCancelledError

        fut = self._request.result
        return fut.done() and isinstance(fut.exception(), RequestCancelledError)

    def _to_object_ref_sync(self, timeout_s: float | None = None) -> Any:
        """The ObjectRef of the call, once it is sent to a replica."""
        return self._request.ref.result(timeout_s)

    async def _to_object_ref(self) -> Any:
        return await asyncio.wrap_future(self._request.ref)


class DeploymentHandle:
    """Calls one deployment of one application.

        handle = serve.get_app_handle("default")
        handle.remote(1).result()               # __call__
        handle.predict.remote(x).result()       # another method
        handle.options(method_name="predict")   # the same, as an option
    """

    def __init__(self, deployment_name: str, app_name: str = "default", *,
                 method_name: str = "__call__") -> None:
        self.deployment_name = deployment_name
        self.app_name = app_name
        self.method_name = method_name

    def options(self, *, method_name: str | None = None, stream: bool = False,
                multiplexed_model_id: str = "", use_new_handle_api: bool = True,
                **_ignored: Any) -> DeploymentHandle:
        """A handle with other call options."""
        if stream:
            raise NotImplementedError("zactor.serve does not stream responses yet")
        if multiplexed_model_id:
            raise NotImplementedError("zactor.serve has no model multiplexing yet")
        return DeploymentHandle(self.deployment_name, self.app_name,
                                method_name=method_name or self.method_name)

    def remote(self, *args: Any, **kwargs: Any) -> DeploymentResponse:
        """Send a call to one of the deployment's replicas."""
        router = _router.get(self.app_name, self.deployment_name)
        request = _router.Request("call", self.method_name, args, kwargs)
        pending = [a for a in (*args, *kwargs.values()) if isinstance(a, DeploymentResponse)]
        if not pending:
            router.submit(request)
        else:
            _after(pending, request, router)
        return DeploymentResponse(request)

    def __getattr__(self, name: str) -> DeploymentHandle:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return DeploymentHandle(self.deployment_name, self.app_name, method_name=name)

    def __reduce__(self):
        return DeploymentHandle, (self.deployment_name, self.app_name), \
            {"method_name": self.method_name}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (f"DeploymentHandle(deployment={self.deployment_name!r}, "
                f"app={self.app_name!r}, method={self.method_name!r})")


def _after(pending: list[DeploymentResponse], request: _router.Request,
           router: _router.Router) -> None:
    """Send ``request`` once every response among its arguments has an ObjectRef, with those
    refs in their places: the replica resolves them."""
    left = [len(pending)]
    lock = threading.Lock()

    def swap(value: Any) -> Any:
        if isinstance(value, DeploymentResponse):
            return value._request.ref.result()
        return value

    def one_done(fut: concurrent.futures.Future) -> None:
        if fut.exception() is not None:
            request.fail(fut.exception())
            return
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last and not request.result.done():
            request.args = tuple(swap(a) for a in request.args)
            request.kwargs = {k: swap(v) for k, v in request.kwargs.items()}
            router.submit(request)

    for response in pending:
        response._request.ref.add_done_callback(one_done)
