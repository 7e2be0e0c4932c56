"""Worker stdout/stderr is forwarded to the driver, prefixed like Ray: ``(name pid=N) line``."""

from __future__ import annotations

import re
import sys
import time
import uuid

import pytest

import zactor

pytestmark = pytest.mark.usefixtures("cluster")


@zactor.remote
def emit(marker):
    import os

    print(f"out {marker}", flush=True)
    print(f"err {marker}", file=sys.stderr, flush=True)
    return os.getpid()


@zactor.remote
class Talker:
    def say(self, marker):
        import os

        print(f"actor {marker}", flush=True)
        return os.getpid()


@zactor.remote
def log_warning(marker):
    import logging
    import os

    logging.getLogger(__name__).warning("logged %s", marker)
    return os.getpid()


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def read_until(capfd, pattern: str, timeout: float = 20.0) -> re.Match:
    """Collect the driver's captured stdout+stderr until ``pattern`` matches a line."""
    seen = []
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern, re.MULTILINE)
    while True:
        out, err = capfd.readouterr()
        seen.append(ANSI_ESCAPE.sub("", out + err))  # Ray colours the prefix on terminals
        match = regex.search("".join(seen))
        if match:
            return match
        if time.monotonic() > deadline:
            text = "".join(seen)[-2000:]
            raise AssertionError(f"no line matching {pattern!r} in driver output: {text!r}")
        time.sleep(0.05)


@pytest.mark.timeout(60)
def test_task_stdout_is_printed_by_the_driver_with_name_and_pid_prefix(capfd):
    marker = uuid.uuid4().hex
    pid = zactor.get(emit.remote(marker))
    match = read_until(capfd, rf"^\((\S+) pid=(\d+)\) out {marker}$")
    assert "emit" in match.group(1)
    assert int(match.group(2)) == pid


@pytest.mark.timeout(60)
def test_task_stderr_is_forwarded_to_the_driver(capfd):
    marker = uuid.uuid4().hex
    pid = zactor.get(emit.remote(marker))
    match = read_until(capfd, rf"^\((\S+) pid=(\d+)\) err {marker}$")
    assert int(match.group(2)) == pid


@pytest.mark.timeout(60)
def test_task_name_option_appears_in_the_prefix(capfd):
    marker = uuid.uuid4().hex
    pid = zactor.get(emit.options(name="custom-task-name").remote(marker))
    match = read_until(capfd, rf"^\((\S+) pid=(\d+)\) out {marker}$")
    assert match.group(1) == "custom-task-name"
    assert int(match.group(2)) == pid


@pytest.mark.timeout(60)
def test_actor_stdout_is_prefixed_with_the_actor_class(capfd):
    marker = uuid.uuid4().hex
    talker = Talker.remote()
    pid = zactor.get(talker.say.remote(marker))
    match = read_until(capfd, rf"^\((\S+) pid=(\d+)\) actor {marker}$")
    assert "Talker" in match.group(1)
    assert int(match.group(2)) == pid


@pytest.mark.timeout(60)
def test_a_loggers_record_in_a_task_reaches_the_driver_with_the_workers_prefix(capfd):
    """Workers are forked from the head after its logging.basicConfig: their records must
    not go to the head's stderr under the head's label, but through the forwarded stderr."""
    marker = uuid.uuid4().hex
    pid = zactor.get(log_warning.remote(marker))
    match = read_until(capfd, rf"^\((\S+) pid=(\d+)\) WARNING \S+: logged {marker}$")
    assert "log_warning" in match.group(1)
    assert int(match.group(2)) == pid
    assert not re.search(rf"zactor head pid=\d+\).*logged {marker}", match.string)
