"""The head's side of the dashboard: its port, and the process that serves it.

The head binds the port itself when it starts, so the URL is known (and a clash is found)
before any driver asks for it. The process that serves the page starts only when the first
connection arrives: a cluster that nobody looks at pays nothing for its dashboard, neither
a process nor the imports of a web server. The connection waits in the socket's backlog
meanwhile.

    head event loop ──(port readable)──► spawn ``python -m zactor.dashboard`` (fd passed)
          ▲                                   │ an observer client of the head, over ipc
          └───(pidfd readable: it died)───────┘ watch the port again, up to a limit

The process dies with the head (``PR_SET_PDEATHSIG``), so a head that is SIGKILLed leaves no
dashboard behind. Every request needs a token, on loopback too (any user of the machine
can reach a loopback port): derived from the cluster's key
(``zactor.comm.security.http_token``) on a cluster that has one, or made up for the session
on a local one. It is part of the URL the head hands to drivers and to ``zactor status``,
which only those who may connect to the head reach. ``--insecure`` clusters have none.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING

from zactor import _process, config
from zactor.comm.transport import listen_tcp

if TYPE_CHECKING:
    import subprocess

    from zactor.head.broker import Broker

log = logging.getLogger(__name__)

TOKEN_ENV = "ZACTOR_DASHBOARD_TOKEN"


def bind(host: str, port: int, explicit: bool) -> socket.socket:
    """A listening socket on ``host:port``. A default port that is taken moves up (another
    cluster's dashboard may hold it); an explicit one must be free."""
    tries = 1 if explicit or port == 0 else config.DASHBOARD_PORT_TRIES
    for attempt in range(tries):
        try:
            return listen_tcp(host, port + attempt if port else 0)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or attempt == tries - 1:
                raise OSError(exc.errno, f"the dashboard cannot listen on {host}:"
                                         f"{port + attempt}: {exc.strerror}") from None
    raise AssertionError("unreachable")


class Dashboard:
    """The dashboard of one head: created (and bound) with the broker, served on demand."""

    def __init__(self, head: Broker, host: str, port: int, explicit: bool) -> None:
        self.head = head
        self.sock = bind(host, port, explicit)
        self.port = self.sock.getsockname()[1]
        # Loopback too: every user of the machine can reach a loopback port, and a local
        # cluster is its own user's only (DESIGN promise 5). Only --insecure asked for none.
        self.token: str | None = None
        creds = head.creds
        if creds is not None and getattr(creds, "client_secret", None):
            from zactor.comm.security import http_token

            self.token = http_token(creds)
        elif not head.cfg.get("insecure"):
            import secrets

            self.token = secrets.token_hex(32)  # a local cluster has no key to derive from
        shown = head.cfg.get("ip", "127.0.0.1") if host in ("0.0.0.0", "::", "") else host
        if ":" in shown:
            shown = f"[{shown}]"
        self.url = f"http://{shown}:{self.port}"
        if self.token:
            self.url += f"/?token={self.token}"
        self.proc: subprocess.Popen | None = None
        self.proc_fd: int | None = None
        self.deaths: list[float] = []
        head.watch_fd(self.sock.fileno(), self._on_connection)

    def _on_connection(self) -> None:
        """Someone connected: start the process that will accept them."""
        import subprocess  # here: a head whose page nobody opens never loads it

        self.head.unwatch_fd(self.sock.fileno())
        cfg = {"address": self.head.cfg["address"], "head_pid": os.getpid(),
               "fd": self.sock.fileno(),
               "log_level": self.head.cfg.get("log_level", logging.WARNING)}
        env = dict(os.environ)
        env.pop(TOKEN_ENV, None)
        if self.token:
            env[TOKEN_ENV] = self.token  # not in argv, where ps shows it
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "zactor.dashboard", json.dumps(cfg)],
                pass_fds=(self.sock.fileno(),), env=env, stdin=subprocess.DEVNULL)
        except OSError as exc:
            log.error("could not start the dashboard's process: %s", exc)
            self._give_up()
            return
        self.proc_fd = _process.pidfd(self.proc.pid)
        if self.proc_fd is not None:
            self.head.watch_fd(self.proc_fd, self._on_exit)

    def _on_exit(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is None:
            return
        self._unwatch_proc()
        self.proc = None
        now = time.monotonic()
        self.deaths = [t for t in self.deaths if now - t < 60.0] + [now]
        log.warning("the dashboard's process exited (%s)",
                    _process.describe_exit(proc.returncode if proc.returncode >= 0 else None,
                                           -proc.returncode if proc.returncode < 0 else None))
        if len(self.deaths) > config.DASHBOARD_RESTARTS_MAX:
            log.error("the dashboard's process died %d times within a minute: not starting "
                      "it again", len(self.deaths))
            self._give_up()
            return
        self.head.watch_fd(self.sock.fileno(), self._on_connection)

    def _unwatch_proc(self) -> None:
        if self.proc_fd is not None:
            self.head.unwatch_fd(self.proc_fd)
            os.close(self.proc_fd)
            self.proc_fd = None

    def _give_up(self) -> None:
        self.head.unwatch_fd(self.sock.fileno())
        self.sock.close()

    def shutdown(self) -> None:
        """Stop the process (if it runs) and close the port."""
        proc = self.proc
        self.proc = None
        self._unwatch_proc()
        if proc is not None and proc.poll() is None:
            import subprocess

            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=config.SHUTDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.sock.fileno() >= 0:
            self.head.unwatch_fd(self.sock.fileno())
            self.sock.close()
