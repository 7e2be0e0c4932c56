"""zactor.util.state's lists and summaries, zactor.timeline, and `zactor list|summary|timeline`:
what the head keeps of live and finished tasks (a bounded history), actors, nodes, jobs and
placement groups, with Ray's field names and filters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc

import pytest
from remote_helpers import block_until, touch, wait_for_path, wait_until

import zactor
import zactor.testing
from zactor.util import state
from zactor.util.placement_group import placement_group, remove_placement_group

pytestmark = [pytest.mark.usefixtures("cluster"), pytest.mark.timeout(120)]
CLUSTER_KWARGS = {"num_cpus": 2}
ZACTOR = os.path.join(os.path.dirname(sys.executable), "zactor")


@zactor.remote
def state_square(x):
    return x * x


@zactor.remote(max_retries=0)
def state_fails(text):
    raise ValueError(text)


@zactor.remote
class StateCounter:
    def __init__(self):
        self.n = 0

    def add(self, k):
        self.n += k
        return self.n

    def wait_for(self, path, started):
        touch(started)
        wait_for_path(path)
        return self.n


@zactor.remote(max_restarts=1)
class Phoenix:
    """Dies on request; its second life waits for ``gate`` in its constructor, so that the
    test sees it RESTARTING for as long as it likes."""

    def __init__(self, marker, gate):
        if os.path.exists(marker):
            wait_for_path(gate)
        touch(marker)

    def die(self):
        os._exit(1)

    def ping(self):
        return "pong"


def tasks_named(name: str, **kwargs) -> list:
    return state.list_tasks(filters=[("name", "=", name)], limit=10_000, **kwargs)


def cli(*args: str) -> str:
    done = subprocess.run([ZACTOR, *args, "--address", zactor.testing.head_address()],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def test_finished_failed_and_running_tasks_and_actor_calls(tmp_path):
    assert zactor.get([state_square.remote(i) for i in range(3)]) == [0, 1, 4]
    failing = state_fails.remote("the sky fell")
    with pytest.raises(ValueError):
        zactor.get(failing)
    counter = StateCounter.remote()
    assert zactor.get([counter.add.remote(1) for _ in range(3)]) == [1, 2, 3]
    gate, started, call_started = (str(tmp_path / n) for n in ("gate", "started", "called"))
    running = block_until.remote(gate, 7, started)
    call = counter.wait_for.remote(gate, call_started)
    wait_for_path(started)
    wait_for_path(call_started)
    try:
        squares = tasks_named("state_square")
        assert len(squares) == 3
        assert {t.state for t in squares} == {"FINISHED"}
        for t in squares:
            assert t["type"] == "NORMAL_TASK" and t.worker_pid and t.node_id
            assert t.start_time_ms <= t.end_time_ms and t.creation_time_ms <= t.start_time_ms
            assert t.error_type is None and t.attempt_number == 0
            assert t.job_id == zactor.get_runtime_context().get_job_id()
        [failed] = tasks_named("state_fails")
        assert failed.state == "FAILED" and failed.task_id == failing.task_id().hex()
        assert failed.error_type == "TASK_EXECUTION_EXCEPTION"
        assert "ValueError" in failed.error_message and "the sky fell" in failed.error_message
        calls = tasks_named("StateCounter.add")
        assert len(calls) == 3 and {c.type for c in calls} == {"ACTOR_TASK"}
        assert {c.actor_id for c in calls} == {counter._actor_id.hex()}
        [creation] = tasks_named("StateCounter.__init__")
        assert creation.type == "ACTOR_CREATION_TASK" and creation.state == "FINISHED"
        live = state.list_tasks(filters=[("state", "=", "running")])  # case-insensitive
        by_id = {t.task_id: t for t in live}
        assert running.task_id().hex() in by_id and call.task_id().hex() in by_id
        blocked = by_id[running.task_id().hex()]
        assert blocked.name == "block_until" and blocked.end_time_ms is None
        assert blocked.worker_pid and blocked.start_time_ms
        assert state.get_task(running.task_id().hex()).state == "RUNNING"
        assert state.get_task("00" * 16) is None
        # != and limits, applied by the head
        others = state.list_tasks(filters=[("state", "!=", "FINISHED"),
                                           ("name", "!=", "block_until")], limit=1000)
        assert failed.task_id in {t.task_id for t in others}
        assert all(t.state != "FINISHED" and t.name != "block_until" for t in others)
        assert len(state.list_tasks(limit=2)) == 2
        with pytest.raises(ValueError, match="cannot filter on"):
            state.list_tasks(filters=[("no_such_column", "=", "x")])
        with pytest.raises(ValueError, match="predicate"):
            state.list_tasks(filters=[("state", ">", "x")])
    finally:
        touch(gate)
    assert zactor.get([running, call], timeout=30) == [7, 3]
    # (the call's result reaches its caller straight from the actor, and the head a moment
    # later: the state API is eventually consistent, as Ray's is)
    wait_until(lambda: state.get_task(call.task_id().hex()).state == "FINISHED",
               message="the call FINISHED")


def test_actors_alive_dead_and_restarting_with_their_restart_counts(tmp_path):
    marker, gate = str(tmp_path / "marker"), str(tmp_path / "gate")
    phoenix = Phoenix.remote(marker, gate)
    assert zactor.get(phoenix.ping.remote()) == "pong"
    doomed = StateCounter.options(name="state-doomed").remote()
    assert zactor.get(doomed.add.remote(1)) == 1
    pid = state.get_actor(doomed._actor_id.hex()).pid
    assert pid and state.get_actor(doomed._actor_id.hex()).state == "ALIVE"
    named = state.list_actors(filters=[("name", "=", "state-doomed")])
    assert [a.actor_id for a in named] == [doomed._actor_id.hex()]
    assert named[0].class_name == "StateCounter" and named[0].num_restarts == 0
    zactor.kill(doomed)
    dead = wait_until(lambda: (a := state.get_actor(doomed._actor_id.hex())) and
                      a.state == "DEAD" and a, message="the killed actor DEAD")
    assert "killed" in dead.death_cause["actor_died_error_context"]["error_message"]
    phoenix.die.remote()
    pid_of = phoenix._actor_id.hex()
    restarting = wait_until(lambda: (a := state.get_actor(pid_of)) and
                            a.state == "RESTARTING" and a, message="RESTARTING")
    assert restarting.num_restarts == 1
    touch(gate)
    assert zactor.get(phoenix.ping.remote(), timeout=30) == "pong"
    alive = state.get_actor(pid_of)
    assert alive.state == "ALIVE" and alive.num_restarts == 1
    creations = tasks_named("Phoenix.__init__")
    assert sorted(t.attempt_number for t in creations) == [0, 1]
    summary = state.summarize_actors()["cluster"]
    assert summary["summary"]["Phoenix"]["state_counts"] == {"ALIVE": 1}
    assert summary["summary"]["StateCounter"]["state_counts"].get("DEAD", 0) >= 1
    assert summary["total_actors"] >= 2


def test_nodes_jobs_and_placement_groups():
    [node] = state.list_nodes()
    assert node.state == "ALIVE" and node.is_head_node and node.resources_total["CPU"] == 2
    assert state.get_node(node.node_id).node_ip == node.node_ip
    assert state.list_nodes(filters=[("state", "=", "DEAD")]) == []
    drivers = state.list_jobs(filters=[("type", "=", "DRIVER")])
    assert os.getpid() in {j.driver_pid for j in drivers}
    workers = state.list_workers(filters=[("worker_type", "=", "worker")])
    assert workers and all(w.pid and w.node_id == node.node_id for w in workers)
    pg = placement_group([{"CPU": 1}], name="state-pg")
    assert pg.wait(10)
    [group] = state.list_placement_groups(filters=[("name", "=", "state-pg")])
    assert group.state == "CREATED" and group.placement_group_id == pg.id.hex()
    assert group.bundles[0]["unit_resources"] == {"CPU": 1}
    remove_placement_group(pg)
    wait_until(lambda: state.list_placement_groups(
        filters=[("name", "=", "state-pg"), ("state", "=", "REMOVED")]), message="REMOVED")


def test_summarize_tasks_counts_by_function_and_state():
    zactor.get([state_square.remote(i) for i in range(4)])
    with pytest.raises(ValueError):
        zactor.get(state_fails.remote("again"))
    cluster = state.summarize_tasks()["cluster"]
    square = cluster["summary"]["state_square"]
    assert square["type"] == "NORMAL_TASK"
    assert square["state_counts"]["FINISHED"] == len(tasks_named("state_square"))
    assert cluster["summary"]["state_fails"]["state_counts"]["FAILED"] == \
        len(tasks_named("state_fails"))
    assert cluster["total_tasks"] >= 10 and cluster["total_actor_tasks"] >= 3


def test_timeline_has_one_complete_event_per_finished_task(tmp_path):
    zactor.get([state_square.remote(i) for i in range(5)])
    # (an actor's creation is one task id with an attempt per restart)
    finished = [(t.task_id, t.attempt_number) for t in state.list_tasks(limit=100_000)
                if t.state in ("FINISHED", "FAILED")]
    path = tmp_path / "trace.json"
    assert zactor.timeline(str(path)) is None
    events = json.loads(path.read_text())
    complete = [e for e in events if e["ph"] == "X"]
    assert sorted((e["args"]["task_id"], e["args"]["attempt_number"]) for e in complete) == \
        sorted(finished)
    for e in complete:
        assert e["dur"] >= 0 and e["ts"] > 1e15  # microseconds since the epoch
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int) and e["name"]
    names = {e["args"]["name"] for e in events if e["ph"] == "M"}
    assert any(n.startswith("Node ") for n in names)
    assert any(n.startswith("worker pid ") for n in names)
    assert len([e for e in zactor.timeline() if e["ph"] == "X"]) >= len(finished)


def test_the_cli_lists_summarizes_and_writes_the_timeline(tmp_path):
    assert zactor.get(state_square.remote(9)) == 81
    with pytest.raises(ValueError):
        zactor.get(state_fails.remote("for the cli"))
    keeper = StateCounter.options(name="state-cli").remote()
    assert zactor.get(keeper.add.remote(2)) == 2
    rows = json.loads(cli("list", "tasks", "--format", "json", "--filter",
                          "name=state_square", "--limit", "1000"))
    assert rows and {r["name"] for r in rows} == {"state_square"}
    assert len(rows) == len(tasks_named("state_square"))
    text = cli("list", "tasks", "--filter", "state=failed", "--filter", "type!=actor_task")
    header, rule, *lines = text.splitlines()
    assert header.split()[:4] == ["TASK_ID", "ATTEMPT_NUMBER", "NAME", "STATE"]
    assert set(rule) <= {"-", " "}
    assert lines and all("state_fails" in line and "FAILED" in line for line in lines)
    assert len(json.loads(cli("list", "tasks", "--format", "json", "--limit", "2"))) == 2
    actors = cli("list", "actors", "--filter", "state!=DEAD")
    assert "state-cli" in actors and "CLASS_NAME" in actors and "DEAD" not in actors
    yaml_text = cli("list", "nodes", "--format", "yaml")
    assert "is_head_node: true" in yaml_text
    for resource in ("jobs", "placement-groups", "objects", "workers"):
        assert json.loads(cli("list", resource, "--format", "json")) is not None
    summary = cli("summary", "tasks")
    assert "state_square" in summary and "FINISHED" in summary
    assert "StateCounter" in cli("summary", "actors")
    trace = tmp_path / "cli-trace.json"
    out = cli("timeline", "--output", str(trace))
    assert str(trace) in out
    assert any(e["name"] == "state_square" for e in json.loads(trace.read_text()))
    bad = subprocess.run([ZACTOR, "list", "tasks", "--filter", "nonsense",
                          "--address", zactor.testing.head_address()],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "KEY=VALUE" in bad.stderr


BOUNDED = textwrap.dedent("""
    import json, sys
    import zactor
    from zactor.util import state

    @zactor.remote
    def tick(i):
        return i

    zactor.init(num_cpus=1)
    refs = [tick.remote(i) for i in range(300)]
    zactor.get(refs)
    tasks = state.list_tasks(limit=100_000)
    print(json.dumps({"ids": [t.task_id for t in tasks],
                      "first": refs[0].task_id().hex(), "last": refs[-1].task_id().hex(),
                      "summary": state.summarize_tasks()["cluster"]["total_tasks"]}))
    zactor.shutdown()
""")


def test_the_history_is_a_bounded_ring(tmp_path):
    script = tmp_path / "bounded.py"
    script.write_text(BOUNDED)
    env = dict(os.environ, ZACTOR_TASK_HISTORY_MAX="50")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=90, env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report["ids"]) == 50 and report["summary"] == 50
    assert report["last"] in report["ids"] and report["first"] not in report["ids"]


def test_the_rings_memory_stays_flat_past_its_bound():
    """Recording costs one tuple per task, and the ring forgets the oldest: memory after
    20,000 tasks is that after 2,000 (TaskRecord-shaped objects, no cluster needed)."""
    from zactor.head.records import TaskRecord
    from zactor.head.state import TaskHistory
    from zactor.protocol import SPEC_FIELDS, S, TaskKind

    history = TaskHistory(2_000, 10)

    def run(n: int, base: int) -> None:
        for i in range(n):
            spec = [None] * len(SPEC_FIELDS)
            spec[S.TASK_ID] = (base + i).to_bytes(16, "big")
            spec[S.KIND], spec[S.NAME], spec[S.OPTIONS] = TaskKind.TASK, "f", {}
            spec[S.MAX_RETRIES] = 0
            task = TaskRecord(spec, [b""], b"owner", [], {}, {})
            task.error = ("ValueError", "x" * 100) if i % 2 else None
            history.record(task)

    tracemalloc.start()
    try:
        run(2_000, 0)
        at_bound = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        run(18_000, 2_000)
        per_task = (time.perf_counter() - started) / 18_000
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(history.done) == 2_000 and history.recorded == 20_000
    assert after - at_bound < 64 * 1024, f"grew by {after - at_bound} bytes past the bound"
    assert per_task < 1e-3
