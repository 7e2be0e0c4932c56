"""A head killed with SIGKILL and started again with the same state directory (DESIGN §6):
node agents, workers and drivers reconnect by themselves, actors that were alive are reached
again through their old handles and names, an actor that lived on the head's own node is
restarted, and work that was in flight ends in a named error — never a hang."""

from __future__ import annotations

import time

import pytest

import zactor
from zactor.exceptions import ObjectLostError
from zactor.testing import Cluster
from zactor.util.scheduling_strategies import NodeAffinitySchedulingStrategy

RECOVERY_S = 4.0


@zactor.remote
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n

    def node(self):
        return zactor.get_runtime_context().get_node_id()


@zactor.remote
def slow(delay: float):
    time.sleep(delay)
    return "done"


@zactor.remote
def square(x):
    return x * x


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1},
                env={"ZACTOR_HEAD_RECOVERY_S": str(RECOVERY_S), "ZACTOR_NODE_TIMEOUT_S": "2"})
    try:
        c.worker = c.add_node(num_cpus=2, resources={"w": 10})
        c.connect()
        yield c
    finally:
        c.shutdown()


def test_actors_survive_a_head_sigkill(cluster):
    keeper = Counter.options(name="keeper", lifetime="detached", resources={"w": 1}).remote()
    held = Counter.options(resources={"w": 1}).remote()
    head_id = cluster.head_node.node_id
    on_head = Counter.options(max_restarts=1, num_cpus=0, scheduling_strategy=(
        NodeAffinitySchedulingStrategy(head_id, soft=True))).remote()
    assert zactor.get([keeper.incr.remote() for _ in range(5)])[-1] == 5
    assert zactor.get([held.incr.remote() for _ in range(2)])[-1] == 2
    assert zactor.get(on_head.incr.remote()) == 1
    assert zactor.get(keeper.node.remote()) == cluster.worker.node_id
    # An environment this driver registers once, with the old head.
    env = {"env_vars": {"ZQ_AFTER": "restart"}}
    assert zactor.get(square.options(runtime_env=env).remote(3)) == 9
    in_flight = slow.options(resources={"w": 1}).remote(2.0)
    time.sleep(0.2)  # let it start (a task the old head sent, finishing under the new one)

    killed = time.monotonic()
    cluster.kill_head()
    cluster.restart_head()
    # Through the old handle and by name: the same process, its state kept.
    assert zactor.get(keeper.incr.remote(), timeout=60) == 6
    recovered = time.monotonic() - killed
    print(f"head SIGKILL to first call on the restored named actor: {recovered:.2f} s")
    assert zactor.get(zactor.get_actor("keeper").incr.remote(), timeout=30) == 7
    assert zactor.get(held.incr.remote(), timeout=30) == 3
    # It lived on the head's node, which died with the head: restarted from scratch.
    assert zactor.get(on_head.incr.remote(), timeout=60) == 1
    # The task in flight ends in a named error (its result died with the old head).
    with pytest.raises(ObjectLostError, match="restarted"):
        zactor.get(in_flight, timeout=60)
    # New work runs on every node.
    assert zactor.get([square.options(scheduling_strategy="SPREAD").remote(i)
                       for i in range(6)], timeout=60) == [i * i for i in range(6)]
    assert sum(n["Alive"] for n in zactor.nodes()) == 2
    # It came back with the control log: the new head's node makes a worker for it.
    on_new_head = NodeAffinitySchedulingStrategy(cluster.head_node.node_id, soft=False)
    assert zactor.get(square.options(runtime_env=env, scheduling_strategy=on_new_head)
                      .remote(4), timeout=60) == 16
    zactor.kill(keeper)


OWNER_SCRIPT = """
import sys, time, zactor
zactor.init(address=sys.argv[1])

@zactor.remote
class Owned:
    def ping(self):
        return "pong"

a = Owned.options(name="owned", resources={"w": 1}).remote()
assert zactor.get(a.ping.remote()) == "pong"
open(sys.argv[2], "w").write("ready")
time.sleep(600)
"""


def actor_states() -> dict:
    report = zactor._api.core().request("cluster_status")
    return {a["name"]: a["state"] for a in report["actors"] if a["name"]}


def test_after_the_grace_period_orphans_end_and_detached_actors_stay(cluster, tmp_path):
    import subprocess
    import sys

    zactor.get(Counter.options(name="free", lifetime="detached",
                               resources={"w": 1}).remote().incr.remote())
    ready = tmp_path / "ready"
    owner = subprocess.Popen([sys.executable, "-c", OWNER_SCRIPT, cluster._ipc, str(ready)])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert owner.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        cluster.kill_head()
        owner.kill()  # the owner dies while there is no head to tell
        owner.wait(10)
        cluster.restart_head()
        # Its worker calls in, so the actor is adopted; its owner never does.
        deadline = time.monotonic() + 30
        while actor_states().get("owned") != "alive":
            assert time.monotonic() < deadline, actor_states()
            time.sleep(0.1)
        deadline = time.monotonic() + RECOVERY_S + 30
        while actor_states().get("owned") not in (None, "dead"):  # dead, then forgotten
            assert time.monotonic() < deadline, actor_states()
            time.sleep(0.1)
        # A detached actor needs no owner and no handle: it stays, reachable by name.
        assert zactor.get(zactor.get_actor("free").incr.remote(), timeout=30) == 2
        assert zactor.get(square.remote(3), timeout=30) == 9
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(10)
