"""The zygote: a pre-imported, single-threaded process that forks workers on request.

Forking from it costs a few milliseconds and shares the imported modules' memory between all
workers, instead of starting a fresh interpreter per worker. Being their parent, it reaps them
and reports each exit code or signal to the agent, which tells the head.

Pipe protocol (text lines): agent → zygote ``spawn N [ENV_KEY ENV_JSON]`` / ``quit``;
zygote → agent ``started PID ENV_KEY`` / ``exit PID CODE SIGNAL ENV_KEY`` (``-``: the
default environment). A worker of a runtime environment sets it up itself, after the fork
(zactor.worker.environment): the zygote never waits on pip.
"""

from __future__ import annotations

import json
import os
import select
import signal

from zactor import _process


class ZygoteHandle:
    def __init__(self, pid: int, cmd_w: int, evt_r: int) -> None:
        self.pid = pid
        self.cmd_w = cmd_w
        self.evt_r = evt_r
        self._buf = b""

    def spawn(self, count: int, env_key: str | None = None, env: dict | None = None) -> None:
        line = f"spawn {count}"
        if env_key:
            line += f" {env_key} {json.dumps(env, separators=(',', ':'))}"
        os.write(self.cmd_w, (line + "\n").encode())

    def quit(self) -> None:
        try:
            os.write(self.cmd_w, b"quit\n")
        except OSError:
            pass

    def read_events(self) -> list[list[str]] | None:
        """Parsed event lines, or None if the zygote is gone."""
        data = os.read(self.evt_r, 65536)
        if not data:
            return None
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        return [line.decode().split() for line in lines if line]


def start_zygote(worker_cfg: dict) -> ZygoteHandle:
    cmd_r, cmd_w = os.pipe()
    evt_r, evt_w = os.pipe()
    pid = _process.fork_child(_zygote_main, cmd_r, evt_w, (cmd_w, evt_r), worker_cfg)
    os.close(cmd_r)
    os.close(evt_w)
    return ZygoteHandle(pid, cmd_w, evt_r)


def _zygote_main(cmd_r: int, evt_w: int, close_fds: tuple, worker_cfg: dict) -> int:
    for fd in close_fds:
        os.close(fd)
    _process.set_process_name("zactor-zygote")
    # Already imported (and gc-frozen) by the head before it forked us: this only names it.
    from zactor.worker import main as worker_main

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    children: dict[int, str] = {}  # pid -> its environment's key
    own_fds = (cmd_r, evt_w, wake_r, wake_w)

    def report(line: str) -> None:
        os.write(evt_w, (line + "\n").encode())

    def reap() -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            key = children.pop(pid, "-")
            code = os.waitstatus_to_exitcode(status)
            sig = -code if code < 0 else 0
            report(f"exit {pid} {code if code >= 0 else -1} {sig} {key}")

    buf = b""
    while True:
        try:
            ready, _, _ = select.select([cmd_r, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
            reap()
        if cmd_r in ready:
            data = os.read(cmd_r, 4096)
            if not data:  # the agent is gone
                break
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                words = line.decode().split()
                if not words:
                    continue
                if words[0] == "quit":
                    _kill_all(children)
                    return 0
                if words[0] == "spawn":
                    key, env = "-", None
                    if len(words) > 2:
                        key, env = words[2], json.loads(line.decode().split(None, 3)[3])
                    for _ in range(int(words[1])):
                        pid = _process.fork_child(_worker_entry, worker_main, own_fds,
                                                  worker_cfg, key, env)
                        children[pid] = key
                        report(f"started {pid} {key}")
    _kill_all(children)
    return 0


def _kill_all(children: dict[int, str]) -> None:
    for pid in children:
        _process.kill(pid)
    for pid in list(children):
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _worker_entry(worker_main, own_fds: tuple, worker_cfg: dict, env_key: str,
                  env: dict | None) -> int:
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for fd in own_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    if env is not None:
        from zactor.worker import environment

        worker_cfg = environment.enter(worker_cfg, env_key, env)
    return worker_main.run(worker_cfg)
