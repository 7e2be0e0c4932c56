"""Blocks: the unit a dataset is made of, an Apache Arrow table.

Batches handed to user functions are views of a block in the format asked for: numpy
(``"default"``/``"numpy"``: a dict of column name to array, zero-copy where Arrow's layout
allows), pandas or pyarrow. What a function returns — any of those, or a list of rows —
becomes a block again.
"""

from __future__ import annotations

import copyreg
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

BATCH_FORMATS = ("default", "numpy", "pandas", "pyarrow")


def check_format(batch_format: str | None) -> str:
    fmt = batch_format or "default"
    if fmt not in BATCH_FORMATS:
        raise ValueError(f"batch_format must be one of {', '.join(BATCH_FORMATS)}, got "
                         f"{batch_format!r}")
    return fmt


def to_batch(block: pa.Table, batch_format: str) -> Any:
    if batch_format == "pyarrow":
        return block
    if batch_format == "pandas":
        return block.to_pandas()
    return {name: _to_numpy(block.column(name)) for name in block.column_names}


def _to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    if column.num_chunks == 1:
        column = column.chunk(0)
    else:
        column = column.combine_chunks()
    if pa.types.is_fixed_size_list(column.type):  # a tensor column: rows of fixed shape
        flat = column.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(len(column), -1)
    return column.to_numpy(zero_copy_only=False)


def from_batch(batch: Any) -> pa.Table:
    """A block from what a user function returned."""
    if isinstance(batch, pa.Table):
        return batch
    try:
        import pandas as pd

        if isinstance(batch, pd.DataFrame):
            return pa.Table.from_pandas(batch, preserve_index=False)
    except ImportError:  # pragma: no cover - pandas is part of the data extra
        pass
    if isinstance(batch, Mapping):
        return pa.table({str(k): _to_arrow(v) for k, v in batch.items()})
    if isinstance(batch, list):
        return from_rows(batch)
    raise TypeError(f"a batch must be a dict of columns, a pandas DataFrame or a pyarrow "
                    f"Table, got {type(batch).__name__}")


def _to_arrow(values: Any) -> pa.Array:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    arr = np.asarray(values) if not isinstance(values, list) else None
    if arr is not None and arr.ndim > 1:  # a tensor column
        flat = pa.array(np.ascontiguousarray(arr).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, int(np.prod(arr.shape[1:])))
    if arr is not None and arr.dtype != object:
        return pa.array(arr)
    return pa.array(list(values))


def from_rows(rows: Iterable[Any]) -> pa.Table:
    """A block from rows: dicts, or other values (which go in an ``item`` column)."""
    rows = list(rows)
    if not rows:
        return pa.table({})
    if all(isinstance(r, Mapping) for r in rows):
        return pa.Table.from_pylist([dict(r) for r in rows])
    return pa.table({"item": _to_arrow(rows)})


def concat(blocks: list[pa.Table]) -> pa.Table:
    blocks = [b for b in blocks if b.num_columns or b.num_rows]
    if not blocks:
        return pa.table({})
    if len(blocks) == 1:
        return blocks[0]
    return pa.concat_tables(blocks, promote_options="default")


def compact(table: pa.Table) -> pa.Table:
    """``table``, with each column whose chunks hold far more buffer than rows copied into
    one chunk of its own rows.

    pyarrow pickles a sliced array with the whole buffer it is a slice of, once per slice.
    Parquet's reader hands out a column as chunks that are slices of one large buffer, and
    ``slice`` (limit, repartition, batches) makes more: pickled as they are, a 68 MB block
    read from Parquet took 492 MB of the object store.
    """
    columns = None
    for i, column in enumerate(table.columns):
        held = sum(b.size for chunk in column.chunks for b in chunk.buffers() if b is not None)
        if column.num_chunks and held > 2 * column.nbytes + 65536:
            try:
                joined = pa.concat_arrays(column.chunks)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue  # a type pyarrow cannot concatenate: pickled as it is
            columns = columns or list(table.columns)
            columns[i] = pa.chunked_array([joined], type=column.type)
    return table if columns is None else pa.Table.from_arrays(columns, schema=table.schema)


def _reduce_table(table: pa.Table):
    return compact(table).__reduce__()


# Every process that handles blocks imports this module, so blocks are compacted wherever
# they are pickled: a task's result, a put, an actor's reply (cloudpickle consults copyreg).
copyreg.pickle(pa.Table, _reduce_table)


def metadata(block: pa.Table) -> dict:
    return {"rows": block.num_rows, "bytes": block.nbytes, "schema": block.schema}
