"""The dashboard's web application (starlette): the page, its JSON, its live updates, and
``/metrics``.

    GET /                         the page (static/index.html, Preact + htm, no build step)
    GET /static/...               its script, style and vendored library
    GET /api/snapshot             the cluster now (zactor.dashboard._data.snapshot), as JSON
    GET /api/events               the same, pushed every DASHBOARD_REFRESH_S (server-sent events)
    GET /api/jobs/{id}/logs       a job's log from ?offset=: {"text", "offset", "ended"}
    GET /metrics                  Prometheus text (zactor._metrics_export)

Read-only: nothing here submits work or runs code (Ray's CVE-2023-48022 was a dashboard
that did). When a token is set (always, but on an ``--insecure`` cluster), every request
must carry it: ``Authorization: Bearer``, basic auth with it as the password, or
``?token=`` once (which sets a cookie, bound to this host and sent by the page's own
requests only, so a web page of another site cannot use it, DNS rebinding or not). Without
one, requests must name a loopback host unless the port is bound elsewhere on purpose.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from zactor import config
from zactor.comm.security import carries_token
from zactor.dashboard._data import Hub

log = logging.getLogger(__name__)

STATIC = os.path.join(os.path.dirname(__file__), "static")
COOKIE = "zactor_dashboard"
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


class TokenAuth:
    """ASGI middleware: a request without the token gets 401 (and a browser, a login box)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token

    def _carried(self, scope: dict) -> tuple[bool, bool]:
        """(whether the request carries the token, whether it came in the query string)."""
        headers = dict(scope.get("headers") or [])
        if carries_token(headers.get(b"authorization", b"").decode("latin-1"), self.token):
            return True, False
        token = self.token.encode()
        for part in headers.get(b"cookie", b"").split(b";"):
            name, _, value = part.strip().partition(b"=")
            if name == COOKIE.encode() and hmac.compare_digest(value, token):
                return True, False
        for part in scope.get("query_string", b"").split(b"&"):
            name, _, value = part.partition(b"=")
            if name == b"token" and hmac.compare_digest(value, token):
                return True, True
        return False, False

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ok, in_query = self._carried(scope)
        if not ok:
            response = Response("This dashboard needs the cluster's token (the URL that "
                                "`zactor status` prints carries it).\n", status_code=401,
                                headers={"WWW-Authenticate": 'Basic realm="zactor"'})
            await response(scope, receive, send)
            return
        if not in_query:
            await self.app(scope, receive, send)
            return
        cookie = (f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                  .encode())

        async def send_with_cookie(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie)]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def build(client: Any, token: str | None, allowed_hosts: list[str] | None = None,
          refresh_s: float = config.DASHBOARD_REFRESH_S,
          stopping: Any = lambda: False) -> Starlette:
    """The application, over ``client`` (a CoreClient connected to the head). Open event
    streams end once ``stopping()`` is true, so that a server shutting down has no stream
    to cut."""
    hub = Hub(client, refresh_s)

    async def page(request: Request) -> Response:
        return FileResponse(os.path.join(STATIC, "index.html"),
                            headers={"Cache-Control": "no-cache"})

    async def snapshot(request: Request) -> Response:
        return JSONResponse(await hub.get())

    async def events(request: Request) -> Response:
        loop = asyncio.get_running_loop()

        async def stream():
            while True:
                data = json.dumps(await hub.get(), separators=(",", ":"))
                yield f"event: snapshot\ndata: {data}\n\n"
                # starlette also cancels this generator when the page goes away
                deadline = loop.time() + refresh_s
                while loop.time() < deadline:
                    if stopping():
                        return
                    await asyncio.sleep(min(0.1, refresh_s))
                if await request.is_disconnected():
                    return

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def job_logs(request: Request) -> Response:
        try:
            offset = max(0, int(request.query_params.get("offset", "0")))
        except ValueError:
            return JSONResponse({"error": "offset must be an integer"}, status_code=400)
        job_id = request.path_params["job_id"]
        try:
            text, end, ended = await asyncio.to_thread(client.request, "job_logs",
                                                       [job_id, offset])
        except (LookupError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        return JSONResponse({"text": text, "offset": end, "ended": ended})

    metrics_registry = None

    async def metrics(request: Request) -> Response:
        nonlocal metrics_registry
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if metrics_registry is None:
            from zactor._metrics_export import registry

            metrics_registry = registry(lambda: client.request("metrics"))
        body = await asyncio.to_thread(generate_latest, metrics_registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    middleware = []
    if token:
        middleware.append(Middleware(TokenAuth, token=token))
    else:
        middleware.append(Middleware(TrustedHostMiddleware,
                                     allowed_hosts=LOOPBACK_HOSTS + list(allowed_hosts or [])))
    return Starlette(routes=[
        Route("/", page),
        Route("/api/snapshot", snapshot),
        Route("/api/events", events),
        Route("/api/jobs/{job_id}/logs", job_logs),
        Route("/metrics", metrics),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ], middleware=middleware)
