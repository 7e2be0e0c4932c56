"""Spread tasks and actors over the nodes of a running cluster (see README, "Run a cluster").

    zactor head --daemon
    zactor worker --address tcp://127.0.0.1:6380 --daemon
    zactor worker --address tcp://127.0.0.1:6380 --daemon
    python examples/cluster_demo.py tcp://127.0.0.1:6380

With no argument it joins ``ZACTOR_ADDRESS``, else this user's newest cluster on this machine.
It prints which node ran what, moves a large array from one node to another, and checks every
result (it prints OK, or exits non-zero).
"""

from __future__ import annotations

import collections
import sys
import time

import numpy as np

import zactor
from zactor.util.scheduling_strategies import NodeAffinitySchedulingStrategy


@zactor.remote
def work(i: int) -> tuple[int, str]:
    time.sleep(0.05)
    return i * i, zactor.get_runtime_context().get_node_id()


@zactor.remote
class Tally:
    def __init__(self) -> None:
        self.total = 0

    def add(self, x: int) -> str:
        self.total += x
        return zactor.get_runtime_context().get_node_id()

    def value(self) -> int:
        return self.total


@zactor.remote
def make_array(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


@zactor.remote
def checksum(a: np.ndarray) -> tuple[int, str]:
    return int(a.sum()), zactor.get_runtime_context().get_node_id()


def main() -> int:
    zactor.init(address=sys.argv[1] if len(sys.argv) > 1 else "auto")
    nodes = [n for n in zactor.nodes() if n["Alive"]]
    name = {n["NodeID"]: f"{n['NodeManagerAddress']}/{n['NodeID'][:8]}" for n in nodes}
    print(f"{len(nodes)} nodes, {zactor.cluster_resources().get('CPU', 0):g} CPUs")

    results = zactor.get([work.options(scheduling_strategy="SPREAD").remote(i)
                          for i in range(60)])
    ok = [r for r, _ in results] == [i * i for i in range(60)]
    for node, count in collections.Counter(n for _, n in results).most_common():
        print(f"  tasks on {name[node]}: {count}")

    tallies = [Tally.options(scheduling_strategy="SPREAD").remote() for _ in range(len(nodes))]
    homes = zactor.get([t.add.remote(i) for i, t in enumerate(tallies)])
    for home in sorted(set(homes)):
        print(f"  actors on {name[home]}: {homes.count(home)}")
    ok &= sum(zactor.get([t.value.remote() for t in tallies])) == sum(range(len(nodes)))

    if len(nodes) > 1:
        first, last = nodes[0]["NodeID"], nodes[-1]["NodeID"]
        n = 10_000_000
        array = make_array.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(first, soft=False)).remote(n)
        start = time.perf_counter()
        total, where = zactor.get(checksum.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(last, soft=False)).remote(array))
        print(f"  {n * 8 / 2**20:.0f} MiB made on {name[first]}, summed on {name[where]} "
              f"in {time.perf_counter() - start:.2f} s")
        ok &= total == n * (n - 1) // 2
    zactor.shutdown()
    print("OK" if ok else "WRONG RESULTS")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
