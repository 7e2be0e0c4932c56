"""Placement groups on a three-node cluster (zactor.testing.Cluster): where each strategy
puts its bundles, work pinned to a bundle running on its node, groups that die with their
driver (detached ones stay), a node killed inside a group (its bundles are placed again and
their actors restart there), and ``zactor status`` listing the groups."""

from __future__ import annotations

import subprocess
import sys

import pytest
from remote_helpers import wait_until

import zactor
from zactor.testing import Cluster
from zactor.util.placement_group import (
    PlacementGroup,
    PlacementGroupID,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from zactor.util.scheduling_strategies import PlacementGroupSchedulingStrategy as InGroup

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2},
                env={"ZACTOR_NODE_TIMEOUT_S": "2"})
    try:
        c.workers = [c.add_node(num_cpus=2) for _ in range(2)]
        c.connect()
        yield c
    finally:
        zactor.shutdown()
        c.shutdown()


@zactor.remote(num_cpus=0)
def node_of():
    return zactor.get_runtime_context().get_node_id()


def nodes_of(group) -> list[str]:
    table = placement_group_table(group)
    return [table["bundles_to_node_id"][i] for i in range(len(table["bundles"]))]


@pytest.mark.parametrize("strategy,bundles,distinct", [
    ("STRICT_SPREAD", [{"CPU": 1}] * 3, 3),
    ("SPREAD", [{"CPU": 1}] * 3, 3),
    ("STRICT_PACK", [{"CPU": 1}] * 2, 1),
    ("PACK", [{"CPU": 1}] * 2, 1),
    ("PACK", [{"CPU": 2}] * 2, 2),  # no node holds both: PACK spills, as in Ray
])
def test_each_strategy_places_its_bundles(cluster, strategy, bundles, distinct):
    group = placement_group(bundles, strategy=strategy)
    assert group.wait(20)
    where = nodes_of(group)
    assert len(set(where)) == distinct
    for index, node in enumerate(where):  # work pinned to a bundle runs on its node
        assert zactor.get(node_of.options(scheduling_strategy=InGroup(group, index))
                          .remote(), timeout=20) == node
    remove_placement_group(group)


def test_strict_pack_never_splits_a_group(cluster):
    group = placement_group([{"CPU": 2}, {"CPU": 1}], strategy="STRICT_PACK")
    assert not group.wait(1)  # 3 CPUs on one node: there is none
    status = zactor._api.core().request("cluster_status")
    assert {"CPU: 2": 1, "CPU: 1": 1}.items() <= status["infeasible"].items()
    remove_placement_group(group)


DRIVER = """
import sys, zactor
from zactor.util.placement_group import placement_group
zactor.init(address=sys.argv[1], namespace="groups")
for name, lifetime in (("mine", None), ("kept", "detached")):
    assert placement_group([{"CPU": 1}], name=name, lifetime=lifetime).wait(20)
"""


def test_a_group_dies_with_its_driver_unless_detached(cluster):
    out = subprocess.run([sys.executable, "-c", DRIVER, cluster.address], env=cluster._env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr

    def states():
        return {g["name"]: g["state"] for g in placement_group_table().values()
                if g["namespace"] == "groups"}

    wait_until(lambda: states().get("mine") == "REMOVED", timeout=30,
               message="the driver's group removed")
    assert states()["kept"] == "CREATED"
    kept = next(pg_id for pg_id, g in placement_group_table().items()
                if g["name"] == "kept" and g["state"] == "CREATED")
    remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(kept))))


def test_a_node_killed_inside_a_group_has_its_bundles_placed_again(cluster):
    @zactor.remote(num_cpus=1)
    class Member:
        def node(self):
            return zactor.get_runtime_context().get_node_id()

    group = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD",
                            name="survivor")
    assert group.wait(20)
    members = [Member.options(max_restarts=1, scheduling_strategy=InGroup(group, i)).remote()
               for i in range(2)]
    where = zactor.get([m.node.remote() for m in members], timeout=20)
    victim = next((w for w in cluster.workers if w.node_id in where), None)
    assert victim is not None
    lost = where.index(victim.node_id)
    cluster.remove_node(victim, allow_graceful=False)
    cluster.workers.remove(victim)
    wait_until(lambda: placement_group_table(group)["state"] in ("RESCHEDULING", "CREATED")
               and victim.node_id not in nodes_of_placed(group), timeout=30,
               message="the lost bundle taken off the dead node")
    if placement_group_table(group)["state"] == "RESCHEDULING":
        cluster.workers.append(cluster.add_node(num_cpus=2))
    wait_until(lambda: placement_group_table(group)["state"] == "CREATED", timeout=30,
               message="the group placed again")
    again = nodes_of(group)
    assert victim.node_id not in again and len(set(again)) == 2  # still strictly spread
    # the actor of the lost bundle restarted in it, on its new node
    assert zactor.get(members[lost].node.remote(), timeout=30) == again[lost]
    assert zactor.get(members[1 - lost].node.remote(), timeout=10) == where[1 - lost]
    assert get_placement_group("survivor") == group

    from zactor_cli.cluster import render_status

    text = render_status(zactor._api.core().request("cluster_status"))
    assert "Placement groups" in text and "survivor" in text and "2/2" in text
    remove_placement_group(group)


def nodes_of_placed(group) -> list[str]:
    return list(placement_group_table(group)["bundles_to_node_id"].values())
