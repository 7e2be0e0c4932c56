"""Aggregations at Ray's path (``ray.data.aggregate``): for ``Dataset.aggregate`` and
``groupby(...).aggregate``, computed per block in parallel and merged.

Example::

    from zactor.data.aggregate import Count, Mean
    ds.groupby("k").aggregate(Count(), Mean("v")).take_all()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["AbsMax", "AggregateFn", "Count", "Max", "Mean", "Min", "Quantile", "Std", "Sum",
           "Unique"]


class AggregateFn:
    """An aggregation: ``init(key) -> acc``; ``accumulate_row(acc, row)`` or
    ``accumulate_block(acc, block)`` (a pyarrow Table); ``merge(a, b)``; ``finalize(acc)``."""

    def __init__(self, init: Callable, merge: Callable, accumulate_row: Callable | None = None,
                 accumulate_block: Callable | None = None, finalize: Callable | None = None,
                 name: str | None = None) -> None:
        if (accumulate_row is None) == (accumulate_block is None):
            raise ValueError("give exactly one of accumulate_row and accumulate_block")
        self.init = init
        self.merge = merge
        self.accumulate_row = accumulate_row
        self.accumulate_block_fn = accumulate_block
        self.finalize = finalize or (lambda acc: acc)
        self.name = name or "aggregate"

    def accumulate_block(self, acc: Any, block: pa.Table) -> Any:
        if self.accumulate_block_fn is not None:
            return self.accumulate_block_fn(acc, block)
        for row in block.to_pylist():
            acc = self.accumulate_row(acc, row)
        return acc


def _column(block: pa.Table, on: str, name: str) -> pa.ChunkedArray:
    if on not in block.column_names:
        raise ValueError(f"{name}: column {on!r} does not exist; the dataset has "
                         f"{block.column_names}")
    return block.column(on)


class _OnColumn(AggregateFn):
    def __init__(self, on: str | None, alias_name: str | None, kind: str) -> None:
        self.on = on
        super().__init__(self._init, self._merge, accumulate_block=self._block,
                         finalize=self._finalize,
                         name=alias_name or f"{kind}({on if on is not None else ''})")

    def _init(self, key=None):
        return None

    def _finalize(self, acc):
        return acc


class Count(_OnColumn):
    """Rows (or non-null values of ``on``)."""

    def __init__(self, on: str | None = None, ignore_nulls: bool = False,
                 alias_name: str | None = None) -> None:
        self.ignore_nulls = ignore_nulls
        super().__init__(on, alias_name, "count")

    def _init(self, key=None):
        return 0

    def _block(self, acc, block):
        if self.on is None:
            return acc + block.num_rows
        col = _column(block, self.on, self.name)
        return acc + (pc.count(col).as_py() if self.ignore_nulls else len(col))

    def _merge(self, a, b):
        return a + b


class Sum(_OnColumn):
    def __init__(self, on: str, ignore_nulls: bool = True, alias_name: str | None = None):
        super().__init__(on, alias_name, "sum")

    def _block(self, acc, block):
        value = pc.sum(_column(block, self.on, self.name)).as_py()
        return value if acc is None else acc if value is None else acc + value

    def _merge(self, a, b):
        return b if a is None else a if b is None else a + b


class Min(_OnColumn):
    def __init__(self, on: str, ignore_nulls: bool = True, alias_name: str | None = None):
        super().__init__(on, alias_name, "min")

    def _block(self, acc, block):
        return self._merge(acc, pc.min(_column(block, self.on, self.name)).as_py())

    def _merge(self, a, b):
        return b if a is None else a if b is None else min(a, b)


class Max(_OnColumn):
    def __init__(self, on: str, ignore_nulls: bool = True, alias_name: str | None = None):
        super().__init__(on, alias_name, "max")

    def _block(self, acc, block):
        return self._merge(acc, pc.max(_column(block, self.on, self.name)).as_py())

    def _merge(self, a, b):
        return b if a is None else a if b is None else max(a, b)


class AbsMax(_OnColumn):
    def __init__(self, on: str, ignore_nulls: bool = True, alias_name: str | None = None):
        super().__init__(on, alias_name, "abs_max")

    def _block(self, acc, block):
        return self._merge(acc, pc.max(pc.abs(_column(block, self.on, self.name))).as_py())

    def _merge(self, a, b):
        return b if a is None else a if b is None else max(a, b)


class Mean(_OnColumn):
    def __init__(self, on: str, ignore_nulls: bool = True, alias_name: str | None = None):
        super().__init__(on, alias_name, "mean")

    def _init(self, key=None):
        return [0, 0.0]

    def _block(self, acc, block):
        col = _column(block, self.on, self.name)
        n = pc.count(col).as_py()
        return [acc[0] + n, acc[1] + (pc.sum(col).as_py() or 0.0)]

    def _merge(self, a, b):
        return [a[0] + b[0], a[1] + b[1]]

    def _finalize(self, acc):
        return acc[1] / acc[0] if acc[0] else None


class Std(_OnColumn):
    """Standard deviation, merged exactly from per-block (count, mean, M2) (Chan et al.)."""

    def __init__(self, on: str, ddof: int = 1, ignore_nulls: bool = True,
                 alias_name: str | None = None) -> None:
        self.ddof = ddof
        super().__init__(on, alias_name, "std")

    def _init(self, key=None):
        return [0, 0.0, 0.0]

    def _block(self, acc, block):
        values = _column(block, self.on, self.name).to_numpy(zero_copy_only=False)
        values = values[~np.isnan(values.astype(float))] if len(values) else values
        if not len(values):
            return acc
        part = [len(values), float(values.mean()), float(((values - values.mean()) ** 2).sum())]
        return self._merge(acc, part)

    def _merge(self, a, b):
        if not a[0]:
            return b
        if not b[0]:
            return a
        n = a[0] + b[0]
        delta = b[1] - a[1]
        return [n, a[1] + delta * b[0] / n, a[2] + b[2] + delta * delta * a[0] * b[0] / n]

    def _finalize(self, acc):
        n = acc[0]
        return float(np.sqrt(acc[2] / (n - self.ddof))) if n - self.ddof > 0 else None


class Quantile(_OnColumn):
    """The ``q`` quantile (linear interpolation, as numpy's default); gathers the column's
    values of each group."""

    def __init__(self, on: str, q: float = 0.5, ignore_nulls: bool = True,
                 alias_name: str | None = None) -> None:
        self.q = q
        super().__init__(on, alias_name, "quantile")

    def _init(self, key=None):
        return []

    def _block(self, acc, block):
        return acc + [v for v in _column(block, self.on, self.name).to_pylist()
                      if v is not None]

    def _merge(self, a, b):
        return a + b

    def _finalize(self, acc):
        return float(np.quantile(acc, self.q)) if acc else None


class Unique(_OnColumn):
    """The distinct values of ``on``."""

    def __init__(self, on: str, ignore_nulls: bool = False, alias_name: str | None = None):
        super().__init__(on, alias_name, "unique")

    def _init(self, key=None):
        return set()

    def _block(self, acc, block):
        return acc | set(pc.unique(_column(block, self.on, self.name)).to_pylist())

    def _merge(self, a, b):
        return a | b

    def _finalize(self, acc):
        return sorted(acc, key=lambda v: (v is None, v))
