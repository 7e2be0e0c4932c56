"""Starting, watching and stopping processes: the only module that forks or kills.

Process tree of an embedded cluster (each arrow is a fork or spawn; each child dies with its
parent, so a SIGKILLed driver takes the whole tree down):

    driver ──spawn──► head ──fork──► node agent ──fork──► zygote ──fork──► worker, worker, ...
           (pidfd)          (PDEATHSIG=TERM)      (PDEATHSIG=KILL)   (PDEATHSIG=KILL)

The head watches the driver through a pidfd rather than PDEATHSIG, because PDEATHSIG fires
when the *thread* that spawned the child exits, and a driver may call ``init`` from any thread.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

_PR_SET_NAME = 15
_PR_SET_PDEATHSIG = 1

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _prctl = _libc.prctl
except (OSError, AttributeError):  # pragma: no cover - non-Linux
    _prctl = None


def die_with_parent(sig: int = signal.SIGKILL, expected_parent: int | None = None) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies.

    If the parent already died before the request took effect, exit now.
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)


def set_process_name(name: str) -> None:
    """Name the process for ``top``/``ps -o comm`` (15 bytes at most)."""
    if _prctl is not None:
        _prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def pidfd(pid: int) -> int | None:
    """A file descriptor that becomes readable when ``pid`` exits, or None if it is gone."""
    try:
        return os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return None


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def spawn_head(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start a head process in a session of its own, so a terminal's Ctrl-C (sent to the
    driver's process group) reaches only the driver, as with Ray."""
    return subprocess.Popen(
        [sys.executable, "-m", "zactor.head", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def fork_child(target, *args, pdeathsig: int = signal.SIGKILL) -> int:
    """Fork; the child runs ``target(*args)`` and exits with its return code, never returning.

    Call only from a single-threaded process (the zygote, or a process before it starts
    ZeroMQ), since fork copies no other thread.
    """
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        die_with_parent(pdeathsig, parent)
        code = target(*args) or 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - report and exit: a forked child must never return
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    raise AssertionError("unreachable")


def describe_exit(exitcode: int | None, sig: int | None) -> str:
    """Human words for how a process ended, for the errors users see."""
    if sig:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by signal {sig} ({name})"
    return f"exited with code {exitcode}"
