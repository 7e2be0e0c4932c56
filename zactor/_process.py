"""Starting, watching and stopping processes: the only module that forks or kills.

Process tree of an embedded cluster (each arrow is a fork or spawn; each child dies with its
parent, so a SIGKILLed driver takes the whole tree down):

    driver ──spawn──► head ──fork──► node agent ──fork──► zygote ──fork──► worker, worker, ...
           (pidfd)          (PDEATHSIG=TERM)      (PDEATHSIG=KILL)   (PDEATHSIG=KILL)

The head watches the driver through a pidfd rather than PDEATHSIG, because PDEATHSIG fires
when the *thread* that spawned the child exits, and a driver may call ``init`` from any thread.
"""

from __future__ import annotations

import os
import signal
import sys
import time

_PR_SET_NAME = 15
_PR_SET_PDEATHSIG = 1
_prctl_fn = None


def _prctl(*args) -> None:
    # ctypes is loaded on first use: drivers never call this, only the processes they start.
    global _prctl_fn
    if _prctl_fn is None:
        import ctypes

        try:
            _prctl_fn = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):  # pragma: no cover - non-Linux
            _prctl_fn = False
    if _prctl_fn:
        _prctl_fn(*args)


def die_with_parent(sig: int = signal.SIGKILL, expected_parent: int | None = None) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies.

    If the parent already died before the request took effect, exit now.
    """
    _prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)


def set_process_name(name: str) -> None:
    """Name the process for ``top``/``ps -o comm`` (15 bytes at most)."""
    _prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


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


class Child:
    """A process this one spawned: poll, wait and kill it (what we need of ``Popen``)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return self.returncode

    def kill(self) -> None:
        kill(self.pid)


def spawn_head(args: list[str], env: dict[str, str]) -> Child:
    """Start a head process in a session of its own, so a terminal's Ctrl-C (sent to the
    driver's process group) reaches only the driver, as with Ray. ``posix_spawn`` rather
    than ``subprocess``: no module to import into every driver, and no fork of it."""
    argv = [sys.executable, "-m", "zactor.head", *args]
    return Child(os.posix_spawn(sys.executable, argv, env, setsid=True))


def remove_tree(path: str) -> None:
    """``shutil.rmtree(path, ignore_errors=True)`` without importing shutil (which loads the
    bz2 and lzma modules) into every driver."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        try:
            os.unlink(path)
        except OSError:
            pass
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            remove_tree(entry.path)
        else:
            try:
                os.unlink(entry.path)
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


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
