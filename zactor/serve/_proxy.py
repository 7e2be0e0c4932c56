"""The HTTP proxy: uvicorn serving a starlette application, in a thread of its own actor.
It matches a request's path against the applications' route prefixes (the longest wins),
sends the request to the ingress deployment through a router, and answers with what the
replica returned; one access-log line per request."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from typing import Any

import zactor
from zactor.serve import _http, _longpoll, _router
from zactor.serve.config import HTTPOptions, LoggingConfig
from zactor.serve.exceptions import BackPressureError, DeploymentUnavailableError

log = logging.getLogger(__name__)
_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]


def _access_logger(cfg: LoggingConfig) -> logging.Logger | None:
    if not cfg.enable_access_log:
        return None
    logger = logging.getLogger("zactor.serve.access")
    logger.setLevel(cfg.log_level)
    logger.propagate = False
    if cfg.logs_dir:
        os.makedirs(cfg.logs_dir, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(
            os.path.join(cfg.logs_dir, "proxy_access.log"))
    else:
        handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.handlers[:] = [handler]
    return logger


@zactor.remote
class Proxy:
    def __init__(self, http_options: dict, logging_config: dict) -> None:
        self.http = HTTPOptions.parse(http_options)
        self.access = _access_logger(LoggingConfig.parse(logging_config))
        self.routes: list[tuple[str, str, str]] = []  # (prefix, app, ingress), longest first
        self.routers: dict[str, _router.Router] = {}
        # Bound here, before uvicorn starts: a port in use fails the proxy's start with the
        # OSError that says so.
        self.sock = socket.socket(socket.AF_INET6 if ":" in self.http.host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.http.host, self.http.port))
        self.port = self.sock.getsockname()[1]
        self.server: Any = None
        self.thread: threading.Thread | None = None

    def ready(self) -> tuple[str, int]:
        """Start serving; return (host, port) once uvicorn is listening."""
        import uvicorn

        _longpoll.get().watch(("routes",), self._set_routes)
        config = uvicorn.Config(self._app(), log_level="warning", access_log=False,
                                lifespan="off", timeout_keep_alive=self.http.keep_alive_timeout_s,
                                root_path=self.http.root_path)
        self.server = uvicorn.Server(config)
        failed: list[BaseException] = []

        def serve() -> None:
            try:
                self.server.run(sockets=[self.sock])
            except BaseException as exc:  # noqa: BLE001 - reported by ready()
                failed.append(exc)

        self.thread = threading.Thread(target=serve, daemon=True, name="zactor-serve-http")
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if failed or not self.thread.is_alive():
                raise RuntimeError(f"the HTTP proxy failed to start: {failed}")
            if time.monotonic() > deadline:
                raise TimeoutError("the HTTP proxy did not start within 30 s")
            time.sleep(0.01)
        return self.http.host, self.port

    def stop(self) -> bool:
        if self.server is not None:
            self.server.should_exit = True
            self.thread.join(timeout=10)
        return True

    # -- routing ----------------------------------------------------------------------------

    def _set_routes(self, table: dict | None) -> None:
        table = table or {}
        self.routers = {app: _router.get(app, ingress) for app, ingress in table.values()}
        self.routes = sorted(((p, a, i) for p, (a, i) in table.items()),
                             key=lambda r: len(r[0]), reverse=True)

    def _match(self, path: str) -> tuple[str, str] | None:
        for prefix, app, _ in self.routes:
            if prefix == "/" or path == prefix or path.startswith(prefix + "/") or (
                    prefix.endswith("/") and path.startswith(prefix)):
                return prefix, app
        return None

    def _app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse, PlainTextResponse, Response
        from starlette.routing import Route

        async def healthz(request):
            return PlainTextResponse("success")

        async def routes(request):
            return JSONResponse({p: a for p, a, _ in self.routes})

        timeout = self.http.request_timeout_s

        async def forward(request):
            start = time.perf_counter()
            scope = request.scope
            path = scope["path"]
            found = self._match(path)
            tag = "-"
            if found is None:
                status = 404
                response = PlainTextResponse(
                    f"Path '{path}' not found. Ping http://.../-/routes for available "
                    "routes.", status_code=404)
            else:
                prefix, app = found
                body = await request.body()
                req = _router.Request("http", "", (_http.scope_for_replica(scope, prefix),
                                                   body), {})
                self.routers[app].submit(req)
                try:
                    status, headers, out, tag = await asyncio.wait_for(
                        asyncio.wrap_future(req.result), timeout) if timeout else \
                        await asyncio.wrap_future(req.result)
                    response = Response(out, status_code=status)
                    response.raw_headers = [h for h in headers if h[0] != b"content-length"] \
                        + [(b"content-length", str(len(out)).encode())]
                except asyncio.TimeoutError:
                    status = 408
                    response = PlainTextResponse(
                        f"Request timed out after {timeout} s (request_timeout_s)", 408)
                except BackPressureError as exc:
                    status, response = 503, PlainTextResponse(str(exc), status_code=503)
                except DeploymentUnavailableError as exc:
                    status, response = 503, PlainTextResponse(str(exc), status_code=503)
                except Exception as exc:  # noqa: BLE001 - the deployment's error, as a 500
                    status = 500
                    response = PlainTextResponse(f"Internal Server Error: {exc}",
                                                 status_code=500)
            if self.access is not None:
                self.access.info("%s %s %d %.2fms replica=%s", request.method, path, status,
                                 (time.perf_counter() - start) * 1e3, tag)
            return response

        return Starlette(routes=[Route("/-/healthz", healthz), Route("/-/routes", routes),
                                 Route("/{path:path}", forward, methods=_METHODS)])
