"""Work that needs 8 CPUs at once, for a 2-CPU head with an autoscaler: four tasks of two
CPUs that each wait for the other three, so they only finish once the cluster has grown.

    zactor head --daemon --num-cpus 2 --autoscaling-config examples/autoscaling/local.yaml
    python examples/autoscaling/grow.py
"""

import os
import sys
import tempfile
import time

import zactor


@zactor.remote(num_cpus=2)
def part(i: int, folder: str) -> str:
    open(os.path.join(folder, str(i)), "w").close()
    deadline = time.time() + 300
    while len(os.listdir(folder)) < 4:  # all four at once: 8 CPUs
        if time.time() > deadline:
            raise TimeoutError("the cluster did not grow")
        time.sleep(0.05)
    return zactor.get_runtime_context().get_node_id()


def main() -> None:
    zactor.init(address=sys.argv[1] if len(sys.argv) > 1 else "auto")
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        nodes = zactor.get([part.remote(i, folder) for i in range(4)])
    print(f"4 parts of 2 CPUs ran at once on {len(set(nodes))} nodes, "
          f"{time.monotonic() - started:.1f} s after they were submitted")
    print("OK")


if __name__ == "__main__":
    main()
