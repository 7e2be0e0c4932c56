"""Putting a new worker process into its runtime environment, before it joins the head.

The zygote forks the process as for any worker; this sets the environment up (see
zactor.runtime_env._setup), telling the head how it goes (ENV_EVENT: pip's output reaches
the drivers, a failure fails the work waiting for the environment). A worker of an
environment with ``pip`` then becomes a fresh interpreter of the virtualenv (exec, same pid:
the zygote still reaps it), which reads its configuration from ``ZACTOR_WORKER_CFG``.
"""

from __future__ import annotations

import json
import os
import sys

from zactor.protocol import Msg, encode
from zactor.runtime_env import _setup

#: Seconds a failing worker waits for the head to acknowledge its report.
_ACK_TIMEOUT_S = 5.0


class _Reporter:
    """A socket to the head that carries this setup's progress and outcome."""

    def __init__(self, cfg: dict, key: str) -> None:
        self.cfg = cfg
        self.key = key
        self.sock = None
        self.ctx = None

    def _socket(self):
        if self.sock is None:
            import zmq

            from zactor.comm.security import from_text
            from zactor.comm.transport import dealer

            self.ctx = zmq.Context()
            remote = self.cfg["address"].startswith("tcp://")
            ident = (b"e" if remote else b"E") + os.urandom(8)
            self.sock = dealer(self.ctx, ident, self.cfg["address"],
                               creds=from_text(self.cfg.get("key")))
        return self.sock

    def send(self, event: str, text: str) -> None:
        self._socket().send(encode(Msg.ENV_EVENT, bytes.fromhex(self.cfg["node_id"]),
                                   self.key, event, text))

    def failed(self, text: str) -> bool:
        """Tell the head; True once it has heard (it fails the work waiting for this)."""
        self.send("failed", text)
        if self.sock.poll(int(_ACK_TIMEOUT_S * 1000)):
            self.sock.recv()
            return True
        return False

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=1000)
            self.ctx.term()
            self.sock = self.ctx = None


def enter(cfg: dict, key: str, env: dict) -> dict:
    """Set up ``env`` and put this process in it; return the worker's configuration (or,
    for a virtualenv, never return: exec its python). Exits if setting up fails."""
    from zactor.exceptions import RuntimeEnvSetupError

    reporter = _Reporter(cfg, key)
    try:
        act = _setup.prepare(env, cfg["runtime_dir"], lambda line: reporter.send("log", line))
    except RuntimeEnvSetupError as exc:
        heard = reporter.failed(str(exc))
        reporter.close()
        os._exit(_setup.SETUP_FAILED_EXIT if heard else _setup.SETUP_UNREPORTED_EXIT)
    reporter.close()
    cfg = {**cfg, "env_key": key, "env": env, "env_cwd": act.cwd, "env_paths": act.paths}
    environ = act.environ(dict(os.environ))
    if act.venv is None:
        os.environ.clear()
        os.environ.update(environ)
        apply_paths(cfg)
        return cfg
    environ["ZACTOR_WORKER_CFG"] = json.dumps(cfg)
    python = act.python
    os.execve(python, [python, "-m", "zactor.worker"], environ)
    raise AssertionError("unreachable")


def apply_paths(cfg: dict) -> None:
    """The environment's directory and import paths, first (called again after the head's
    WELCOME, which adds the drivers' paths)."""
    for path in reversed(cfg.get("env_paths") or ()):
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)
    if cfg.get("env_cwd"):
        os.chdir(cfg["env_cwd"])
