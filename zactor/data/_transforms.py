"""The block transforms behind a dataset's row and batch operations (run in tasks and
actors). An exception in user code keeps its type and gains a note naming the operator and
the rows it was working on."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from zactor.data import _block


def _noted(exc: BaseException, what: str) -> BaseException:
    if hasattr(exc, "add_note"):
        exc.add_note(f"(zactor.data: raised by {what})")
    return exc


def batches(fn: Callable, batch_size: int | None, batch_format: str, fn_args: tuple,
            fn_kwargs: dict, name: str) -> Callable[[pa.Table], list]:
    def run(block: pa.Table) -> list:
        out = []
        n = block.num_rows
        step = batch_size or n or 1
        for start in range(0, max(n, 1), step):
            piece = block.slice(start, step)
            if piece.num_rows == 0 and n:
                continue
            batch = _block.to_batch(piece, batch_format)
            try:
                result = fn(batch, *fn_args, **fn_kwargs)
                results = list(result) if inspect.isgenerator(result) else [result]
            except Exception as exc:  # noqa: BLE001 - the user's error, noted, goes back
                raise _noted(exc, f"{name} on rows {start}..{start + piece.num_rows} of a "
                             "block") from None
            for r in results:
                try:
                    out.append(_block.from_batch(r))
                except TypeError as exc:
                    raise TypeError(f"{name}: {exc}") from None
        return out
    return run


def rows(fn: Callable, kind: str, fn_args: tuple, fn_kwargs: dict,
         name: str) -> Callable[[pa.Table], list]:
    """``kind``: map (a row for a row), flat_map (rows for a row), filter (keep or not)."""
    def run(block: pa.Table) -> list:
        out: list[Any] = []
        for i, row in enumerate(block.to_pylist()):
            try:
                result = fn(row, *fn_args, **fn_kwargs)
            except Exception as exc:  # noqa: BLE001
                raise _noted(exc, f"{name} on row {i} of a block: {row!r:.200}") from None
            if kind == "map":
                if not isinstance(result, dict):
                    raise TypeError(f"{name}: the function must return a dict (a row), got "
                                    f"{type(result).__name__}")
                out.append(result)
            elif kind == "flat_map":
                out.extend(result)
            elif result:
                out.append(row)
        if kind == "filter" and len(out) == block.num_rows:
            return [block]
        if not out:
            return [block.schema.empty_table()] if kind == "filter" else []
        return [_block.from_rows(out)]
    return run


def columns(kind: str, arg: Any, name: str) -> Callable[[pa.Table], list]:
    """select, drop or rename columns; a column that does not exist is named in the error."""
    def run(block: pa.Table) -> list:
        have = block.column_names
        wanted = list(arg)
        missing = [c for c in wanted if c not in have]
        if missing and block.num_columns:
            raise ValueError(f"{name}: column(s) {missing} do not exist; the dataset has "
                             f"{have}")
        if kind == "select":
            return [block.select(wanted)]
        if kind == "drop":
            return [block.drop_columns(wanted)]
        return [block.rename_columns([arg.get(c, c) for c in have])]
    return run


def add_column(col: str, fn: Callable, batch_format: str, name: str):
    def run(block: pa.Table) -> list:
        batch = _block.to_batch(block, batch_format)
        try:
            values = fn(batch)
        except Exception as exc:  # noqa: BLE001
            raise _noted(exc, f"{name}") from None
        if col in block.column_names:
            block = block.drop_columns([col])
        return [block.append_column(col, _block._to_arrow(values))]
    return run
