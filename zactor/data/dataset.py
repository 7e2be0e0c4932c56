"""``zactor.data.Dataset``: Ray Data's Dataset, lazy, streamed over Arrow blocks."""

from __future__ import annotations

import builtins
import inspect
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

import zactor
from zactor.data import _all_to_all, _block, _transforms
from zactor.data._executor import Stats, execute
from zactor.data._ops import AllToAll, Combine, Limit, Map, Source
from zactor.data.iterator import DataIterator, _DatasetIterator, streaming_split


class ActorPoolStrategy:
    """Run a callable class in a pool of ``size`` actors, or between ``min_size`` and
    ``max_size`` (Ray's ``compute=`` argument)."""

    def __init__(self, *, size: int | None = None, min_size: int | None = None,
                 max_size: int | None = None) -> None:
        if size is not None:
            min_size = max_size = size
        self.min_size = min_size or 1
        self.max_size = max_size or self.min_size
        if self.min_size < 1 or self.max_size < self.min_size:
            raise ValueError(f"ActorPoolStrategy: need 1 <= min_size <= max_size, got "
                             f"{self.min_size}, {self.max_size}")


class TaskPoolStrategy:
    """Run a function as tasks (the default)."""

    def __init__(self, size: int | None = None) -> None:
        self.size = size


class Dataset:
    """A distributed dataset: a source and the transforms on it, run when consumed.

    Example::

        ds = zactor.data.read_parquet("data/").map_batches(lambda b: {"x": b["x"] * 2})
        ds.write_parquet("out/")
    """

    def __init__(self, plan: list) -> None:
        self._plan = plan
        self._stats = Stats()

    def _with(self, op) -> Dataset:
        return Dataset(self._plan + [op])

    def __repr__(self) -> str:
        names = " -> ".join(getattr(op, "name", type(op).__name__) for op in self._plan)
        return f"Dataset({names})"

    # -- transforms ----------------------------------------------------------------------

    def map(self, fn: Callable, *, fn_args: tuple = (), fn_kwargs: dict | None = None,
            num_cpus: float | None = None, num_gpus: float | None = None,
            **ray_remote_args) -> Dataset:
        """Apply ``fn`` to each row (a dict), which returns a row."""
        name = f"Map({_name(fn)})"
        return self._with(Map(name, _transforms.rows(fn, "map", fn_args, fn_kwargs or {},
                                                     name), num_cpus=num_cpus,
                              num_gpus=num_gpus, extra=ray_remote_args))

    def flat_map(self, fn: Callable, *, fn_args: tuple = (), fn_kwargs: dict | None = None,
                 num_cpus: float | None = None, **ray_remote_args) -> Dataset:
        """Apply ``fn`` to each row; it returns a list of rows."""
        name = f"FlatMap({_name(fn)})"
        return self._with(Map(name, _transforms.rows(fn, "flat_map", fn_args,
                                                     fn_kwargs or {}, name),
                              num_cpus=num_cpus, extra=ray_remote_args))

    def filter(self, fn: Callable | None = None, *, expr: str | None = None,
               num_cpus: float | None = None, **ray_remote_args) -> Dataset:
        """Keep the rows ``fn`` returns True for."""
        if expr is not None:
            raise NotImplementedError("filter(expr=...) is not supported: pass a function")
        name = f"Filter({_name(fn)})"
        return self._with(Map(name, _transforms.rows(fn, "filter", (), {}, name),
                              num_cpus=num_cpus, extra=ray_remote_args))

    def map_batches(self, fn: Any, *, batch_size: int | None | str = "default",
                    compute: Any = None, batch_format: str | None = "default",
                    zero_copy_batch: bool = False, fn_args: tuple = (),
                    fn_kwargs: dict | None = None, fn_constructor_args: tuple = (),
                    fn_constructor_kwargs: dict | None = None, num_cpus: float | None = None,
                    num_gpus: float | None = None, concurrency: Any = None,
                    **ray_remote_args) -> Dataset:
        """Apply ``fn`` to batches of rows (``batch_format``: a dict of numpy arrays by
        default, or "pandas", "pyarrow"). ``fn`` is a function (run as tasks) or a callable
        class, run in a pool of actors: ``concurrency=n`` of them, ``(min, max)``, or
        ``compute=ActorPoolStrategy(...)``; each builds one instance with
        ``fn_constructor_args``/``fn_constructor_kwargs`` and keeps it."""
        fmt = _block.check_format(batch_format)
        size = 1024 if batch_size == "default" else batch_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or
                                 size < 1):
            raise ValueError(f"batch_size must be a positive integer or None, got "
                             f"{batch_size!r}")
        name = f"MapBatches({_name(fn)})"
        kwargs = fn_kwargs or {}
        if inspect.isclass(fn):
            pool = _pool(concurrency, compute, name)
            make = _Construct(fn, fn_constructor_args, fn_constructor_kwargs or {}, size, fmt,
                              fn_args, kwargs, name)
            return self._with(Map(name, make_fn=make, pool=pool, num_cpus=num_cpus,
                                  num_gpus=num_gpus, extra=ray_remote_args))
        if not callable(fn):
            raise TypeError(f"map_batches needs a function or a callable class, got {fn!r}")
        if isinstance(compute, ActorPoolStrategy) or (concurrency is not None and
                                                      not isinstance(concurrency, int)):
            raise ValueError(f"{name}: an actor pool is for callable classes; a function "
                             "runs as tasks")
        return self._with(Map(name, _transforms.batches(fn, size, fmt, fn_args, kwargs, name),
                              num_cpus=num_cpus, num_gpus=num_gpus, extra=ray_remote_args))

    def add_column(self, col: str, fn: Callable, *, batch_format: str = "pandas",
                   **ray_remote_args) -> Dataset:
        """A column ``col`` made by ``fn`` from each batch (a DataFrame by default)."""
        fmt = _block.check_format(batch_format)
        name = f"AddColumn({col})"
        return self._with(Map(name, _transforms.add_column(col, fn, fmt, name),
                              extra=ray_remote_args))

    def drop_columns(self, cols: list[str], **ray_remote_args) -> Dataset:
        return self._with(Map("DropColumns", _transforms.columns("drop", _list(cols),
                                                                  "drop_columns"),
                              extra=ray_remote_args))

    def select_columns(self, cols: list[str], **ray_remote_args) -> Dataset:
        return self._with(Map("SelectColumns", _transforms.columns("select", _list(cols),
                                                                    "select_columns"),
                              extra=ray_remote_args))

    def rename_columns(self, names: dict[str, str], **ray_remote_args) -> Dataset:
        if not isinstance(names, dict):
            raise TypeError("rename_columns takes a dict of old name to new name")
        return self._with(Map("RenameColumns", _transforms.columns("rename", names,
                                                                    "rename_columns"),
                              extra=ray_remote_args))

    def limit(self, limit: int) -> Dataset:
        return self._with(Limit(int(limit)))

    def repartition(self, num_blocks: int, *, shuffle: bool = False) -> Dataset:
        if shuffle:
            return self._with(AllToAll("Repartition", lambda pairs: _all_to_all.random_shuffle(
                pairs, None, num_blocks)))
        return self._with(AllToAll("Repartition",
                                   lambda pairs: _all_to_all.repartition(pairs, num_blocks)))

    def random_shuffle(self, *, seed: int | None = None, num_blocks: int | None = None
                       ) -> Dataset:
        return self._with(AllToAll("RandomShuffle", lambda pairs: _all_to_all.random_shuffle(
            pairs, seed, num_blocks)))

    def randomize_block_order(self, *, seed: int | None = None) -> Dataset:
        return self._with(AllToAll("RandomizeBlockOrder",
                                   lambda pairs: _all_to_all.randomize_block_order(pairs,
                                                                                  seed)))

    def sort(self, key: str | list[str], descending: bool = False) -> Dataset:
        keys = _list(key)
        return self._with(AllToAll("Sort", lambda pairs: _all_to_all.sort(
            _checked(pairs, keys, "sort"), keys, descending)))

    def groupby(self, key: str | list[str]) -> GroupedData:
        return GroupedData(self, _list(key))

    def union(self, *others: Dataset) -> Dataset:
        return self._with(Combine("Union", [o._plan for o in others]))

    def zip(self, other: Dataset) -> Dataset:
        """Each row of this dataset with the row of ``other`` at the same position (columns
        of both; a name in both gets ``_1`` on ``other``'s side). Same row counts needed."""
        def run(pairs: list) -> list:
            theirs = list(other._execute())
            ours_rows = [m["rows"] for _, m in pairs]
            if builtins.sum(ours_rows) != builtins.sum(m["rows"] for _, m in theirs):
                raise ValueError("zip: the datasets have different numbers of rows")
            aligned = _all_to_all.align(theirs, ours_rows)
            return _all_to_all.zip_blocks(pairs, aligned)
        return self._with(AllToAll("Zip", run))

    def unique(self, column: str) -> list:
        """The distinct values of ``column``."""
        from zactor.data.aggregate import Unique

        return self.aggregate(Unique(column))[f"unique({column})"]

    def aggregate(self, *aggs) -> dict:
        """Aggregations (zactor.data.aggregate) over the whole dataset: {name: value}."""
        if not aggs:
            raise ValueError("aggregate() needs at least one aggregation")
        parts = zactor.get([_accumulate.remote(ref, list(aggs)) for ref, _ in self._execute()])
        accs = [a.init(None) for a in aggs]
        for part in parts:
            accs = [a.merge(acc, p) for a, acc, p in zip(aggs, accs, part, strict=True)]
        return {a.name: a.finalize(acc) for a, acc in zip(aggs, accs, strict=True)}

    def split(self, n: int, *, equal: bool = False, locality_hints: Any = None
              ) -> list[MaterializedDataset]:
        """``n`` datasets of this one's blocks (``equal``: of the same row count, the few
        rows left over dropped, as in Ray)."""
        if n < 1:
            raise ValueError(f"split needs n >= 1, got {n}")
        pairs = list(self._execute())
        if equal:
            total = builtins.sum(m["rows"] for _, m in pairs)
            each = total // n
            pairs = _all_to_all.repartition(pairs, n) if total else pairs
            pairs = [_all_to_all.take_rows(p, each) for p in pairs]
            return [MaterializedDataset([Source("Split", blocks=[p])]) for p in pairs]
        groups: list[list] = [[] for _ in builtins.range(n)]
        for i, pair in enumerate(pairs):
            groups[i * n // max(1, len(pairs))].append(pair)
        return [MaterializedDataset([Source("Split", blocks=g)]) for g in groups]

    def streaming_split(self, n: int, *, equal: bool = False, locality_hints: Any = None
                        ) -> list[DataIterator]:
        """``n`` iterators that share one streamed execution of the dataset, for ``n``
        consumers (the workers of a trainer), each handed blocks as it asks; every pass is
        a new execution. They pickle, so each can go to another process.

        Example::

            a, b = ds.streaming_split(2)
            rows = zactor.get([consume.remote(a), consume.remote(b)])
        """
        return streaming_split(self, n, equal)

    def train_test_split(self, test_size: float | int, *, shuffle: bool = False,
                         seed: int | None = None) -> tuple[MaterializedDataset,
                                                           MaterializedDataset]:
        """The first rows for training, the last ``test_size`` (a share or a count) for
        testing, after an optional shuffle."""
        ds = self.random_shuffle(seed=seed) if shuffle else self
        pairs = list(ds._execute())
        total = builtins.sum(m["rows"] for _, m in pairs)
        if isinstance(test_size, float):
            if not 0 < test_size < 1:
                raise ValueError(f"test_size must be in (0, 1) or a row count, got "
                                 f"{test_size}")
            test = int(round(total * test_size))
        else:
            test = int(test_size)
        if not 0 <= test <= total:
            raise ValueError(f"test_size {test_size} is larger than the dataset ({total} "
                             "rows)")
        train, rest = _all_to_all.split_at(pairs, total - test)
        return (MaterializedDataset([Source("Train", blocks=train)]),
                MaterializedDataset([Source("Test", blocks=rest)]))

    def materialize(self) -> MaterializedDataset:
        """Run the plan now; the result holds its blocks in the object store."""
        pairs = list(self._execute())
        return MaterializedDataset([Source("Materialized", blocks=pairs)], self._stats)

    # -- running -------------------------------------------------------------------------

    def _execute(self) -> Iterator[tuple]:
        self._stats = Stats()  # stats() tells of the last execution
        return execute(self._plan, self._stats)

    def iter_internal_ref_bundles(self) -> Iterator[tuple]:
        return self._execute()

    # -- consuming -----------------------------------------------------------------------

    def iterator(self) -> DataIterator:
        """A ``DataIterator`` over this dataset (each pass runs it again)."""
        return _DatasetIterator(self)

    def iter_batches(self, *, batch_size: int | None = 256, batch_format: str = "default",
                     prefetch_batches: int = 1, drop_last: bool = False,
                     local_shuffle_buffer_size: int | None = None,
                     local_shuffle_seed: int | None = None) -> Iterator[Any]:
        """Batches of ``batch_size`` rows across block boundaries (the last may be short
        unless ``drop_last``), as dicts of numpy arrays, DataFrames or Arrow tables."""
        return self.iterator().iter_batches(
            batch_size=batch_size, batch_format=batch_format,
            prefetch_batches=prefetch_batches, drop_last=drop_last,
            local_shuffle_buffer_size=local_shuffle_buffer_size,
            local_shuffle_seed=local_shuffle_seed)

    def iter_rows(self) -> Iterator[dict]:
        return self.iterator().iter_rows()

    def iter_torch_batches(self, **kwargs) -> Iterator[dict]:
        """Batches as dicts of ``torch.Tensor`` (``DataIterator.iter_torch_batches``)."""
        return self.iterator().iter_torch_batches(**kwargs)

    def take(self, limit: int = 20) -> list[dict]:
        return list(self.limit(limit).iter_rows())

    def take_all(self, limit: int | None = None) -> list[dict]:
        rows = list(self.iter_rows())
        if limit is not None and len(rows) > limit:
            raise ValueError(f"The dataset has more than the given limit of {limit} rows")
        return rows

    def take_batch(self, batch_size: int = 20, *, batch_format: str = "default") -> Any:
        for batch in self.limit(batch_size).iter_batches(batch_size=batch_size,
                                                         batch_format=batch_format):
            return batch
        raise ValueError("The dataset is empty")

    def show(self, limit: int = 20) -> None:
        for row in self.take(limit):
            print(row)

    def count(self) -> int:
        return builtins.sum(meta["rows"] for _ref, meta in self._execute())

    def schema(self) -> pa.Schema | None:
        # the first block tells, unless an operator needs the whole input anyway
        ds = self if _all_to_all_in(self) else self.limit(1)
        for _ref, meta in ds._execute():
            if meta["schema"] is not None and meta["schema"].names:
                return meta["schema"]
        return None

    def columns(self) -> list[str]:
        schema = self.schema()
        return list(schema.names) if schema is not None else []

    def num_blocks(self) -> int:
        return builtins.sum(1 for _ in self._execute())

    def to_pandas(self, limit: int | None = None):
        import pandas as pd

        ds = self if limit is None else self.limit(limit)
        blocks = list(ds.iterator()._blocks())
        table = _block.concat(blocks)
        return table.to_pandas() if table.num_columns else pd.DataFrame()

    def to_arrow_refs(self) -> list:
        return [ref for ref, _ in self._execute()]

    def to_numpy_refs(self, *, column: str | None = None) -> list:
        return [_to_numpy.remote(ref, column) for ref, _ in self._execute()]

    def stats(self) -> str:
        return self._stats.text()

    # -- aggregations over the whole dataset -------------------------------------------------

    def _global(self, kind: str, on: str | list[str] | None, ddof: int = 1) -> Any:
        cols = _list(on) if on is not None else None
        parts = zactor.get([_partial.remote(ref, kind, cols) for ref, _ in self._execute()])
        parts = [p for p in parts if p is not None]
        if not parts:
            return None
        out = {}
        for name in parts[0]:
            values = [p[name] for p in parts if p[name] is not None]
            out[name] = _combine(kind, values, ddof)
        return out[cols[0]] if cols is not None and len(cols) == 1 else out

    def sum(self, on: str | list[str] | None = None) -> Any:
        return self._global("sum", on)

    def min(self, on: str | list[str] | None = None) -> Any:
        return self._global("min", on)

    def max(self, on: str | list[str] | None = None) -> Any:
        return self._global("max", on)

    def mean(self, on: str | list[str] | None = None) -> Any:
        return self._global("mean", on)

    def std(self, on: str | list[str] | None = None, ddof: int = 1) -> Any:
        return self._global("std", on, ddof)

    # -- writing -------------------------------------------------------------------------

    def write_parquet(self, path: str, **arrow_parquet_args) -> None:
        self._write(path, "parquet", arrow_parquet_args)

    def write_csv(self, path: str, **arrow_csv_args) -> None:
        self._write(path, "csv", arrow_csv_args)

    def write_json(self, path: str, **pandas_json_args) -> None:
        self._write(path, "json", pandas_json_args)

    def _write(self, path: str, fmt: str, options: dict) -> None:
        import fsspec

        fs, root = fsspec.core.url_to_fs(path)
        fs.makedirs(root, exist_ok=True)
        writer = _Writer(path, fmt, options, uuid.uuid4().hex)
        written = Dataset(self._plan + [Map(f"Write{fmt.capitalize()}", writer)])
        for _ in written._execute():
            pass
        self._stats = written._stats  # stats() tells of the write, as in Ray


class MaterializedDataset(Dataset):
    """A dataset whose blocks are in the object store (``materialize()``)."""

    def __init__(self, plan: list, stats: Stats | None = None) -> None:
        super().__init__(plan)
        if stats is not None:
            self._stats = stats


class GroupedData:
    """``Dataset.groupby(key)``: aggregations per key, and ``map_groups``."""

    def __init__(self, ds: Dataset, keys: list[str]) -> None:
        self._ds = ds
        self._keys = keys

    def _agg(self, kind: str, on: str | list[str] | None, ddof: int = 1) -> Dataset:
        cols = _list(on) if on is not None else []
        if kind == "count":
            aggs = [("count", None, 0, "count()")]
        else:
            if not cols:
                raise ValueError(f"groupby().{kind}() needs the column(s) to aggregate")
            aggs = [(kind, c, ddof, f"{kind}({c})") for c in cols]
        keys = self._keys
        return self._ds._with(AllToAll(f"{kind.capitalize()}", lambda pairs:
                                       _all_to_all.groupby_aggregate(
                                           _checked(pairs, keys + cols, "groupby"), keys,
                                           aggs)))

    def count(self) -> Dataset:
        return self._agg("count", None)

    def sum(self, on: str | list[str] | None = None) -> Dataset:
        return self._agg("sum", on)

    def min(self, on: str | list[str] | None = None) -> Dataset:
        return self._agg("min", on)

    def max(self, on: str | list[str] | None = None) -> Dataset:
        return self._agg("max", on)

    def mean(self, on: str | list[str] | None = None) -> Dataset:
        return self._agg("mean", on)

    def std(self, on: str | list[str] | None = None, ddof: int = 1) -> Dataset:
        return self._agg("std", on, ddof)

    def aggregate(self, *aggs) -> Dataset:
        """Aggregations (zactor.data.aggregate) per key: a row per key."""
        if not aggs:
            raise ValueError("aggregate() needs at least one aggregation")
        keys = self._keys
        return self._ds._with(AllToAll("Aggregate", lambda pairs: _all_to_all.group_aggregate(
            _checked(pairs, keys, "groupby"), keys, list(aggs))))

    def map_groups(self, fn: Callable, *, batch_format: str = "default", **_kw) -> Dataset:
        fmt = _block.check_format(batch_format)
        keys = self._keys
        return self._ds._with(AllToAll("MapGroups", lambda pairs: _all_to_all.map_groups(
            _checked(pairs, keys, "groupby"), keys, fn, fmt)))


# -- helpers ----------------------------------------------------------------------------------


@zactor.remote
def _accumulate(block, aggs):
    return [a.accumulate_block(a.init(None), block) for a in aggs]

class _Construct:
    """Builds a callable class's instance in its actor, and the block transform on it."""

    def __init__(self, cls, args, kwargs, size, fmt, fn_args, fn_kwargs, name) -> None:
        self.cls, self.args, self.kwargs = cls, args, kwargs
        self.size, self.fmt, self.fn_args, self.fn_kwargs = size, fmt, fn_args, fn_kwargs
        self.name = name

    def __call__(self):
        instance = self.cls(*self.args, **self.kwargs)
        return _transforms.batches(instance, self.size, self.fmt, self.fn_args,
                                   self.fn_kwargs, self.name)


class _Writer:
    """Writes each block it is given to a file of its own under ``path``."""

    def __init__(self, path: str, fmt: str, options: dict, prefix: str,
                 task: int = 0) -> None:
        self.path, self.fmt, self.options, self.prefix = path, fmt, options, prefix
        self.task, self.written = task, 0

    def at(self, task: int) -> _Writer:
        """The writer for the ``task``-th block of the stream: file names follow the
        dataset's order, as Ray's do (``{write id}_{task:06}_{block:06}``)."""
        return _Writer(self.path, self.fmt, self.options, self.prefix, task)

    def __call__(self, block: pa.Table) -> list:
        import fsspec

        if block.num_rows == 0:
            return [block.slice(0, 0)]
        fs, root = fsspec.core.url_to_fs(self.path)
        name = f"{self.prefix}_{self.task:06d}_{self.written:06d}.{self.fmt}"
        self.written += 1
        with fs.open(os.path.join(root, name), "wb") as f:
            if self.fmt == "parquet":
                import pyarrow.parquet as pq

                pq.write_table(block, f, **self.options)
            elif self.fmt == "csv":
                from pyarrow import csv

                csv.write_csv(block, f, **self.options)
            else:
                f.write(block.to_pandas().to_json(orient="records", lines=True,
                                                  **self.options).encode())
        return [block.slice(0, 0)]  # what was written does not stay in the object store


def _pool(concurrency: Any, compute: Any, name: str) -> tuple[int, int]:
    if isinstance(compute, ActorPoolStrategy):
        return compute.min_size, compute.max_size
    if isinstance(concurrency, int) and not isinstance(concurrency, bool) and concurrency > 0:
        return concurrency, concurrency
    if isinstance(concurrency, tuple) and len(concurrency) == 2:
        lo, hi = concurrency
        if 1 <= lo <= hi:
            return int(lo), int(hi)
    raise ValueError(f"{name}: ``concurrency`` must be specified when using a callable "
                     "class: an int (a pool of that many actors) or (min, max)")


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _list(value: Any) -> list:
    return [value] if isinstance(value, str) else list(value)


def _checked(pairs: list, cols: list, what: str) -> list:
    for _ref, meta in pairs:
        schema = meta["schema"]
        if schema is not None and schema.names:
            missing = [c for c in cols if c not in schema.names]
            if missing:
                raise ValueError(f"{what}: column(s) {missing} do not exist; the dataset has "
                                 f"{list(schema.names)}")
            break
    return pairs


def _all_to_all_in(ds: Dataset) -> bool:
    return any(isinstance(op, AllToAll) for op in ds._plan)


@zactor.remote
def _to_numpy(block, column):
    if column is not None:
        return _block.to_batch(block.select([column]), "numpy")[column]
    return _block.to_batch(block, "numpy")


@zactor.remote
def _partial(block, kind: str, cols):
    import pyarrow.compute as pc

    if block.num_rows == 0:
        return None
    cols = cols or [c for c in block.column_names
                    if pa.types.is_integer(block.schema.field(c).type) or
                    pa.types.is_floating(block.schema.field(c).type)]
    out = {}
    for c in cols:
        if c not in block.column_names:
            raise ValueError(f"{kind}: column {c!r} does not exist; the dataset has "
                             f"{block.column_names}")
        col = block.column(c)
        n = pc.count(col).as_py()
        if kind in ("mean", "std"):
            s = pc.sum(col).as_py()
            mean = s / n if n else None
            m2 = float(pc.sum(pc.power(pc.subtract(col, mean), 2)).as_py()) if n else 0.0
            out[c] = (n, mean, m2)
        elif kind == "sum":
            out[c] = pc.sum(col).as_py()
        elif kind == "min":
            out[c] = pc.min(col).as_py()
        else:
            out[c] = pc.max(col).as_py()
    return out


def _combine(kind: str, values: list, ddof: int) -> Any:
    if not values:
        return None
    if kind == "sum":
        return builtins.sum(values)
    if kind == "min":
        return builtins.min(values)
    if kind == "max":
        return builtins.max(values)
    # (count, mean, M2) per block, merged exactly (Chan et al.'s parallel variance)
    n, mean, m2 = 0, 0.0, 0.0
    for nb, mb, m2b in values:
        if not nb:
            continue
        delta = mb - mean
        total = n + nb
        mean += delta * nb / total
        m2 += m2b + delta * delta * n * nb / total
        n = total
    if kind == "mean":
        return mean if n else None
    return float(np.sqrt(m2 / (n - ddof))) if n - ddof > 0 else None
