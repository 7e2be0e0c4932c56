"""The driver examples/slurm/zactor-cluster.sbatch runs: it waits for every node of the
allocation to join, spreads tasks over them and prints the answer.

    python driver.py NODES      (with ZACTOR_ADDRESS set to the head)
"""

import sys
import time

import zactor

expected = int(sys.argv[1]) if len(sys.argv) > 1 else 1
zactor.init()  # ZACTOR_ADDRESS names the head; ZACTOR_CLUSTER_KEY_FILE its key
deadline = time.monotonic() + 120
while sum(n["Alive"] for n in zactor.nodes()) < expected:
    if time.monotonic() > deadline:
        sys.exit(f"only {sum(n['Alive'] for n in zactor.nodes())} of {expected} nodes joined")
    time.sleep(0.2)


@zactor.remote(scheduling_strategy="SPREAD")
def square(x: int) -> tuple[int, str]:
    return x * x, zactor.get_runtime_context().get_node_id()


results = zactor.get([square.remote(x) for x in range(10)])
nodes = {node for _, node in results}
print(f"sum of squares {sum(r for r, _ in results)} on {len(nodes)} node(s) of {expected}")
print("OK")
zactor.shutdown()
