"""Operators that need all of their input: repartition, shuffles, sort, groupby.

Each is a map phase (a task per input block, splitting it into partitions) and a reduce
phase (a task per output partition, joining its pieces), all through the object store;
the driver only handles refs and metadata. pyarrow does the sorting and grouping.
"""

from __future__ import annotations

import builtins

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import zactor
from zactor.data import _block


def _scatter(fn, ref, n: int, *args) -> list:
    """Run a scatter task that cuts a block into ``n`` pieces, each its own object: the
    pieces stay in the object store (never through this process)."""
    out = fn.options(num_returns=n).remote(ref, *args)
    return [out] if n == 1 else list(out)


def _pairs(refs_and_metas: list) -> list:
    metas = zactor.get([m for _, m in refs_and_metas])
    return [(r, m) for (r, _), m in zip(refs_and_metas, metas, strict=True)]


@zactor.remote(num_returns=2)
def _concat_pieces(*pieces):
    block = _block.concat(list(pieces))
    return block, _block.metadata(block)


@zactor.remote(num_returns=2)
def _concat_shuffled(seed, *pieces):
    block = _block.concat(list(pieces))
    if block.num_rows:
        block = block.take(np.random.default_rng(seed).permutation(block.num_rows))
    return block, _block.metadata(block)


# -- repartition -----------------------------------------------------------------------------

@zactor.remote
def _slice_ranges(block, ranges):
    pieces = [block.slice(a, b - a) for a, b in ranges]
    return pieces[0] if len(pieces) == 1 else tuple(pieces)


def repartition(pairs: list, n: int) -> list:
    """``n`` blocks of (near) equal rows, in order."""
    total = builtins.sum(m["rows"] for _, m in pairs)
    edges = np.linspace(0, total, n + 1).astype(int)
    pieces: list[list] = [[] for _ in builtins.range(n)]
    offset = 0
    for ref, meta in pairs:
        lo, hi = offset, offset + meta["rows"]
        offset = hi
        wanted = []
        for i in builtins.range(n):
            a, b = max(lo, edges[i]), min(hi, edges[i + 1])
            if a < b:
                wanted.append((i, int(a - lo), int(b - lo)))
        if wanted:
            sliced = _scatter(_slice_ranges, ref, len(wanted), [(a, b) for _, a, b in wanted])
            for (i, _, _), piece in zip(wanted, sliced, strict=True):
                pieces[i].append(piece)
    return _pairs([_concat_pieces.remote(*p) for p in pieces])


# -- shuffles ----------------------------------------------------------------------------------

@zactor.remote
def _scatter_random(block, n: int, seed):
    rng = np.random.default_rng(seed)
    owner = rng.integers(0, n, block.num_rows)
    pieces = [block.filter(pa.array(owner == i)) for i in builtins.range(n)]
    return pieces[0] if n == 1 else tuple(pieces)


def random_shuffle(pairs: list, seed, n: int | None = None) -> list:
    n = n or max(1, len(pairs))
    base = np.random.SeedSequence(seed).generate_state(len(pairs) + n) if seed is not None \
        else [None] * (len(pairs) + n)
    parts = [_scatter(_scatter_random, ref, n, n, _seed(base[i]))
             for i, (ref, _) in enumerate(pairs)]
    columns = [[p[i] for p in parts] for i in builtins.range(n)]
    return _pairs([_concat_shuffled.remote(_seed(base[len(pairs) + i]), *col)
                   for i, col in enumerate(columns)])


def _seed(value):
    return None if value is None else int(value)


def randomize_block_order(pairs: list, seed) -> list:
    order = np.random.default_rng(seed).permutation(len(pairs))
    return [pairs[i] for i in order]


# -- sort ------------------------------------------------------------------------------------

@zactor.remote
def _sample(block, keys: list, k: int):
    if block.num_rows == 0:
        return block.select(keys) if block.num_columns else block
    idx = np.linspace(0, block.num_rows - 1, min(k, block.num_rows)).astype(int)
    return block.select(keys).take(pa.array(idx))


@zactor.remote
def _scatter_sorted(block, keys: list, bounds):
    """The block's rows, sorted, cut by the first key into the ranges [bounds[i-1],
    bounds[i]) (rows of one first key stay together)."""
    width = 1 if bounds is None else len(bounds) + 1
    if block.num_rows:
        block = block.sort_by([(k, "ascending") for k in keys])
    if width == 1:
        return block
    if block.num_rows == 0:
        return tuple([block] * width)
    key = block.column(keys[0]).to_numpy(zero_copy_only=False)
    cut = [0, *np.searchsorted(key, bounds, side="left").tolist(), block.num_rows]
    return tuple(block.slice(a, b - a) for a, b in zip(cut[:-1], cut[1:], strict=True))


@zactor.remote(num_returns=2)
def _merge_sorted(keys, descending, *pieces):
    block = _block.concat(list(pieces))
    if block.num_rows:
        order = "descending" if descending else "ascending"
        block = block.sort_by([(k, order) for k in keys])
    return block, _block.metadata(block)


def sort(pairs: list, keys: list, descending: bool) -> list:
    """Sample the first key, cut its range into as many parts as there are blocks, send
    each row to its part, sort each part: the parts in order are the sorted dataset."""
    if not pairs:
        return []
    n = len(pairs)
    bounds = None
    if n > 1:
        samples = _block.concat(zactor.get([_sample.remote(r, keys, 20) for r, _ in pairs]))
        if samples.num_rows:
            col = np.sort(samples.column(keys[0]).to_numpy(zero_copy_only=False))
            bounds = np.unique(col[np.linspace(0, len(col) - 1, n + 1).astype(int)[1:-1]])
    width = 1 if bounds is None else len(bounds) + 1
    parts = [_scatter(_scatter_sorted, r, width, keys, bounds) for r, _ in pairs]
    columns = [[p[i] for p in parts] for i in builtins.range(width)]
    out = _pairs([_merge_sorted.remote(keys, descending, *col) for col in columns])
    return out[::-1] if descending else out


# -- groupby ---------------------------------------------------------------------------------

@zactor.remote
def _scatter_hash(block, keys: list, n: int):
    """The block's rows by the hash of their keys: a key's rows all go to one part. (The
    hash is pandas', which is the same in every process, unlike Python's.)"""
    import pandas as pd

    if n == 1:
        return block
    if block.num_rows == 0:
        return tuple([block] * n)
    hashes = pd.util.hash_pandas_object(block.select(keys).to_pandas(), index=False)
    owner = hashes.to_numpy() % np.uint64(n)
    return tuple(block.filter(pa.array(owner == i)) for i in builtins.range(n))


def hash_partition(pairs: list, keys: list, n: int) -> list[list]:
    """For each of ``n`` partitions, the refs of its pieces (rows of one key together)."""
    parts = [_scatter(_scatter_hash, r, n, keys, n) for r, _ in pairs]
    return [[p[i] for p in parts] for i in builtins.range(n)]


#: Partial groups (rows of per-block aggregates) finished in one task, at most; past that
#: they are hash-partitioned first.
_ONE_TASK_GROUPS = 2_000_000


@zactor.remote(num_returns=2)
def _partial_groups(block, keys, aggs):
    """The block's own aggregates per key (count, sum, min, max, and for mean and std the
    count, mean and M2 they merge from): the map-side combine."""
    if block.num_rows == 0:
        out = pa.table({})
        return out, _block.metadata(out)
    specs, names = [], []
    for kind, on, _ddof, _name in aggs:
        if kind == "count":
            specs.append(([], "count_all"))
            names.append("count_all")
        elif kind in ("sum", "min", "max"):
            specs.append((on, kind))
            names.append(f"{on}_{kind}")
        else:  # mean, std: count, mean, population variance -> M2
            specs += [(on, "count"), (on, "mean"), (on, "variance",
                                                    pc.VarianceOptions(ddof=0))]
            names += [f"{on}_count", f"{on}_mean", f"{on}_variance"]
    out = block.group_by(keys).aggregate(specs)
    return out, _block.metadata(out)


@zactor.remote(num_returns=2)
def _final_groups(keys, aggs, *partials):
    """Per-key results from the partials of every block: exact merges (Chan et al. for the
    variance), sorted by key."""
    table = _block.concat([p for p in partials if p.num_rows])
    if table.num_rows == 0:
        return table, _block.metadata(table)
    df = table.to_pandas()
    grouped = df.groupby(keys, sort=True)
    out = grouped.size().reset_index()[keys]
    for kind, on, ddof, name in aggs:
        if kind == "count":
            out[name] = grouped["count_all"].sum().to_numpy()
        elif kind in ("sum", "min", "max"):
            out[name] = getattr(grouped[f"{on}_{kind}"], kind)().to_numpy()
        else:
            n = df[f"{on}_count"].astype(float)
            mean = df[f"{on}_mean"]
            m2 = df[f"{on}_variance"] * n
            frame = df[keys].assign(_n=n, _s=mean * n, _m2=m2 + n * mean * mean)
            sums = frame.groupby(keys, sort=True)[["_n", "_s", "_m2"]].sum()
            total_n = sums["_n"].to_numpy()
            total_mean = np.divide(sums["_s"].to_numpy(), total_n,
                                   out=np.full_like(total_n, np.nan), where=total_n > 0)
            if kind == "mean":
                out[name] = total_mean
            else:
                total_m2 = sums["_m2"].to_numpy() - total_n * total_mean * total_mean
                dof = total_n - ddof
                out[name] = np.sqrt(np.divide(np.maximum(total_m2, 0), dof,
                                              out=np.full_like(dof, np.nan), where=dof > 0))
    result = pa.Table.from_pandas(out, preserve_index=False)
    return result, _block.metadata(result)


def groupby_aggregate(pairs: list, keys: list, aggs: list) -> list:
    """Aggregates per block first (tiny when keys repeat), then merged: one task for them
    all, or per hash partition of them when there are very many groups."""
    partials = _pairs([_partial_groups.remote(ref, keys, aggs) for ref, _ in pairs])
    partials = [p for p in partials if p[1]["rows"]]
    if not partials:
        return []
    if builtins.sum(m["rows"] for _, m in partials) <= _ONE_TASK_GROUPS:
        return _pairs([_final_groups.remote(keys, aggs, *[r for r, _ in partials])])
    n = max(1, min(len(partials), 16))
    out = [p for p in _pairs([_final_groups.remote(keys, aggs, *parts)
                              for parts in hash_partition(partials, keys, n)])
           if p[1]["rows"]]
    return sort(out, keys, False) if len(out) > 1 else out


def _groups(block, keys: list):
    """(key, rows) of each key of ``block``, in key order."""
    block = block.sort_by([(k, "ascending") for k in keys])
    key = block.select(keys).to_pylist()
    starts = [0] + [i for i in builtins.range(1, len(key)) if key[i] != key[i - 1]]
    for a, b in zip(starts, starts[1:] + [len(key)], strict=True):
        yield key[a], block.slice(a, b - a)


@zactor.remote(num_returns=2)
def _map_groups(keys, fn, batch_format, *pieces):
    from zactor.data._transforms import batches

    block = _block.concat(list(pieces))
    if block.num_rows == 0:
        return block, _block.metadata(block)
    run = batches(fn, None, batch_format, (), {}, "map_groups")
    out = []
    for _key, group in _groups(block, keys):
        out.extend(run(group))
    result = _block.concat(out)
    return result, _block.metadata(result)


def map_groups(pairs: list, keys: list, fn, batch_format: str) -> list:
    n = max(1, min(len(pairs), 16))
    return _pairs([_map_groups.remote(keys, fn, batch_format, *p)
                   for p in hash_partition(pairs, keys, n)])


# -- splitting and zipping ---------------------------------------------------------------------

def take_rows(pair: tuple, n: int) -> tuple:
    ref, meta = pair
    if meta["rows"] == n:
        return pair
    out = zactor.get(_slice_ranges.remote(ref, [(0, n)]))
    return zactor.put(out), _block.metadata(out)


def split_at(pairs: list, n: int) -> tuple[list, list]:
    """The first ``n`` rows and the rest."""
    first, rest, seen = [], [], 0
    for ref, meta in pairs:
        rows = meta["rows"]
        if seen + rows <= n:
            first.append((ref, meta))
        elif seen >= n:
            rest.append((ref, meta))
        else:
            cut = n - seen
            a, b = _scatter(_slice_ranges, ref, 2, [(0, cut), (cut, rows)])
            first.append((a, {**meta, "rows": cut}))
            rest.append((b, {**meta, "rows": rows - cut}))
        seen += rows
    return first, rest


def align(pairs: list, rows: list[int]) -> list:
    """``pairs``' rows cut into blocks of ``rows`` rows each, in order."""
    out, edges, start = [], [], 0
    for r in rows:
        edges.append((start, start + r))
        start += r
    offsets, start = [], 0
    for _, meta in pairs:
        offsets.append((start, start + meta["rows"]))
        start += meta["rows"]
    for a, b in edges:
        pieces = []
        for (ref, _), (lo, hi) in zip(pairs, offsets, strict=True):
            x, y = max(a, lo), min(b, hi)
            if x < y:
                pieces.append(_slice_ranges.remote(ref, [(x - lo, y - lo)]))
        out.append(pieces)
    return out


@zactor.remote(num_returns=2)
def _zip_block(left, *right_parts):
    right = _block.concat(list(right_parts))
    names = set(left.column_names)
    for name in right.column_names:
        column = right.column(name)
        left = left.append_column(f"{name}_1" if name in names else name, column)
    return left, _block.metadata(left)


def zip_blocks(pairs: list, aligned: list) -> list:
    return _pairs([_zip_block.remote(ref, *parts)
                   for (ref, _), parts in zip(pairs, aligned, strict=True)])


@zactor.remote(num_returns=2)
def _group_aggregate(keys, aggs, *pieces):
    block = _block.concat(list(pieces))
    if block.num_rows == 0:
        return block, _block.metadata(block)
    rows = []
    for key, group in _groups(block, keys):
        row = dict(key)
        for agg in aggs:
            row[agg.name] = agg.finalize(agg.accumulate_block(agg.init(key), group))
        rows.append(row)
    out = _block.from_rows(rows)
    return out, _block.metadata(out)


def group_aggregate(pairs: list, keys: list, aggs: list) -> list:
    n = max(1, min(len(pairs), 16))
    out = [p for p in _pairs([_group_aggregate.remote(keys, aggs, *p)
                              for p in hash_partition(pairs, keys, n)]) if p[1]["rows"]]
    return sort(out, keys, False) if len(out) > 1 else out
