"""``DataIterator``: one consumer's pass over a dataset's blocks, as batches or rows.

``Dataset.iterator()`` gives one over the whole dataset. ``Dataset.streaming_split(n)``
gives ``n`` that share one execution of it, each handed blocks as it asks for them::

    driver ──streaming_split(2)──► _SplitCoordinator (an actor: runs the plan, streamed)
                                        ▲ next(0, epoch)          ▲ next(1, epoch)
                                  worker 0: iter_batches    worker 1: iter_batches

The iterators pickle, so each can go to another process (a trainer's workers). Every pass
(``iter_batches`` called again) is an epoch: the dataset runs again, once every split has
begun it (or ``DataContext.streaming_split_wait_s`` after the last epoch ended, for the splits
that came). A split that asks for a block of an epoch that has ended gets none, so the splits
of one epoch see disjoint blocks that, together, are the whole dataset. With ``equal=True``
each split gets the same number of rows (the few left over are dropped, as in Ray); the
coordinator then runs the epoch to the end before it hands out blocks, since it must count
the rows first.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

import zactor
from zactor.data import _all_to_all, _block
from zactor.data._executor import Stats, execute
from zactor.data.context import DataContext


class DataIterator:
    """One consumer's view of a dataset: ``iter_batches``, ``iter_rows``,
    ``iter_torch_batches``, ``materialize`` (Ray's ``DataIterator``).

    Example::

        for batch in ds.iterator().iter_batches(batch_size=128, batch_format="pandas"):
            ...
    """

    def _block_refs(self) -> Iterator[tuple]:
        """(block ref, metadata) pairs of one pass."""
        raise NotImplementedError

    def _blocks(self, prefetch: int = 1) -> Iterator[pa.Table]:
        pairs = self._block_refs()
        ahead: collections.deque = collections.deque()
        for pair in pairs:
            ahead.append(pair)
            if len(ahead) > prefetch:
                yield zactor.get(ahead.popleft()[0])
        while ahead:
            yield zactor.get(ahead.popleft()[0])

    def iter_batches(self, *, batch_size: int | None = 256, batch_format: str = "default",
                     prefetch_batches: int = 1, drop_last: bool = False,
                     local_shuffle_buffer_size: int | None = None,
                     local_shuffle_seed: int | None = None) -> Iterator[Any]:
        """Batches of ``batch_size`` rows across block boundaries (the last may be short
        unless ``drop_last``); with ``local_shuffle_buffer_size``, rows are drawn at random
        from a buffer of at least that many."""
        fmt = _block.check_format(batch_format)
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if local_shuffle_buffer_size is not None and local_shuffle_buffer_size < 1:
            raise ValueError("local_shuffle_buffer_size must be positive, got "
                             f"{local_shuffle_buffer_size}")
        blocks = self._blocks(max(0, prefetch_batches))
        return batches(blocks, batch_size, fmt, drop_last, local_shuffle_buffer_size,
                       local_shuffle_seed)

    def iter_rows(self) -> Iterator[dict]:
        for block in self._blocks():
            yield from block.to_pylist()

    def iter_torch_batches(self, *, batch_size: int | None = 256, dtypes: Any = None,
                           device: str = "cpu", drop_last: bool = False,
                           prefetch_batches: int = 1,
                           local_shuffle_buffer_size: int | None = None,
                           local_shuffle_seed: int | None = None,
                           **_kwargs) -> Iterator[dict]:
        """Batches as dicts of ``torch.Tensor`` (``dtypes``: one dtype, or one per column)."""
        import torch

        for batch in self.iter_batches(batch_size=batch_size, drop_last=drop_last,
                                       prefetch_batches=prefetch_batches,
                                       local_shuffle_buffer_size=local_shuffle_buffer_size,
                                       local_shuffle_seed=local_shuffle_seed):
            yield {k: torch.as_tensor(v, dtype=dtypes.get(k) if isinstance(dtypes, dict)
                                      else dtypes, device=device) for k, v in batch.items()}

    def materialize(self):
        """This iterator's blocks of one pass, kept in the object store as a dataset."""
        from zactor.data._ops import Source
        from zactor.data.dataset import MaterializedDataset

        return MaterializedDataset([Source("Materialized", blocks=list(self._block_refs()))])

    def stats(self) -> str:
        raise NotImplementedError


class _DatasetIterator(DataIterator):
    def __init__(self, ds) -> None:
        self._ds = ds

    def _block_refs(self) -> Iterator[tuple]:
        return self._ds._execute()

    def stats(self) -> str:
        return self._ds.stats()

    def __repr__(self) -> str:
        return f"DataIterator({self._ds!r})"


class _SplitIterator(DataIterator):
    def __init__(self, coordinator, index: int, n: int) -> None:
        self._coordinator, self._index, self._n = coordinator, index, n

    def _block_refs(self) -> Iterator[tuple]:
        epoch = zactor.get(self._coordinator.begin.remote(self._index))
        call = self._coordinator.next.remote(self._index, epoch)
        while True:
            pair = zactor.get(call)
            if pair is None:
                return
            call = self._coordinator.next.remote(self._index, epoch)  # the next, meanwhile
            yield pair

    def stats(self) -> str:
        return zactor.get(self._coordinator.stats.remote())

    def __repr__(self) -> str:
        return f"DataIterator(split {self._index} of {self._n})"


def streaming_split(ds, n: int, equal: bool) -> list[DataIterator]:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"streaming_split needs n >= 1, got {n!r}")
    coordinator = _SplitCoordinator.options(num_cpus=0, max_concurrency=n + 2).remote(
        ds._plan, n, equal, DataContext.get_current())
    return [_SplitIterator(coordinator, i, n) for i in range(n)]


@zactor.remote
class _SplitCoordinator:
    """Runs a dataset's plan once per epoch and hands its blocks to the ``n`` splits that
    ask (one thread per waiting split)."""

    def __init__(self, plan: list, n: int, equal: bool, context: DataContext) -> None:
        context.enable_progress_bars = False  # no terminal here
        DataContext._set_current(context)
        self.plan, self.n, self.equal = plan, n, equal
        self.wait_s = context.streaming_split_wait_s
        self.cond = threading.Condition()
        self.epoch = -1  # the epoch being handed out
        self.stream: Iterator[tuple] | None = None  # its blocks (equal=False)
        self.queues: list[collections.deque] | None = None  # or each split's (equal=True)
        self.begun = [-1] * n  # the latest epoch each split began
        self.last_stats = Stats()

    def begin(self, split: int) -> int:
        with self.cond:
            self.begun[split] += 1
            self.cond.notify_all()
            return self.begun[split]

    def next(self, split: int, epoch: int) -> tuple | None:
        with self.cond:
            deadline = None
            while epoch > self.epoch:
                # A new epoch starts once every split has begun it, so that each gets a
                # share; or, once the last epoch is all handed out, after a bounded wait
                # for the others, so that splits consumed one after another (more
                # consumers than CPUs) still finish.
                if min(self.begun) >= epoch:
                    self._start(epoch)
                elif self._handed_out():
                    deadline = deadline or time.monotonic() + self.wait_s
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self._start(epoch)
                    else:
                        self.cond.wait(left)
                else:
                    self.cond.wait()
            if epoch < self.epoch:
                return None
            pair = self._take(split)
            if pair is None:
                self.cond.notify_all()  # a split waiting for the next epoch may start it
            return pair

    def _handed_out(self) -> bool:
        if self.queues is not None:
            return not any(self.queues)
        return self.stream is None

    def _start(self, epoch: int) -> None:
        self.epoch = epoch
        self.last_stats = Stats()
        stream = execute(self.plan, self.last_stats)
        if not self.equal:
            self.stream, self.queues = stream, None
            return
        pairs = list(stream)
        each = sum(m["rows"] for _, m in pairs) // self.n
        if not each:
            self.queues = [collections.deque() for _ in range(self.n)]
            return
        self.queues = [collections.deque([_all_to_all.take_rows(part, each)])
                       for part in _all_to_all.repartition(pairs, self.n)]

    def _take(self, split: int) -> tuple | None:
        if self.queues is not None:
            queue = self.queues[split]
            return queue.popleft() if queue else None
        if self.stream is None:
            return None
        pair = next(self.stream, None)
        if pair is None:
            self.stream = None
        return pair

    def stats(self) -> str:
        return self.last_stats.text()


def batches(blocks: Iterator[pa.Table], batch_size: int | None, fmt: str, drop_last: bool,
            shuffle_buffer: int | None = None, seed: int | None = None) -> Iterator[Any]:
    """Batches of ``batch_size`` rows (None: a block each) cut from ``blocks``; with a
    shuffle buffer, the rows buffered are shuffled before batches are taken from them."""
    rng = np.random.default_rng(seed) if shuffle_buffer else None
    keep = shuffle_buffer or 0  # rows left in the buffer to mix with the next blocks
    carry: list[pa.Table] = []
    carried = 0
    for block in blocks:
        if not block.num_rows:
            continue
        if batch_size is None and rng is None:
            yield _block.to_batch(block, fmt)
            continue
        carry.append(block)
        carried += block.num_rows
        size = batch_size or carried
        if carried < keep + size:
            continue
        joined = _block.concat(carry)
        if rng is not None:
            joined = joined.take(rng.permutation(joined.num_rows))
        start = 0
        while carried - start >= keep + size:
            yield _block.to_batch(joined.slice(start, size), fmt)
            start += size
        rest = joined.slice(start)
        carry, carried = [rest], rest.num_rows
    if not carried:
        return
    joined = _block.concat(carry)
    if rng is not None:
        joined = joined.take(rng.permutation(joined.num_rows))
    size = batch_size or carried
    for start in range(0, carried, size):
        if carried - start < size and drop_last:
            return
        yield _block.to_batch(joined.slice(start, size), fmt)
