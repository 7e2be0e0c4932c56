"""Helpers shared by the tests.

This is an ordinary driver-side module that lives next to the test files: the remote functions
and classes defined here must run on workers even though the module is not installed anywhere
(see ``test_tasks.py::test_functions_from_a_module_next_to_the_driver_run_remotely``).

Synchronisation between the test (driver) and remote code is by files: a remote function blocks
until a path exists, and the test creates that path when it wants the function to proceed.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import zactor

DEFAULT_DEADLINE_S = 60.0


def wait_for_path(path: str, timeout: float = DEFAULT_DEADLINE_S) -> None:
    """Block until ``path`` exists; raise TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.01)


def touch(path: str) -> None:
    with open(path, "w"):
        pass


def wait_until(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.05,
               message: str = "condition") -> object:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not reached within {timeout} s")
        time.sleep(interval)


def pid_is_gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@zactor.remote
def block_until(path: str, value=None, started: str | None = None):
    """Announce start by creating ``started`` (if given), then wait for ``path``; return value."""
    if started is not None:
        touch(started)
    wait_for_path(path)
    return value


@zactor.remote(num_cpus=0)
def block_until_no_cpu(path: str, value=None, started: str | None = None):
    if started is not None:
        touch(started)
    wait_for_path(path)
    return value


@zactor.remote
def identity(x):
    return x


@zactor.remote
def helper_add(a, b):
    return a + b


def square(x):
    """A plain function: shipped to workers as an argument."""
    return x * x


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int

    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)


class Accumulator:
    """A plain class turned into an actor by the test with ``zactor.remote(Accumulator)``."""

    def __init__(self, start: int = 0):
        self.total = start

    def add(self, x: int) -> int:
        self.total += x
        return self.total

    def apply(self, fn, x):
        return fn(x)


def record_attempt(path: str) -> int:
    """Append this process's pid to ``path``; return the number of attempts so far."""
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    return attempts_in(path)


def attempt_pids(path) -> list[int]:
    """The pids that recorded an attempt in ``path``, in order."""
    try:
        with open(path) as f:
            return [int(line) for line in f.read().split()]
    except FileNotFoundError:
        return []


def attempts_in(path) -> int:
    return len(attempt_pids(path))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
