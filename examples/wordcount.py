"""Word count: map files to tasks, reduce into sharded aggregator actors.

1. Write a few dozen generated text files into a temporary directory.
2. One task per file counts its words and splits the counts into one dict per shard
   (``num_returns=NUM_SHARDS``), so each shard's part is its own object.
3. Each shard's parts go straight to that shard's aggregator actor: passing an ObjectRef to
   ``actor.method.remote`` hands the actor the value, never through this driver.
4. Print the top 10 words and the total, and check both against a plain sequential count.

Run it with ``.venv/bin/python examples/wordcount.py`` (``make demo`` does). Exits non-zero when
the distributed count disagrees with the sequential one.
"""

from __future__ import annotations

import argparse
import collections
import random
import re
import sys
import tempfile
import time
import zlib
from pathlib import Path

import zactor

NUM_FILES = 36
NUM_SHARDS = 3
WORDS_PER_FILE = 4000
SEED = 2024

VOCABULARY = (
    "the of and to in a is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when if "
    "so no will more other its time into only some could new them these may than then first "
    "actor task object broker socket queue worker message future shard counter zero copy "
    "memory buffer process thread signal packet latency cluster node head store reference"
).split()

WORD_RE = re.compile(r"[a-z']+")


def shard_of(word: str) -> int:
    """A stable shard for a word: the same in every process (unlike ``hash``, which is salted)."""
    return zlib.crc32(word.encode()) % NUM_SHARDS


def count_words(text: str) -> collections.Counter[str]:
    return collections.Counter(WORD_RE.findall(text.lower()))


@zactor.remote(num_returns=NUM_SHARDS)
def map_file(path: str) -> tuple[dict[str, int], ...]:
    """Count one file's words; return one dict per shard."""
    shards: list[dict[str, int]] = [{} for _ in range(NUM_SHARDS)]
    for word, n in count_words(Path(path).read_text()).items():
        shards[shard_of(word)][word] = n
    return tuple(shards)


@zactor.remote
class Aggregator:
    """Holds the running counts of the words in one shard."""

    def __init__(self, shard: int) -> None:
        self.shard = shard
        self.counts: collections.Counter[str] = collections.Counter()
        self.parts = 0

    def add(self, part: dict[str, int]) -> int:
        self.counts.update(part)
        self.parts += 1
        return self.parts

    def top(self, n: int) -> list[tuple[str, int]]:
        return self.counts.most_common(n)

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)


def write_corpus(directory: Path, seed: int) -> list[Path]:
    """Deterministic, Zipf-like text: a few very common words, a long tail of rare ones."""
    rng = random.Random(seed)
    weights = [1.0 / (rank + 1) for rank in range(len(VOCABULARY))]
    paths = []
    for i in range(NUM_FILES):
        words = rng.choices(VOCABULARY, weights=weights, k=WORDS_PER_FILE)
        lines = []
        for start in range(0, len(words), 12):
            line = " ".join(words[start : start + 12])
            lines.append(line[0].upper() + line[1:] + rng.choice(".,;!?"))
        path = directory / f"part-{i:03d}.txt"
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()

    zactor.init()
    try:
        with tempfile.TemporaryDirectory(prefix="zactor-wordcount-") as tmp:
            paths = write_corpus(Path(tmp), args.seed)
            started = time.perf_counter()

            aggregators = [Aggregator.remote(shard) for shard in range(NUM_SHARDS)]
            acks = []
            for path in paths:
                parts = map_file.remote(str(path))  # NUM_SHARDS refs, one per shard
                for aggregator, part in zip(aggregators, parts, strict=True):
                    acks.append(aggregator.add.remote(part))
            zactor.get(acks)  # every part has been added

            # Shards hold disjoint words, so the global top 10 is among the shards' top 10s.
            tops = zactor.get([a.top.remote(10) for a in aggregators])
            top10 = sorted((pair for top in tops for pair in top), key=lambda p: (-p[1], p[0]))
            top10 = top10[:10]
            snapshots = zactor.get([a.snapshot.remote() for a in aggregators])
            elapsed = time.perf_counter() - started

            distributed: collections.Counter[str] = collections.Counter()
            for snapshot in snapshots:
                distributed.update(snapshot)
            sequential: collections.Counter[str] = collections.Counter()
            for path in paths:
                sequential.update(count_words(path.read_text()))
    finally:
        zactor.shutdown()

    total = sum(distributed.values())
    print(f"{len(paths)} files, {NUM_SHARDS} aggregator actors, {elapsed:.2f}s")
    print("top 10 words:")
    for word, n in top10:
        print(f"  {word:<12} {n:>7}")
    print(f"total words: {total} ({len(distributed)} distinct)")
    if distributed != sequential:
        print(f"MISMATCH: sequential count gives {sum(sequential.values())} words", file=sys.stderr)
        return 1
    print("OK: matches the sequential count")
    return 0


if __name__ == "__main__":
    sys.exit(main())
