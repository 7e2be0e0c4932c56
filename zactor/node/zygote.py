"""The zygote: a pre-imported, single-threaded process that forks workers on request.

Forking from it costs a few milliseconds and shares the imported modules' memory between all
workers, instead of starting a fresh interpreter per worker. Being their parent, it reaps them
and reports each exit code or signal to the agent, which tells the head.

Pipe protocol (text lines): agent → zygote ``spawn N`` / ``quit``;
zygote → agent ``started PID`` / ``exit PID CODE SIGNAL``.
"""

from __future__ import annotations

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

    def spawn(self, count: int) -> None:
        os.write(self.cmd_w, f"spawn {count}\n".encode())

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
    children: set[int] = set()
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
            children.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            sig = -code if code < 0 else 0
            report(f"exit {pid} {code if code >= 0 else -1} {sig}")

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
                    for _ in range(int(words[1])):
                        pid = _process.fork_child(_worker_entry, worker_main, own_fds,
                                                  worker_cfg)
                        children.add(pid)
                        report(f"started {pid}")
    _kill_all(children)
    return 0


def _kill_all(children: set[int]) -> None:
    for pid in children:
        _process.kill(pid)
    for pid in list(children):
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _worker_entry(worker_main, own_fds: tuple, worker_cfg: dict) -> int:
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for fd in own_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    return worker_main.run(worker_cfg)
