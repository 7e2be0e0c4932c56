"""``zactor demo``: a tiny tour that runs on the cluster ``zactor.init()`` just started.

A few tasks estimate pi by Monte Carlo sampling; each one reports its darts to a counting
actor through the actor handle it was given, and the driver reads the totals back.
"""

from __future__ import annotations

import math
import random
import time

import zactor

TASKS = 8
SAMPLES = 100_000


@zactor.remote
class Tally:
    """Counts the darts thrown and the ones that landed inside the quarter circle."""

    def __init__(self) -> None:
        self.inside = 0
        self.total = 0
        self.reports = 0

    def report(self, inside: int, total: int) -> None:
        self.inside += inside
        self.total += total
        self.reports += 1

    def totals(self) -> tuple[int, int, int]:
        return self.inside, self.total, self.reports


@zactor.remote
def throw_darts(samples: int, seed: int, tally) -> int:
    """Throw ``samples`` darts, report them to ``tally`` and return the hits."""
    rng = random.Random(seed)
    inside = sum(1 for _ in range(samples) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)
    zactor.get(tally.report.remote(inside, samples))
    return inside


def run() -> None:
    """Run the demo on the cluster of the current ``zactor.init()`` and print its result."""
    started = time.perf_counter()
    resources = zactor.cluster_resources()
    tally = Tally.remote()
    hits = zactor.get([throw_darts.remote(SAMPLES, seed, tally) for seed in range(TASKS)])
    inside, total, reports = zactor.get(tally.totals.remote())
    elapsed = time.perf_counter() - started

    estimate = 4.0 * inside / total
    print(f"cluster: {resources.get('CPU', 0):g} CPUs")
    print(f"{TASKS} tasks threw {total} darts; the Tally actor got {reports} reports")
    print(f"pi ~ {estimate:.5f} (error {abs(estimate - math.pi):.5f}) in {elapsed:.2f}s")
    if sum(hits) != inside:
        raise SystemExit("demo failed: the tasks' hits and the actor's count disagree")
    print("OK")


if __name__ == "__main__":
    zactor.init()
    try:
        run()
    finally:
        zactor.shutdown()
