"""``python -m zactor.dashboard CONFIG_JSON``: the dashboard's process, which the head starts
(zactor.dashboard._launcher) on the first connection to the port it bound and passed down.

It is an observer client of the head over the head's local socket: it submits nothing, and
it dies with the head. It runs at a lower priority than the cluster's own processes, so that
a page left open never takes CPU from the work it shows.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys

from zactor import _process
from zactor.comm.transport import is_loopback
from zactor.dashboard._launcher import TOKEN_ENV


def main() -> None:
    cfg = json.loads(sys.argv[1])
    _process.die_with_parent(signal.SIGKILL, cfg["head_pid"])
    _process.set_process_name("zactor-dashboard")
    logging.basicConfig(
        level=cfg.get("log_level", logging.WARNING),
        format="(zactor dashboard pid=%(process)d) %(levelname)s %(name)s: %(message)s")
    try:
        os.nice(5)
    except OSError:
        pass
    token = os.environ.pop(TOKEN_ENV, None)
    sock = socket.socket(fileno=cfg["fd"])
    host = sock.getsockname()[0]

    import uvicorn

    from zactor._client import CoreClient
    from zactor.dashboard import _app

    client = CoreClient(cfg["address"], "observer", connect_timeout=10.0)
    # No token (an --insecure cluster): on loopback only loopback Host names are let in (DNS
    # rebinding); a port bound elsewhere asked to be open.
    allowed = [] if is_loopback(host) else ["*"]
    server: uvicorn.Server | None = None
    app = _app.build(client, token, allowed,
                     stopping=lambda: server is not None and server.should_exit)
    server = uvicorn.Server(uvicorn.Config(
        app, log_level=logging.getLevelName(max(cfg.get("log_level", 30), logging.WARNING))
        .lower(), access_log=False, lifespan="off", timeout_graceful_shutdown=2))
    try:
        server.run(sockets=[sock])  # uvicorn stops on SIGTERM (the head's shutdown)
    finally:
        client.close(goodbye=(False,))


if __name__ == "__main__":
    main()
