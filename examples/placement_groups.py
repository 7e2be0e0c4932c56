"""Placement groups: reserve resources on several nodes at once, then place work in them.

Starts a local three-node cluster (zactor.testing.Cluster: a head and two node agents,
real processes talking TCP), reserves one CPU on each node with STRICT_SPREAD, puts an
actor in each bundle, shows where everything landed, and removes the group.

    python examples/placement_groups.py
"""

import zactor
from zactor.testing import Cluster
from zactor.util.placement_group import (
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from zactor.util.scheduling_strategies import PlacementGroupSchedulingStrategy


@zactor.remote(num_cpus=1)
class Shard:
    def __init__(self, index: int):
        self.index = index

    def where(self) -> str:
        return zactor.get_runtime_context().get_node_id()


def main() -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=2)
        cluster.connect()
        group = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
        zactor.get(group.ready(), timeout=30)  # all three bundles reserved, or none
        print("reserved:", zactor.available_resources()["CPU"], "of 6 CPUs left")
        shards = [Shard.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
            group, placement_group_bundle_index=i)).remote(i) for i in range(3)]
        nodes = zactor.get([s.where.remote() for s in shards])
        table = placement_group_table(group)
        for i, node in enumerate(nodes):
            assert node == table["bundles_to_node_id"][i]
            print(f"shard {i} runs on node {node[:12]} (bundle {i})")
        assert len(set(nodes)) == 3, "STRICT_SPREAD puts each bundle on its own node"
        remove_placement_group(group)  # the shards end, the CPUs go back
        print("removed; OK")
    finally:
        zactor.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
