"""Creating datasets: from values in this process (split into blocks and put in the object
store) or from files (one read task per file, run where the dataset executes), with
pyarrow's readers for Parquet, CSV and JSON."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

import zactor
from zactor.data import _block, _paths
from zactor.data._ops import ReadTask, Source


def _default_blocks(rows: int) -> int:
    cpus = int(zactor.cluster_resources().get("CPU", 1)) if zactor.is_initialized() else 2
    return max(1, min(rows, max(2 * cpus, math.ceil(rows / 1_000_000))))


def _dataset(source: Source):
    from zactor.data.dataset import Dataset

    return Dataset([source])


def _from_blocks(blocks: list[pa.Table], name: str):
    pairs = [(zactor.put(b), _block.metadata(b)) for b in blocks]
    return _dataset(Source(name, blocks=pairs))


def _split_rows(n: int, parts: int) -> list[tuple[int, int]]:
    parts = max(1, min(parts, n)) if n else 1
    edges = np.linspace(0, n, parts + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


class _RangeRead:
    def __init__(self, start: int, stop: int, shape: tuple | None) -> None:
        self.start, self.stop, self.shape = start, stop, shape

    def __call__(self) -> list:
        ids = np.arange(self.start, self.stop, dtype=np.int64)
        if self.shape is None:
            return [pa.table({"id": ids})]
        data = np.broadcast_to(ids.reshape((-1,) + (1,) * len(self.shape)),
                               (len(ids),) + self.shape)
        return [_block.from_batch({"data": data})]


def range(n: int, *, override_num_blocks: int | None = None, parallelism: int = -1):  # noqa: A001
    """A dataset of ``n`` rows with an ``id`` column, 0 to n-1.

    Example::

        zactor.data.range(1000).map_batches(lambda b: {"double": b["id"] * 2})
    """
    return _range(n, None, override_num_blocks or (parallelism if parallelism > 0 else None))


def range_tensor(n: int, *, shape: tuple = (1,), override_num_blocks: int | None = None):
    """``n`` rows of a ``data`` column holding arrays of ``shape`` filled with the row id."""
    return _range(n, tuple(shape), override_num_blocks)


def _range(n: int, shape, blocks):
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"range() needs a non-negative integer, got {n!r}")
    tasks = [ReadTask(_RangeRead(a, b, shape), rows=b - a, name="ReadRange")
             for a, b in _split_rows(n, blocks or _default_blocks(n))]
    return _dataset(Source("ReadRange", tasks=tasks))


def from_items(items: list, *, override_num_blocks: int | None = None):
    """A dataset of ``items``: dicts become rows, other values an ``item`` column."""
    items = list(items)
    blocks = [_block.from_rows(items[a:b])
              for a, b in _split_rows(len(items), override_num_blocks or
                                      _default_blocks(len(items)))]
    return _from_blocks(blocks, "FromItems")


def from_numpy(ndarrays: Any):
    """A ``data`` column from a numpy array (or one block per array of a list)."""
    arrays = ndarrays if isinstance(ndarrays, list) else [ndarrays]
    return _from_blocks([_block.from_batch({"data": np.asarray(a)}) for a in arrays],
                        "FromNumpy")


def from_pandas(dfs: Any):
    """A dataset of a DataFrame (or one block per DataFrame of a list)."""
    frames = dfs if isinstance(dfs, list) else [dfs]
    return _from_blocks([pa.Table.from_pandas(df, preserve_index=False) for df in frames],
                        "FromPandas")


def from_arrow(tables: Any):
    tables = tables if isinstance(tables, list) else [tables]
    return _from_blocks(list(tables), "FromArrow")


class _FileRead:
    """Reads one file, in a task, with the reader for its format."""

    def __init__(self, fs, path: str, fmt: str, options: dict) -> None:
        self.fs, self.path, self.fmt, self.options = fs, path, fmt, options

    def __call__(self) -> list:
        try:
            return [_READERS[self.fmt](self.fs, self.path, self.options)]
        except (pa.ArrowInvalid, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"cannot read {self.path} as {self.fmt}: {exc}") from None


def _parquet(fs, path, options):
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as f:
        return pq.read_table(f, columns=options.get("columns"), filters=options.get("filter"))


def _csv(fs, path, options):
    from pyarrow import csv

    with fs.open(path, "rb") as f:
        return csv.read_csv(f, **options)


def _json(fs, path, options):
    from pyarrow import json

    with fs.open(path, "rb") as f:
        return json.read_json(f, **options)


def _text(fs, path, options):
    with fs.open(path, "rb") as f:
        lines = f.read().decode(options.get("encoding", "utf-8")).splitlines()
    if options.get("drop_empty_lines", True):
        lines = [line for line in lines if line.strip()]
    return pa.table({"text": pa.array(lines, type=pa.string())})


def _numpy(fs, path, options):
    with fs.open(path, "rb") as f:
        return _block.from_batch({"data": np.load(f, allow_pickle=False)})


def _binary(fs, path, options):
    with fs.open(path, "rb") as f:
        data = f.read()
    columns = {"bytes": pa.array([data], type=pa.binary())}
    if options.get("include_paths"):
        columns["path"] = pa.array([path])
    return pa.table(columns)


_READERS = {"parquet": _parquet, "csv": _csv, "json": _json, "text": _text,
            "numpy": _numpy, "binary": _binary}
_SUFFIXES = {"parquet": (".parquet",), "csv": (".csv",), "json": (".json", ".jsonl"),
             "numpy": (".npy",)}


def _read_files(paths, fmt: str, options: dict, name: str, include_paths: bool = False):
    files = _paths.expand(paths, _SUFFIXES.get(fmt))
    tasks = []
    for fs, path in files:
        read = _FileRead(fs, path, fmt, options)
        tasks.append(ReadTask(_with_path(read, path) if include_paths and fmt != "binary"
                              else read, name=path))
    return _dataset(Source(name, tasks=tasks))


class _with_path:  # noqa: N801 - a callable standing in for a function
    def __init__(self, read, path: str) -> None:
        self.read, self.path = read, path

    def __call__(self) -> list:
        out = []
        for block in self.read():
            out.append(block.append_column("path", pa.array([self.path] * block.num_rows)))
        return out


def read_parquet(paths, *, columns: list[str] | None = None, filter: Any = None,  # noqa: A002
                 override_num_blocks: int | None = None):
    """Parquet files (a file, a directory, a glob): only ``columns`` are read, and
    ``filter`` (a ``pyarrow.dataset`` expression) is pushed down to the reader. One block
    per file, unless ``override_num_blocks`` asks for another number (a repartition)."""
    ds = _read_files(paths, "parquet", {"columns": columns, "filter": filter}, "ReadParquet")
    return ds.repartition(override_num_blocks) if override_num_blocks else ds


def read_csv(paths, *, include_paths: bool = False, **arrow_csv_args):
    return _read_files(paths, "csv", arrow_csv_args, "ReadCSV", include_paths)


def read_json(paths, *, include_paths: bool = False, **arrow_json_args):
    """JSON lines files: one row per line."""
    return _read_files(paths, "json", arrow_json_args, "ReadJSON", include_paths)


def read_text(paths, *, encoding: str = "utf-8", drop_empty_lines: bool = True,
              include_paths: bool = False):
    return _read_files(paths, "text", {"encoding": encoding,
                                       "drop_empty_lines": drop_empty_lines},
                       "ReadText", include_paths)


def read_numpy(paths, *, include_paths: bool = False):
    return _read_files(paths, "numpy", {}, "ReadNumpy", include_paths)


def read_binary_files(paths, *, include_paths: bool = False):
    return _read_files(paths, "binary", {"include_paths": include_paths}, "ReadBinary")
