"""Creating datasets: from values in this process (split into blocks and put in the object
store) or from files (one read task per file, run where the dataset executes), with
pyarrow's readers for Parquet, CSV and JSON."""

from __future__ import annotations

import builtins
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
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    columns, where, groups = options.get("columns"), options.get("filter"), options.get("groups")
    with fs.open(path, "rb") as f:
        if groups is None:
            return pq.read_table(f, columns=columns, filters=where)
        # One fragment per row group: a fragment of several returns them out of order
        # (pyarrow 26). Each reads only the columns asked for, and is skipped when its
        # statistics rule the filter out.
        fmt = pads.ParquetFileFormat()
        parts = [fmt.make_fragment(f, row_groups=[g]).to_table(columns=columns, filter=where)
                 for g in groups]
        if not parts:
            return fmt.make_fragment(f, row_groups=[]).to_table(columns=columns)
        return _block.concat(parts)


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


def _read_files(paths, fmt: str, options: dict, name: str, include_paths: bool = False,
                override_num_blocks: int | None = None):
    """A read task per file; ``override_num_blocks`` fewer (files grouped) or more (the
    blocks read split again)."""
    _check_blocks(override_num_blocks)
    files = _paths.expand(paths, _SUFFIXES.get(fmt))
    reads = []
    for fs, path in files:
        read = _FileRead(fs, path, fmt, options)
        reads.append((_with_path(read, path) if include_paths and fmt != "binary" else read,
                       path))
    groups = _grouped(reads, override_num_blocks) if override_num_blocks and \
        override_num_blocks < len(reads) else [[r] for r in reads]
    tasks = [ReadTask(_Reads([r for r, _ in g]) if len(g) > 1 else g[0][0], name=g[0][1])
             for g in groups]
    ds = _dataset(Source(name, tasks=tasks))
    return _more_blocks(ds, len(tasks), override_num_blocks)


def _check_blocks(n: int | None) -> None:
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"override_num_blocks must be a positive integer, got {n!r}")


def _more_blocks(ds, tasks: int, wanted: int | None):
    return ds.repartition(wanted) if wanted is not None and tasks < wanted else ds


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
    ``filter`` (a ``pyarrow.dataset`` expression, or pyarrow's list-of-tuples form) is
    pushed down to the reader.

    A read task per file; a file larger than ``DataContext.target_max_block_size`` is read
    by several, a run of its row groups each. ``override_num_blocks`` asks for another
    number of read tasks: files are grouped, or split by row group (and, past one block
    per row group, the blocks read are split again).

    Example::

        ds = zactor.data.read_parquet("s3://bucket/data/", columns=["x"],
                                      filter=pyarrow.dataset.field("x") > 0)
    """
    _check_blocks(override_num_blocks)
    if isinstance(filter, list):
        import pyarrow.parquet as pq

        filter = pq.filters_to_expression(filter)  # noqa: A001
    options = {"columns": columns, "filter": filter}
    files = _paths.expand(paths, _SUFFIXES["parquet"])
    pieces = _parquet_pieces(files, override_num_blocks)
    if override_num_blocks is not None and len(pieces) > override_num_blocks:
        pieces = _grouped(pieces, override_num_blocks)
    else:
        pieces = [[p] for p in pieces]
    tasks = [ReadTask(_Reads([_FileRead(fs, path, "parquet", {**options, "groups": groups})
                              for fs, path, groups, _ in group]),
                      rows=None if None in [p[3] for p in group] else
                      builtins.sum(p[3] for p in group),
                      name=group[0][1]) for group in pieces]
    return _more_blocks(_dataset(Source("ReadParquet", tasks=tasks)), len(tasks),
                        override_num_blocks)


def _parquet_pieces(files: list, blocks: int | None) -> list[tuple]:
    """(fs, path, row groups or None for all, rows or None) to read, in order: whole files,
    and runs of row groups of the files that must be split (too large, or more blocks
    asked for than there are files)."""
    import pyarrow.parquet as pq

    from zactor.data.context import DataContext

    target = DataContext.get_current().target_max_block_size
    split_all = blocks is not None and blocks > len(files)
    footers = {}
    for fs, path in files:
        if split_all or fs.size(path) > target:
            try:
                with fs.open(path, "rb") as f:
                    footers[path] = pq.ParquetFile(f).metadata
            except pa.ArrowInvalid as exc:
                raise ValueError(f"cannot read {path} as parquet: {exc}") from None
    if not footers:
        return [(fs, path, None, None) for fs, path in files]
    if split_all:  # pieces per file in proportion to its rows, a row group at least each
        total = builtins.sum(m.num_rows for m in footers.values()) or 1
        want = {path: max(1, round(blocks * m.num_rows / total)) for path, m in
                footers.items()}
    out = []
    for fs, path in files:
        meta = footers.get(path)
        if meta is None:
            out.append((fs, path, None, None))
            continue
        groups = [meta.row_group(i) for i in builtins.range(meta.num_row_groups)]
        if split_all:
            runs = _split_rows(len(groups), want[path])
        else:  # runs of row groups of at most `target` bytes (uncompressed)
            runs, start, size = [], 0, 0
            for i, g in enumerate(groups):
                if i > start and size + g.total_byte_size > target:
                    runs.append((start, i))
                    start, size = i, 0
                size += g.total_byte_size
            runs.append((start, len(groups)))
        for a, b in runs:
            if a < b or not groups:
                out.append((fs, path, list(builtins.range(a, b)),
                            builtins.sum(g.num_rows for g in groups[a:b])))
    return out


def _grouped(pieces: list, n: int) -> list[list]:
    """``pieces`` in ``n`` consecutive groups (fewer read tasks than files)."""
    return [pieces[a:b] for a, b in _split_rows(len(pieces), n)]


class _Reads:
    """Several reads in one task, their blocks one after the other."""

    def __init__(self, reads: list) -> None:
        self.reads = reads

    def __call__(self) -> list:
        return [block for read in self.reads for block in read()]


def read_csv(paths, *, include_paths: bool = False, override_num_blocks: int | None = None,
             **arrow_csv_args):
    """CSV files, read by pyarrow's CSV reader (``arrow_csv_args``: its ``read_options``,
    ``parse_options``, ``convert_options``)."""
    return _read_files(paths, "csv", arrow_csv_args, "ReadCSV", include_paths,
                       override_num_blocks)


def read_json(paths, *, include_paths: bool = False, override_num_blocks: int | None = None,
              **arrow_json_args):
    """JSON lines files: one row per line."""
    return _read_files(paths, "json", arrow_json_args, "ReadJSON", include_paths,
                       override_num_blocks)


def read_text(paths, *, encoding: str = "utf-8", drop_empty_lines: bool = True,
              include_paths: bool = False, override_num_blocks: int | None = None):
    """Text files: a ``text`` column, one row per line."""
    return _read_files(paths, "text", {"encoding": encoding,
                                       "drop_empty_lines": drop_empty_lines},
                       "ReadText", include_paths, override_num_blocks)


def read_numpy(paths, *, include_paths: bool = False, override_num_blocks: int | None = None):
    """``.npy`` files: a ``data`` column, one row per first-axis entry."""
    return _read_files(paths, "numpy", {}, "ReadNumpy", include_paths, override_num_blocks)


def read_binary_files(paths, *, include_paths: bool = False,
                      override_num_blocks: int | None = None):
    """A row per file: its ``bytes`` (and ``path`` with ``include_paths``)."""
    return _read_files(paths, "binary", {"include_paths": include_paths}, "ReadBinary",
                       override_num_blocks=override_num_blocks)
