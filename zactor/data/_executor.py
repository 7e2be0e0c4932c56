"""The streaming executor: a dataset's plan runs as a pipeline of stages over blocks.

    source ─► [read + maps, fused: one task per block] ─► [actor pool] ─► ... ─► consumer
                 ▲ at most `window` in flight                ▲ 2 calls per actor

Each stage is a generator of (block ref, metadata) pairs that pulls from the stage before
it only as fast as its own output is taken, and keeps a bounded number of tasks or actor
calls in flight: that is the backpressure. A pipeline ending in a write (a map whose blocks
are written where they are made) holds at most `window` blocks at a time in the object
store, whatever the dataset's size. Consecutive maps with the same resources run in one task
per block (fusion). An operator that needs all its input (sort, shuffle, groupby) waits for
the stage before it to finish, then starts its own tasks.

Output comes in input order. Every task returns its block and the block's metadata as two
objects, so that counts, sizes and schemas are known without fetching blocks.

The executor uses only zactor's public API: remote functions and actors, get, wait.
"""

from __future__ import annotations

import collections
import logging
import math
import resource
import time
from collections.abc import Iterator
from typing import Any

import zactor
from zactor.data import _block
from zactor.data._ops import AllToAll, Combine, Limit, Map, Source
from zactor.data.context import DataContext

log = logging.getLogger(__name__)


def _apply(blocks: list, fns: list, cpu_start: float | None = None) -> tuple:
    cpu_start = time.process_time() if cpu_start is None else cpu_start
    for fn in fns:
        out = []
        for block in blocks:
            out.extend(fn(block))
        blocks = out
    block = _block.concat(blocks)
    meta = _block.metadata(block)
    # what it cost: the task's CPU time, and the peak memory of the process that ran it
    meta["cpu_s"] = time.process_time() - cpu_start
    meta["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return block, meta


@zactor.remote(num_returns=2)
def _read_and_map(read_task, fns: list):
    started = time.process_time()
    blocks = read_task.read()
    return _apply(list(blocks), fns, started)


@zactor.remote(num_returns=2)
def _map(block, fns: list):
    return _apply([block], fns)


@zactor.remote
class _MapActor:
    """Runs one callable class's instance (built once, here) over the blocks it is given."""

    def __init__(self, make_fn):
        self.fn = make_fn()

    @zactor.method(num_returns=2)
    def process(self, block):
        return _apply([block], [self.fn])

    def ready(self):
        return True


class Stats:
    """What each stage did: blocks, rows, bytes and wall time; shown as it happens by one
    progress bar per stage (tqdm) when DataContext.enable_progress_bars is set."""

    def __init__(self) -> None:
        self.stages: dict[str, dict] = {}
        self.bars: dict[str, Any] = {}

    def start(self, stage: str, total_rows: int | None = None) -> None:
        if DataContext.get_current().enable_progress_bars and stage not in self.bars:
            from tqdm import tqdm

            self.bars[stage] = tqdm(desc=stage, total=total_rows, unit=" rows",
                                    unit_scale=True, leave=False, position=len(self.bars))

    def record(self, stage: str, meta: dict, started: float) -> None:
        s = self.stages.setdefault(stage, {"blocks": 0, "rows": 0, "bytes": 0, "cpu": 0.0,
                                           "peak": 0, "first": started, "last": started})
        s["blocks"] += 1
        s["rows"] += meta["rows"]
        s["bytes"] += meta["bytes"]
        s["cpu"] += meta.get("cpu_s", 0.0)
        s["peak"] = max(s["peak"], meta.get("peak_rss", 0))
        s["last"] = time.monotonic()
        bar = self.bars.get(stage)
        if bar is not None:
            bar.update(meta["rows"])

    def finish(self, stage: str) -> None:
        bar = self.bars.pop(stage, None)
        if bar is not None:
            bar.close()

    def text(self) -> str:
        lines = []
        for name, s in self.stages.items():
            wall = s["last"] - s["first"]
            rate = s["rows"] / wall if wall > 0 else float("inf")
            lines.append(f"Operator {name}: {s['blocks']} blocks, {s['rows']} rows, "
                         f"{s['bytes'] / 2**20:.1f} MiB, {wall:.2f} s wall "
                         f"({rate:,.0f} rows/s), {s['cpu']:.2f} s CPU, peak memory of a "
                         f"process running it {s['peak'] / 2**20:.0f} MiB")
        return "\n".join(lines) or "Nothing executed yet."


def execute(plan: list, stats: Stats | None = None) -> Iterator[tuple]:
    """The (block ref, metadata) pairs of ``plan``'s output, in order, streamed."""
    stats = stats if stats is not None else Stats()
    source, ops = plan[0], plan[1:]
    stream: Iterator[tuple] | None = None
    i = 0
    if isinstance(source, Source) and source.blocks is not None:
        stream = iter(source.blocks)
    while i < len(ops) or stream is None:
        if stream is None:  # a read, fused with the maps after it
            fused, i = _fusable(ops, i)
            stream = _task_stage(source.tasks, fused, stats, reading=True,
                                 name="->".join([source.name] + [m.name for m in fused]))
            continue
        op = ops[i]
        if isinstance(op, Map) and op.pool is None:
            fused, i = _fusable(ops, i)
            stream = _task_stage(stream, fused, stats, reading=False,
                                 name="->".join(m.name for m in fused))
        elif isinstance(op, Map):
            stream = _actor_stage(stream, op, stats, upstream_tasks=_has_tasks(plan))
            i += 1
        elif isinstance(op, Limit):
            stream = _limit(stream, op.n)
            i += 1
        elif isinstance(op, AllToAll):
            stream = _all_to_all(stream, op, stats)
            i += 1
        elif isinstance(op, Combine):
            stream = _combine(stream, op.others, stats)
            i += 1
        else:  # pragma: no cover - every operator is one of the above
            raise TypeError(f"unknown operator {op!r}")
    yield from stream


def _has_tasks(plan: list) -> bool:
    return isinstance(plan[0], Source) and plan[0].tasks is not None


def _fusable(ops: list, i: int) -> tuple[list, int]:
    fused = []
    while i < len(ops) and isinstance(ops[i], Map) and ops[i].pool is None and \
            (not fused or fused[-1].fuses_with(ops[i])):
        fused.append(ops[i])
        i += 1
    return fused, i


def _window() -> int:
    ctx = DataContext.get_current()
    if ctx.max_tasks_in_flight:
        return ctx.max_tasks_in_flight
    cpus = int(zactor.cluster_resources().get("CPU", 1))
    return max(2, 2 * cpus)


class _Budget:
    """How many more blocks a stage may have in flight: its window, and a share of the
    object store for the blocks it makes (sized by those it made so far)."""

    def __init__(self) -> None:
        self.window = _window()
        store = zactor.cluster_resources().get("object_store_memory", 0.0)
        self.bytes = store * DataContext.get_current().op_memory_fraction
        self.block = 0.0  # the largest block seen

    def room(self, in_flight: int) -> bool:
        if in_flight >= self.window:
            return False
        return in_flight == 0 or not self.bytes or (in_flight + 1) * self.block <= self.bytes

    def saw(self, meta: dict) -> None:
        self.block = max(self.block, float(meta["bytes"]))


def _task_options(fused: list) -> dict:
    options = {}
    if fused:
        if fused[0].num_cpus is not None:
            options["num_cpus"] = fused[0].num_cpus
        if fused[0].num_gpus is not None:
            options["num_gpus"] = fused[0].num_gpus
        for m in fused:
            options.update(m.extra)
    return options


def _task_stage(inputs, fused: list, stats: Stats, reading: bool, name: str):
    fns = [m.fn for m in fused]
    fn = _read_and_map if reading else _map
    options = _task_options(fused)
    if options:
        fn = fn.options(**options)
    if reading:
        inputs = list(inputs)
        rows = [t.rows for t in inputs]
        stats.start(name, sum(rows) if None not in rows else None)
    else:
        stats.start(name)
    try:
        yield from _tasks(iter(inputs), fn, fns, stats, name, reading)
    finally:
        stats.finish(name)


def _tasks(source, fn, fns: list, stats: Stats, name: str, reading: bool):
    budget = _Budget()
    pending: collections.deque = collections.deque()
    started = time.monotonic()
    exhausted = False
    # a transform with `at` (a write) is told which block of the stream it is given
    bound = any(hasattr(f, "at") for f in fns)
    index = 0
    while True:
        while not exhausted and budget.room(len(pending)):
            try:
                item = next(source)
            except StopIteration:
                exhausted = True
                break
            if not reading:
                budget.saw(item[1])  # its input stays pinned while its task runs
            task_fns = [f.at(index) if hasattr(f, "at") else f for f in fns] if bound else fns
            index += 1
            pending.append(fn.remote(item if reading else item[0], task_fns))
            del item
        if not pending:
            return
        block_ref, meta_ref = pending.popleft()
        meta = zactor.get(meta_ref)
        budget.saw(meta)
        stats.record(name, meta, started)
        yield block_ref, meta


def _actor_stage(inputs, op: Map, stats: Stats, upstream_tasks: bool):
    """A callable class over an actor pool of ``op.pool`` = (min, max) actors, never so
    large that the tasks feeding it find no CPU (Ray Data can deadlock so)."""
    lo, hi = op.pool
    options = {"num_cpus": 1 if op.num_cpus is None else op.num_cpus}
    if op.num_gpus:
        options["num_gpus"] = op.num_gpus
    options.update(op.extra)
    cpus = zactor.cluster_resources().get("CPU", 1)
    per_actor = options["num_cpus"]
    if per_actor and upstream_tasks:
        room = max(1, math.floor((cpus - 1) / per_actor))  # one CPU kept for the reads
        if room < lo:
            log.warning("%s: an actor pool of %d would take the CPUs its input needs; "
                        "using %d actor(s)", op.name, lo, room)
        lo, hi = min(lo, room), min(hi, room)
    pool = _Pool(op, options, lo, max(hi, lo))
    stats.start(op.name)
    try:
        yield from pool.run(iter(inputs), stats)
    finally:
        stats.finish(op.name)
        pool.close()


class _Pool:
    """The actors of one stage: each call goes to the least loaded, two at most each, and
    the pool grows (up to its maximum) while every actor is that busy."""

    PER_ACTOR = 2

    def __init__(self, op: Map, options: dict, lo: int, hi: int) -> None:
        self.op, self.options, self.hi = op, options, hi
        self.actors = [self._new() for _ in range(lo)]
        self.loads = [0] * lo

    def _new(self):
        return _MapActor.options(**self.options).remote(self.op.make_fn)

    def run(self, source, stats: Stats):
        budget = _Budget()
        in_flight: collections.deque = collections.deque()  # (actor, block ref, meta ref)
        started = time.monotonic()
        exhausted = False
        while True:
            while not exhausted and len(in_flight) < self.PER_ACTOR * len(self.actors) and \
                    budget.room(len(in_flight)):
                try:
                    block_ref, meta = next(source)
                except StopIteration:
                    exhausted = True
                    break
                budget.saw(meta)
                i = min(range(len(self.actors)), key=self.loads.__getitem__)
                self.loads[i] += 1
                in_flight.append((i, *self.actors[i].process.remote(block_ref)))
                if len(self.actors) < self.hi and min(self.loads) >= self.PER_ACTOR:
                    self.actors.append(self._new())
                    self.loads.append(0)
            if not in_flight:
                return
            i, block_ref, meta_ref = in_flight.popleft()
            meta = zactor.get(meta_ref)
            budget.saw(meta)
            self.loads[i] -= 1
            stats.record(self.op.name, meta, started)
            yield block_ref, meta

    def close(self) -> None:
        for actor in self.actors:
            zactor.kill(actor)


def _limit(inputs, n: int):
    left = n
    if left <= 0:
        return
    for block_ref, meta in inputs:
        if meta["rows"] <= left:
            left -= meta["rows"]
            yield block_ref, meta
        else:
            block_ref, meta_ref = _slice.remote(block_ref, 0, left)
            yield block_ref, zactor.get(meta_ref)
            left = 0
        if left <= 0:
            return


@zactor.remote(num_returns=2)
def _slice(block, start: int, length: int):
    out = block.slice(start, length)
    return out, _block.metadata(out)


def _all_to_all(inputs, op: AllToAll, stats: Stats):
    started = time.monotonic()
    pairs = list(inputs)
    out = op.run(pairs)
    for _, meta in out:
        stats.record(op.name, meta, started)
    yield from out


def _combine(inputs, others: list, stats: Stats):
    yield from inputs
    for plan in others:
        yield from execute(plan, stats)
