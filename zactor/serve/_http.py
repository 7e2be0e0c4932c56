"""HTTP requests between the proxy and a replica: the proxy sends the ASGI scope (the parts
that pickle) with the body read; the replica runs the request through starlette or the
ingress ASGI application and sends back status, headers and body."""

from __future__ import annotations

import asyncio
import json
from typing import Any

SCOPE_KEYS = ("type", "asgi", "http_version", "method", "scheme", "path", "raw_path",
              "query_string", "headers", "client", "server")
_JSON = [(b"content-type", b"application/json")]
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]


def scope_for_replica(scope: dict, route_prefix: str) -> dict:
    out = {k: scope[k] for k in SCOPE_KEYS if k in scope}
    # Mounted at the route prefix, as Starlette's Mount does: the application sees the whole
    # path, and root_path says which part of it is the mount.
    out["root_path"] = scope.get("root_path", "") + ("" if route_prefix == "/"
                                                     else route_prefix)
    return out


async def run_asgi(app: Any, scope: dict, body: bytes) -> tuple[int, list, bytes]:
    """Run one request through an ASGI application; collect its response."""
    finished = asyncio.Event()
    sent = False
    status = 500
    headers: list = []
    chunks: list[bytes] = []

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await finished.wait()  # the client stays connected until the response is complete
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        nonlocal status, headers
        kind = message["type"]
        if kind == "http.response.start":
            status = message["status"]
            headers = list(message.get("headers", ()))
        elif kind == "http.response.body":
            chunks.append(message.get("body", b""))

    try:
        await app(scope, receive, send)
    finally:
        finished.set()
    return status, headers, b"".join(chunks)


def receiver(body: bytes):
    """An ASGI ``receive`` that hands over ``body`` (for a starlette Request)."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


async def to_response(result: Any, scope: dict) -> tuple[int, list, bytes]:
    """What a deployment returned, as an HTTP response: a starlette Response as it is,
    str as text, bytes as they are, anything else as JSON (as Ray does)."""
    from starlette.responses import Response

    if isinstance(result, Response):
        return await run_asgi(result, scope, b"")
    if isinstance(result, str):
        return 200, _TEXT, result.encode()
    if isinstance(result, (bytes, bytearray, memoryview)):
        return 200, [], bytes(result)
    try:
        body = json.dumps(result, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode()
    except (TypeError, ValueError):
        from fastapi.encoders import jsonable_encoder

        body = json.dumps(jsonable_encoder(result), separators=(",", ":")).encode()
    return 200, _JSON, body
