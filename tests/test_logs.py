"""Workers' log files and Ray's log API: every worker appends its stdout and stderr to
``<session dir>/logs/worker-<pid>.log`` on its node, with marker lines that let one task's or
one actor's output be cut out afterwards; ``zactor.util.state.list_logs`` / ``get_log`` and
``zactor logs`` read them back through the head, from any node; files are capped and
rotated; no request reads outside the log directory."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest
from remote_helpers import wait_until

import zactor
import zactor.testing
from zactor.testing import Cluster
from zactor.util import state

pytestmark = [pytest.mark.usefixtures("cluster"), pytest.mark.timeout(120)]
CLUSTER_KWARGS = {"num_cpus": 2}
ZACTOR = os.path.join(os.path.dirname(sys.executable), "zactor")


@zactor.remote
def chatty(tag: str, lines: int = 2):
    for i in range(lines):
        print(f"{tag} out {i}")
    print(f"{tag} err", file=sys.stderr)
    return os.getpid()


@zactor.remote
class Talker:
    def __init__(self, tag: str):
        print(f"{tag} born")

    def say(self, text: str):
        print(text)
        return os.getpid()


def logs_dir() -> str:
    """This module's cluster keeps its workers' files here (its session directory)."""
    address = zactor.testing.head_address()
    return os.path.join(os.path.dirname(address[len("ipc://"):]), "logs")


def read_file(pid: int) -> str:
    with open(os.path.join(logs_dir(), f"worker-{pid}.log")) as f:
        return f.read()


def two_tasks_on_one_worker() -> tuple[str, str, int, str, str]:
    """Two tasks that ran on the same worker, one after the other (the cut must tell their
    lines apart): their tags, the worker's pid, and their task ids."""
    seen: dict[int, tuple[str, str]] = {}
    for _ in range(40):
        tag = uuid.uuid4().hex[:12]
        ref = chatty.remote(tag)
        pid = zactor.get(ref)
        if pid in seen:
            first_tag, first_id = seen[pid]
            return first_tag, tag, pid, first_id, ref.task_id().hex()
        seen[pid] = (tag, ref.task_id().hex())
    raise AssertionError("no two of 40 tasks ran on the same worker")


def test_a_tasks_output_is_in_its_workers_file_and_get_log_cuts_out_only_its_lines():
    first, second, pid, first_id, second_id = two_tasks_on_one_worker()
    text = read_file(pid)
    # Both streams, in order, with the marker lines the worker wrote before each task's.
    assert f"{first} out 0\n{first} out 1\n{first} err\n" in text
    assert f":task_name:chatty {first_id}\n" in text and f":task_name:chatty {second_id}" in text
    assert list(state.get_log(task_id=first_id)) == [f"{first} out 0", f"{first} out 1",
                                                     f"{first} err"]
    assert list(state.get_log(task_id=second_id, tail=1)) == [f"{second} err"]
    # The worker's whole file, through the head: both tasks' lines and the markers.
    whole = list(state.get_log(pid=pid, tail=-1))
    assert f"{first} out 0" in whole and f"{second} err" in whole
    assert f":task_name:chatty {second_id}" in whole
    assert f"worker-{pid}.log" in state.list_logs()["worker"]
    # A finished task followed: what it wrote, and the generator ends (no hang).
    assert list(state.get_log(task_id=first_id, follow=True, _interval=0.1))[-1] == \
        f"{first} err"


def test_an_actors_output_from_its_constructor_and_its_methods():
    tag = uuid.uuid4().hex[:12]
    talker = Talker.remote(tag)
    pid = zactor.get(talker.say.remote(f"{tag} one"))
    zactor.get(talker.say.remote(f"{tag} two"))
    actor_id = talker._actor_id.hex()
    lines = list(state.get_log(actor_id=actor_id))
    assert lines == [f"{tag} born", f"{tag} one", f"{tag} two"]
    assert f":actor_name:Talker {actor_id}\n" in read_file(pid)
    # A dead actor's log is still there, found through its last worker.
    zactor.kill(talker)
    wait_until(lambda: (state.get_actor(actor_id) or {}).get("state") == "DEAD", 30,
               message="the actor to be dead")
    assert list(state.get_log(actor_id=actor_id, tail=1)) == [f"{tag} two"]
    # Followed once dead: what it wrote, then the generator ends.
    assert list(state.get_log(actor_id=actor_id, follow=True, _interval=0.1))[-1] == \
        f"{tag} two"


def test_names_that_are_not_a_file_of_the_log_directory_are_refused():
    for name in ("../x", "../../etc/passwd", "sub/x", "..", ""):
        with pytest.raises(ValueError, match="not the name of a log file"):
            list(state.get_log(filename=name))
    # The head refuses them too, whatever a client sends.
    session = state._Session(None, 30)
    try:
        for name in ("../x", "/etc/passwd", "a/../../x"):
            with pytest.raises(ValueError, match="not the name of a log file"):
                session.ask("logs", [None, "read", [name, 0, None, None]])
        with pytest.raises(ValueError, match="no log file"):
            session.ask("logs", [None, "read", ["worker-1.log", 0, None, None]])
    finally:
        session.close()
    with pytest.raises(ValueError, match="no task with id"):
        list(state.get_log(task_id="ab" * 16))
    with pytest.raises(ValueError, match="no actor with id"):
        list(state.get_log(actor_id="cd" * 16))


def test_a_loggers_records_and_a_partial_last_line_are_the_tasks():
    @zactor.remote
    def logs_and_trails(tag):
        import logging

        logging.getLogger("logs-test").warning("%s warned", tag)
        print(f"{tag} no newline", end="")
        return os.getpid()

    tag = uuid.uuid4().hex[:12]
    ref = logs_and_trails.remote(tag)
    zactor.get(ref)
    assert list(state.get_log(task_id=ref.task_id().hex())) == [
        f"WARNING logs-test: {tag} warned", f"{tag} no newline"]


def test_output_made_while_a_line_is_forwarded_is_not_forwarded_again(capfd):
    """A log record made on the forwarding path (the send itself warns, say) goes straight
    to the process's stderr: no recursion through the stream that is forwarding."""
    import logging

    from zactor.worker.output import ForwardedStream

    sent = []
    logger = logging.getLogger("zactor-test-forwarding")
    logger.propagate = False

    def send(stream, prefix, text):
        sent.append((stream, prefix, text))
        logger.warning("sending %r", text)  # into the very stream that is forwarding

    forwarded = ForwardedStream("stderr", lambda: "(p)", send, record=sent.append)
    handler = logging.StreamHandler(forwarded)
    logger.addHandler(handler)
    try:
        logger.warning("first")
    finally:
        logger.removeHandler(handler)
    assert sent == ["first", ("stderr", "(p)", "first")]
    assert "sending 'first'" in capfd.readouterr().err


def test_a_follower_keeps_every_line_across_the_files_rotations(tmp_path):
    """WorkerLog writing (a small cap: rotated every ~150 lines) while get_log's follower
    reads the same directory as a node answers it (zactor.node.logs): every line of the
    task, in order, none twice, and the follower ends once the task has."""
    import types

    from zactor.node.logs import LogDir
    from zactor.worker.output import WorkerLog

    task = types.SimpleNamespace(task_id=bytes(range(16)), name="writer")
    worker_log = WorkerLog(str(tmp_path / "worker-7.log"), 8192, task)
    folder = LogDir(str(tmp_path))
    done = threading.Event()

    class Node:
        def ask(self, what, args):
            return folder.handle(args[1], args[2])

    expected = [f"line {i:04d} " + "z" * 40 for i in range(600)]

    def write():
        for line in expected:
            worker_log.write(line)
            time.sleep(0.002)
        done.set()

    source = state._Source(None, "worker-7.log", ("task", bytes(range(16)).hex()),
                           ended=done.is_set)
    writer = threading.Thread(target=write)
    writer.start()
    try:
        got = [line.decode() for line in state._follow(Node(), source, -1, True, 0.01, False)]
    finally:
        writer.join()
        worker_log.close()
    assert os.path.exists(tmp_path / "worker-7.log.1")
    assert got == expected


class Lines:
    """A process's stdout, line by line, read on a thread (so a test can wait with a
    deadline)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.queue: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.queue.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{text!r} not printed in {timeout} s: {self.seen}")
            try:
                self.seen.append(self.queue.get(timeout=remaining))
            except queue.Empty:
                pass


def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([ZACTOR, "logs", *args, "--address", zactor.testing.head_address()],
                          capture_output=True, text=True, timeout=60)
    if ok:
        assert done.returncode == 0, done.stderr + done.stdout
    return done


def test_the_cli_lists_prints_and_follows():
    first, second, pid, first_id, second_id = two_tasks_on_one_worker()
    table = cli().stdout
    assert "FILE" in table and f"worker-{pid}.log" in table
    assert cli("task", "--id", first_id).stdout.splitlines() == [
        f"{first} out 0", f"{first} out 1", f"{first} err"]
    assert cli("worker", "--pid", str(pid), "--tail", "1").stdout.splitlines() == \
        [f"{second} err"]
    assert cli(f"worker-{pid}.log", "--tail", "2").stdout.splitlines() == \
        [f"{second} out 1", f"{second} err"]
    bad = cli("task", "--id", "ab" * 16, ok=False)
    assert bad.returncode != 0 and "no task with id" in bad.stderr
    bad = cli("actor", "--id", "cd" * 16, ok=False)
    assert bad.returncode != 0 and "no actor with id" in bad.stderr

    tag = uuid.uuid4().hex[:12]
    talker = Talker.remote(tag)
    zactor.get(talker.say.remote(f"{tag} before"))
    follow = subprocess.Popen(
        [ZACTOR, "logs", "actor", "--id", talker._actor_id.hex(), "--follow", "--interval",
         "0.1", "--address", zactor.testing.head_address()],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = Lines(follow)
        lines.wait_for(f"{tag} before")
        zactor.get(talker.say.remote(f"{tag} after"))  # written after the follower started
        lines.wait_for(f"{tag} after")
        assert follow.poll() is None  # the actor lives: it keeps following
    finally:
        follow.terminate()
        follow.wait(30)
    assert lines.seen == [f"{tag} born", f"{tag} before", f"{tag} after"]


# -- a cluster of two nodes, with small log files ---------------------------------------

LOG_CAP = 16 * 1024
NODE_TIMEOUT_S = 2.0

FAR_DRIVER = textwrap.dedent("""
    import json, os, sys
    import zactor

    zactor.init(address=sys.argv[1])

    @zactor.remote(resources={"far": 1})  # only the second node has it
    def chatter(tag, lines):
        for i in range(lines):
            print(f"{tag} {i:06d} " + "x" * 80)
        return os.getpid(), zactor.get_runtime_context().get_node_id()

    ref = chatter.remote(sys.argv[2], int(sys.argv[3]))
    pid, node = zactor.get(ref)
    print(json.dumps({"pid": pid, "node": node, "task_id": ref.task_id().hex()}))
    zactor.shutdown()
""")


@pytest.fixture(scope="module")
def far(tmp_path_factory):
    """A head (one CPU) and a second node started as ``zactor worker --address ...`` with
    the resource "far", both with log files capped at LOG_CAP bytes."""
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1},
                env={"ZACTOR_WORKER_LOG_MAX_BYTES": str(LOG_CAP),
                     "ZACTOR_NODE_TIMEOUT_S": str(NODE_TIMEOUT_S)})
    try:
        c.node = c.add_node(num_cpus=1, resources={"far": 1})
        c.wait_for_nodes()
        c.script = tmp_path_factory.mktemp("far") / "driver.py"
        c.script.write_text(FAR_DRIVER)
        yield c
    finally:
        c.shutdown()


def run_far(far, tag: str, lines: int) -> dict:
    done = subprocess.run([sys.executable, str(far.script), far._ipc, tag, str(lines)],
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_task_on_another_node_is_read_through_the_head(far):
    tag = uuid.uuid4().hex[:12]
    ran = run_far(far, tag, 3)
    assert ran["node"] == far.node.node_id
    lines = list(state.get_log(address=far._ipc, task_id=ran["task_id"]))
    assert lines == [f"{tag} {i:06d} " + "x" * 80 for i in range(3)]
    files = state.list_logs(address=far._ipc, node_id=far.node.node_id)["worker"]
    assert f"worker-{ran['pid']}.log" in files
    # The file is on that node, in its own session directory, not on the head's.
    assert os.path.exists(os.path.join(far.node.dirs[0], "logs", f"worker-{ran['pid']}.log"))
    assert f"worker-{ran['pid']}.log" not in state.list_logs(address=far._ipc).get("worker", [])
    out = subprocess.run([ZACTOR, "logs", "task", "--id", ran["task_id"], "--tail", "1",
                          "--address", far._ipc], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"{tag} {2:06d} " + "x" * 80]


def test_a_workers_file_is_capped_with_one_rotated_backup(far):
    tag = uuid.uuid4().hex[:12]
    lines = 3000  # about 300 KB: the file is rotated many times over
    ran = run_far(far, tag, lines)
    folder = os.path.join(far.node.dirs[0], "logs")
    name = f"worker-{ran['pid']}.log"
    sizes = {n: os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder)
             if n.startswith(name)}
    assert set(sizes) == {name, name + ".1"}, sizes
    assert all(size <= LOG_CAP for size in sizes.values()), sizes
    # What is kept is the newest output, and the task's cut still finds its lines in it.
    last = [f"{tag} {i:06d} " + "x" * 80 for i in range(lines - 3, lines)]
    assert list(state.get_log(address=far._ipc, node_id=far.node.node_id, pid=ran["pid"],
                              tail=3)) == last
    assert list(state.get_log(address=far._ipc, task_id=ran["task_id"], tail=3)) == last
    whole = list(state.get_log(address=far._ipc, task_id=ran["task_id"]))
    assert 100 < len(whole) < lines and whole[-1] == last[-1]


def test_a_log_request_to_a_node_that_dies_meanwhile_fails_instead_of_waiting(far):
    """Runs last on this cluster: the node, stopped, is declared dead (it rejoins as a new
    node once it runs again)."""
    import signal

    session = state._Session(far._ipc, 60)
    agent = far.node.process.pid
    os.kill(agent, signal.SIGSTOP)  # it can answer nothing now
    try:
        started = time.monotonic()
        with pytest.raises(ValueError, match="died before it answered|is dead"):
            session.ask("logs", [far.node.node_id, "list", [None]])
        assert time.monotonic() - started < NODE_TIMEOUT_S + 15
        with pytest.raises(ValueError, match="is dead"):
            list(state.get_log(address=far._ipc, node_id=far.node.node_id,
                               filename="worker-1.log"))
    finally:
        os.kill(agent, signal.SIGCONT)
        session.close()
