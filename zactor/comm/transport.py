"""ZeroMQ sockets and the fast paths for sending and receiving on them.

pyzmq's ``send_multipart`` costs several microseconds per message in Python-level flag
arithmetic (``IntFlag`` enums); the event loops send tens of thousands of messages a second,
so they call the Cython ``send`` directly with plain-int flags.
"""

from __future__ import annotations

import zmq

from zactor import config
from zactor.comm.security import INSECURE, KEY_ENV, KEY_FILE_ENV, Credentials, CredentialsError

SNDMORE = int(zmq.SNDMORE)
NOBLOCK = int(zmq.NOBLOCK)
RCVMORE = int(zmq.RCVMORE)
EVENTS = int(zmq.EVENTS)
POLLIN = int(zmq.POLLIN)
_send = zmq.backend.Socket.send
_recv = zmq.backend.Socket.recv
_get = zmq.backend.Socket.get
zmq_poll = zmq.backend.zmq_poll


def dealer(ctx: zmq.Context, identity: bytes, address: str, linger: int = 0,
           creds: Credentials | None = None) -> zmq.Socket:
    """A DEALER connected to ``address``, with unbounded queues (flow is bounded upstream);
    encrypted and authenticated with ``creds`` (needed for every ``tcp://`` address)."""
    sock = ctx.socket(zmq.DEALER)
    if address.startswith("tcp://"):
        if creds is None:
            raise CredentialsError(
                f"connecting to {address} needs the cluster's key: set {KEY_ENV} or "
                f"{KEY_FILE_ENV} (zactor head prints both), or pass --insecure to a "
                "cluster started with --insecure")
        if creds is not INSECURE:
            creds.make_client(sock)
    sock.setsockopt(zmq.ROUTING_ID, identity)
    sock.setsockopt(zmq.LINGER, linger)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.RECONNECT_IVL, config.RECONNECT_IVL_MS)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, config.RECONNECT_IVL_MAX_MS)  # back-off
    sock.connect(address)
    return sock


def router(ctx: zmq.Context, address: str, creds: Credentials | None = None) -> zmq.Socket:
    """A ROUTER bound to ``address`` (``tcp://HOST:0`` picks a free port: read it back with
    :func:`bound_address`); a CURVE server with ``creds``."""
    sock = ctx.socket(zmq.ROUTER)
    for opt, val in ((zmq.SNDHWM, 0), (zmq.RCVHWM, 0), (zmq.LINGER, 0)):
        sock.setsockopt(opt, val)
    if creds is not None and creds is not INSECURE:
        creds.make_server(sock)
    sock.bind(address)
    return sock


def bound_address(sock: zmq.Socket) -> str:
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def send_parts(sock: zmq.Socket, parts: list | tuple) -> None:
    """``send_multipart`` without its per-call overhead."""
    last = len(parts) - 1
    for i, part in enumerate(parts):
        _send(sock, part, SNDMORE if i < last else 0)


def send_routed(sock: zmq.Socket, identity: bytes, header: bytes, frames=()) -> None:
    """Send ``header`` and ``frames`` through a ROUTER to the peer ``identity``."""
    _send(sock, identity, SNDMORE)
    if frames:
        _send(sock, header, SNDMORE)
        last = len(frames) - 1
        for i, part in enumerate(frames):
            _send(sock, part, SNDMORE if i < last else 0)
    else:
        _send(sock, header, 0)


def wait_readable(sock: zmq.Socket, timeout_ms: int) -> bool:
    """``sock.poll(timeout_ms)`` without building a ``zmq.Poller`` per call."""
    return bool(zmq_poll([(sock, POLLIN)], timeout_ms))


def has_message(sock: zmq.Socket) -> bool:
    """Whether a message is waiting: cheaper than ending a receive loop on ``zmq.Again``,
    whose exception object costs more than the receive itself."""
    return bool(_get(sock, EVENTS) & POLLIN)


def recv_parts(sock: zmq.Socket) -> list[bytes]:
    """``recv_multipart(NOBLOCK)`` without its per-call overhead; raises ``zmq.Again``."""
    parts = [_recv(sock, NOBLOCK)]
    while _get(sock, RCVMORE):
        parts.append(_recv(sock))
    return parts


def listen_tcp(host: str, port: int, backlog: int = 128):
    """A listening TCP socket on ``host:port`` (0: a free port), SO_REUSEADDR set, for the
    HTTP endpoints (zactor.dashboard, node metrics ports). OSError if it is taken."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=backlog)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, or "localhost") is this machine's loopback: HTTP
    endpoints bound there need no token (zactor.dashboard, node metrics ports)."""
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
