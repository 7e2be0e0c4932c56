"""Estimate pi by Monte Carlo sampling, streaming results with ``wait``.

Each task throws darts at the unit square and counts those inside the quarter circle. The driver
does not wait for all tasks: ``zactor.wait(..., num_returns=1)`` hands back each task as soon as it
finishes, and the running estimate is printed as the samples come in.

Run it with ``.venv/bin/python examples/montecarlo_pi.py [--tasks N] [--samples N]``.
"""

from __future__ import annotations

import argparse
import math
import random
import time

import zactor


@zactor.remote
def sample(samples: int, seed: int) -> int:
    """Return how many of ``samples`` random points fall inside the unit quarter circle."""
    rng = random.Random(seed)
    inside = 0
    for _ in range(samples):
        x, y = rng.random(), rng.random()
        if x * x + y * y <= 1.0:
            inside += 1
    return inside


def main() -> None:
    parser = argparse.ArgumentParser(description="Monte Carlo estimate of pi on zactor.")
    parser.add_argument("--tasks", type=int, default=16, help="number of tasks (default 16)")
    parser.add_argument("--samples", type=int, default=250_000, help="points per task")
    args = parser.parse_args()

    zactor.init()
    started = time.perf_counter()
    pending = [sample.remote(args.samples, seed) for seed in range(args.tasks)]
    inside = total = 0
    while pending:
        # Take whichever task finishes next; the rest keep running.
        [done], pending = zactor.wait(pending, num_returns=1)
        inside += zactor.get(done)
        total += args.samples
        estimate = 4.0 * inside / total
        print(f"{total:>10} samples  pi ~ {estimate:.6f}  (error {abs(estimate - math.pi):.6f})")
    elapsed = time.perf_counter() - started
    zactor.shutdown()

    print(
        f"pi ~ {4.0 * inside / total:.6f} from {total} samples in {args.tasks} tasks, "
        f"{elapsed:.2f}s"
    )


if __name__ == "__main__":
    main()
