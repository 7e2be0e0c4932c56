"""A multi-node cluster on this machine: a head and node agents as processes of their own, over
encrypted TCP (zactor.testing.Cluster). Placement by resources and strategies, objects moving
between nodes, output from other nodes, and a node dying mid-run with nothing lost."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
from remote_helpers import wait_until

import zactor
import zactor.testing
from zactor.exceptions import ActorUnschedulableError, TaskUnschedulableError
from zactor.testing import Cluster
from zactor.util.scheduling_strategies import NodeAffinitySchedulingStrategy

NODE_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1},
                env={"ZACTOR_NODE_TIMEOUT_S": str(NODE_TIMEOUT_S),
                     "ZACTOR_CLIENT_TIMEOUT_S": "3"})
    try:
        c.left = c.add_node(num_cpus=1, resources={"left": 1})
        c.right = c.add_node(num_cpus=1, resources={"right": 1})
        c.wait_for_nodes()
        c.connect()
        yield c
    finally:
        c.shutdown()


@zactor.remote
def node_of(_=None):
    return zactor.get_runtime_context().get_node_id()


@zactor.remote
def slow_node_of(delay: float):
    time.sleep(delay)
    return zactor.get_runtime_context().get_node_id()


@zactor.remote
def make_array(n: int):
    return np.arange(n, dtype=np.int64)


@zactor.remote
def checksum(a) -> tuple:
    return int(a.sum()), zactor.get_runtime_context().get_node_id()


def on(node, soft=False):
    return NodeAffinitySchedulingStrategy(node.node_id, soft=soft)



def test_nodes_lists_every_node_with_rays_fields(cluster):
    nodes = zactor.nodes()
    ids = {n["NodeID"] for n in nodes}
    assert ids == {cluster.head_node.node_id, cluster.left.node_id, cluster.right.node_id}
    for n in nodes:
        assert n["Alive"] is True
        assert n["NodeManagerAddress"] == "127.0.0.1"
        assert n["Resources"]["CPU"] == 1.0
        assert n["NodeManagerPort"] > 0
    assert zactor.cluster_resources()["CPU"] == 3.0
    assert zactor.cluster_resources()["left"] == 1.0


def test_tasks_go_where_their_resources_are(cluster):
    assert zactor.get(node_of.options(resources={"left": 1}).remote()) == cluster.left.node_id
    assert zactor.get(node_of.options(resources={"right": 1}).remote()) == \
        cluster.right.node_id


def test_spread_runs_on_every_node(cluster):
    refs = [slow_node_of.options(scheduling_strategy="SPREAD").remote(0.3) for _ in range(6)]
    assert set(zactor.get(refs)) == {n.node_id for n in cluster.list_all_nodes()}


def test_node_affinity_hard_and_soft(cluster):
    assert zactor.get(node_of.options(scheduling_strategy=on(cluster.right)).remote()) == \
        cluster.right.node_id
    unknown = NodeAffinitySchedulingStrategy("ab" * 14, soft=False)
    with pytest.raises(TaskUnschedulableError, match="not in this cluster"):
        zactor.get(node_of.options(scheduling_strategy=unknown).remote(), timeout=30)
    soft = NodeAffinitySchedulingStrategy("ab" * 14, soft=True)
    assert zactor.get(node_of.options(scheduling_strategy=soft).remote(), timeout=30)


def test_large_objects_move_between_nodes(cluster):
    before = zactor.testing.head_stats()["pulls"]
    n = 5_000_000  # 40 MB
    expected = n * (n - 1) // 2
    made = make_array.options(scheduling_strategy=on(cluster.left)).remote(n)
    # left -> right, left -> head (this driver), driver put -> right and left
    assert zactor.get(checksum.options(scheduling_strategy=on(cluster.right)).remote(made)) \
        == (expected, cluster.right.node_id)
    value = zactor.get(made)
    assert int(value.sum()) == expected and not value.flags.writeable
    put = zactor.put(np.arange(n, dtype=np.int64))
    for node in (cluster.right, cluster.left):
        assert zactor.get(checksum.options(scheduling_strategy=on(node)).remote(put)) == \
            (expected, node.node_id)
    assert zactor.testing.head_stats()["pulls"] >= before + 4


def test_default_placement_prefers_the_node_holding_the_arguments(cluster):
    made = make_array.options(scheduling_strategy=on(cluster.right)).remote(2_000_000)
    zactor.wait([made])
    # One at a time, so that the holder always has room (a busy holder gives way).
    places = [zactor.get(checksum.remote(made))[1] for _ in range(3)]
    assert places == [cluster.right.node_id] * 3


def test_nested_refs_across_nodes(cluster):
    @zactor.remote
    def wrap(n):
        return [make_array.remote(n)]

    @zactor.remote
    def unwrap(box):
        return int(zactor.get(box[0]).sum())

    box = wrap.options(scheduling_strategy=on(cluster.left)).remote(1_000_000)
    total = unwrap.options(scheduling_strategy=on(cluster.right)).remote(box)
    assert zactor.get(total) == 1_000_000 * 999_999 // 2


def test_actor_on_a_worker_node_and_its_output(cluster, capfd):
    @zactor.remote
    class Counter:
        def __init__(self):
            self.n = 0

        def add(self, k):
            self.n += k
            print(f"counter at {self.n}")
            return self.n, zactor.get_runtime_context().get_node_id()

    counter = Counter.options(resources={"left": 0.5}).remote()
    assert zactor.get([counter.add.remote(1) for _ in range(3)])[-1] == \
        (3, cluster.left.node_id)

    def printed():
        out = capfd.readouterr().out
        printed.seen += out
        return "counter at 3" in printed.seen
    printed.seen = ""
    wait_until(printed, 10, message="the actor's output")
    line = next(line for line in printed.seen.splitlines() if "counter at 3" in line)
    assert "ip=127.0.0.1" in line and "Counter" in line
    zactor.kill(counter)


def test_a_node_dying_mid_run_loses_nothing(cluster):
    doomed = cluster.add_node(num_cpus=1, resources={"doomed": 1})

    @zactor.remote(max_restarts=1, max_task_retries=-1)
    class Keeper:
        def __init__(self):
            self.calls = 0

        def where(self):
            self.calls += 1
            return zactor.get_runtime_context().get_node_id()

    keeper = Keeper.options(scheduling_strategy=on(doomed, soft=True)).remote()
    assert zactor.get(keeper.where.remote()) == doomed.node_id
    # A large object made there (rebuilt from its lineage once lost) ...
    made = make_array.options(scheduling_strategy=on(doomed, soft=True)).remote(1_000_000)
    zactor.wait([made])
    # ... and tasks running there when it dies (retried elsewhere).
    running = [slow_node_of.options(scheduling_strategy=on(doomed, soft=True)).remote(1.0)
               for _ in range(2)]
    wait_until(lambda: zactor.testing.head_stats()["queued"] < 2, 10,
               message="the tasks to start")
    killed_at = time.monotonic()
    cluster.remove_node(doomed, allow_graceful=False)
    results = zactor.get(running, timeout=60)
    assert doomed.node_id not in results
    assert time.monotonic() - killed_at < NODE_TIMEOUT_S + 20
    dead = [n for n in zactor.nodes() if n["NodeID"] == doomed.node_id]
    assert dead and dead[0]["Alive"] is False
    assert zactor.get(keeper.where.remote(), timeout=60) != doomed.node_id
    assert int(zactor.get(checksum.remote(made), timeout=60)[0]) == 1_000_000 * 999_999 // 2
    # Placement that insists on the dead node fails at once rather than waits for ever.
    with pytest.raises(TaskUnschedulableError, match="dead"):
        zactor.get(node_of.options(scheduling_strategy=on(doomed)).remote(), timeout=30)
    stuck = Keeper.options(scheduling_strategy=on(doomed)).remote()
    with pytest.raises(ActorUnschedulableError):
        zactor.get(stuck.where.remote(), timeout=30)
    assert zactor.get(node_of.options(scheduling_strategy=on(doomed, soft=True)).remote(),
                      timeout=30) != doomed.node_id


def test_zactor_status_shows_the_nodes_as_tables(cluster):
    out = subprocess.run([sys.executable, "-m", "zactor_cli.main", "status", "--address",
                          cluster._ipc], capture_output=True, text=True, timeout=60,
                         env={**os.environ})
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "Encrypted and authenticated" in text
    assert "NODE" in text and "STATE" in text and "OBJECT STORE" in text
    for node in (cluster.head_node, cluster.left, cluster.right):
        assert node.node_id[:12] in text


def test_a_stopped_node_is_declared_dead_and_rejoins_clean_when_it_resumes(cluster):
    import signal

    frozen = cluster.add_node(num_cpus=1, resources={"frozen": 1})
    assert zactor.get(node_of.options(resources={"frozen": 1}).remote()) == frozen.node_id
    os.kill(frozen.process.pid, signal.SIGSTOP)  # the agent only: its workers keep running
    try:
        wait_until(lambda: not next(n["Alive"] for n in zactor.nodes()
                                    if n["NodeID"] == frozen.node_id),
                   NODE_TIMEOUT_S + 10, message="the stopped node to be declared dead")
        waiting = node_of.options(resources={"frozen": 1}).remote()
    finally:
        os.kill(frozen.process.pid, signal.SIGCONT)
    # Told it was declared dead, it starts again clean, as a new node, and the work runs.
    new = zactor.get(waiting, timeout=60)
    assert new != frozen.node_id
    assert any(n["NodeID"] == new and n["Alive"] for n in zactor.nodes())
    cluster.remove_node(frozen)


def test_nodes_outlive_their_head_only_for_a_while():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1},
                env={"ZACTOR_HEAD_TIMEOUT_S": "2"})
    try:
        node = c.add_node(num_cpus=1)
        agent = psutil.Process(node.process.pid)
        workers = wait_until(lambda: agent.children(recursive=True), 30, message="its workers")
        c.kill_head()
        node.process.wait(30)  # the agent gives up on its head, and stops its workers
        gone = psutil.wait_procs(workers, timeout=10)[1]
        assert not gone, f"workers outlived their node: {gone}"
        c.worker_nodes.discard(node)
    finally:
        c.shutdown()


REMOTE_DRIVER = """
import sys, time, zactor
zactor.init(address=sys.argv[1])

@zactor.remote
class Owned:
    def ping(self):
        return "pong"

a = Owned.options(name="remote-owned", namespace="tcp-driver").remote()
assert zactor.get(a.ping.remote()) == "pong"
open(sys.argv[2], "w").write("ready")
time.sleep(600)
"""


def test_a_driver_on_tcp_that_dies_takes_its_actors_along(cluster, tmp_path):
    ready = tmp_path / "ready"
    env = {**os.environ,
           "ZACTOR_CLUSTER_KEY_FILE": os.path.join(cluster._state_dir, "cluster.key")}
    driver = subprocess.Popen([sys.executable, "-c", REMOTE_DRIVER, "tcp://" + cluster.address,
                               str(ready)], env=env)
    try:
        wait_until(lambda: ready.exists() or driver.poll() is not None, 60, message="the driver")
        assert driver.poll() is None
        assert zactor.get(zactor.get_actor("remote-owned", namespace="tcp-driver")
                          .ping.remote()) == "pong"
        driver.kill()  # no GOODBYE, and no pid the head could watch on another machine
        driver.wait(10)

        def gone():
            try:
                zactor.get_actor("remote-owned", namespace="tcp-driver")
            except ValueError:
                return True
            return False
        wait_until(gone, 3 + 15, message="the actor to die with its owner")
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(10)


def test_results_travel_only_when_read_and_are_freed_when_dropped(cluster):
    """A result made on one node is not copied to its owner's node unless the owner reads it
    (passed on to a task elsewhere, it goes there only), and once dropped it is gone from
    every node, even though this process also holds the Cluster's own connection."""
    assert cluster._observer is not None  # the Cluster's client, open beside the driver

    def stored() -> int:
        return sum(s.get("objects_in_memory", 0) for s in zactor.testing.store_stats())

    before = stored()
    pulls = zactor.testing.head_stats()["pulls"]
    made = make_array.options(scheduling_strategy=on(cluster.left)).remote(2_000_000)
    assert zactor.wait([made], timeout=30)[0] == [made]
    assert zactor.testing.head_stats()["pulls"] == pulls  # ready, and still only on left
    assert zactor.get(checksum.options(scheduling_strategy=on(cluster.right)).remote(made))[1]\
        == cluster.right.node_id
    assert zactor.testing.head_stats()["pulls"] == pulls + 1  # left -> right
    assert int(zactor.get(made).sum()) == 2_000_000 * 1_999_999 // 2
    assert zactor.testing.head_stats()["pulls"] == pulls + 2  # left -> the driver's node
    # Three copies now (left, right, the head's node); the stores report within a heartbeat.
    wait_until(lambda: stored() >= before + 3, 10,
               message="the stores to count the copies")
    oid = made.binary()
    del made
    wait_until(lambda: zactor.testing.objects_exist([oid]) == [False], 10, message="the release")
    wait_until(lambda: stored() == before, 20, message="every copy to be freed")


def test_a_ref_borrowed_by_an_actor_on_another_node_keeps_the_object(cluster):
    @zactor.remote
    class Holder:
        def keep(self, box):
            self.ref = box[0]  # borrowed: the ref arrived inside a list
            return True

        def total(self):
            return int(zactor.get(self.ref).sum())

    holder = Holder.options(resources={"right": 0.5}).remote()
    made = make_array.options(scheduling_strategy=on(cluster.left)).remote(1_000_000)
    assert zactor.get(holder.keep.remote([made]))
    oid = made.binary()
    del made  # the owner lets go; the borrower on another node still holds it
    zactor._api.core().flush_refs()  # the release goes out now, ahead of the question below
    assert zactor.testing.objects_exist([oid]) == [True]
    assert zactor.get(holder.total.remote()) == 1_000_000 * 999_999 // 2
    zactor.kill(holder)
    wait_until(lambda: zactor.testing.objects_exist([oid]) == [False], 10,
               message="the object to go with its last borrower")
