"""Imputing, concatenating, normalizing, and chains of preprocessors."""

from __future__ import annotations

import numpy as np

from zactor.data.aggregate import Mean
from zactor.data.preprocessors._base import Preprocessor, output_names


class SimpleImputer(Preprocessor):
    """Missing values filled with the column's ``mean``, ``most_frequent`` value, or a
    ``constant`` (``fill_value``)."""

    def __init__(self, columns: list[str], strategy: str = "mean", fill_value=None, *,
                 output_columns: list[str] | None = None) -> None:
        super().__init__()
        if strategy not in ("mean", "most_frequent", "constant"):
            raise ValueError(f"strategy must be mean, most_frequent or constant, got "
                             f"{strategy!r}")
        if strategy == "constant" and fill_value is None:
            raise ValueError("strategy='constant' needs a fill_value")
        self.columns = list(columns)
        self.strategy = strategy
        self.fill_value = fill_value
        self.output_columns = output_names(self.columns, output_columns)
        self._is_fittable = strategy != "constant"

    def _fit(self, ds) -> dict:
        if self.strategy == "mean":
            return ds.aggregate(*[Mean(c) for c in self.columns])
        out = {}
        for c in self.columns:
            counts = [r for r in ds.groupby(c).count().take_all() if r[c] is not None]
            out[f"most_frequent({c})"] = max(counts, key=lambda r: r["count()"])[c] \
                if counts else None
        return out

    def _transform_pandas(self, df):
        for col, out in zip(self.columns, self.output_columns, strict=True):
            if self.strategy == "constant":
                value = self.fill_value
            elif self.strategy == "mean":
                value = self.stats_[f"mean({col})"]
            else:
                value = self.stats_[f"most_frequent({col})"]
            df[out] = df[col].fillna(value)
        return df


class Concatenator(Preprocessor):
    """``columns`` joined into one vector column ``output_column_name`` (they go)."""

    _is_fittable = False

    def __init__(self, columns: list[str], output_column_name: str = "concat_out",
                 dtype=None, raise_if_missing: bool = False, flatten: bool = False) -> None:
        super().__init__()
        self.columns = list(columns)
        self.output_column_name = output_column_name
        self.dtype = dtype
        self.raise_if_missing = raise_if_missing

    def _transform_pandas(self, df):
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            if self.raise_if_missing:
                raise ValueError(f"Concatenator: missing column(s) {missing}")
            columns = [c for c in self.columns if c in df.columns]
        else:
            columns = self.columns
        values = df[columns].to_numpy(dtype=self.dtype)
        df = df.drop(columns=columns)
        df[self.output_column_name] = list(values)
        return df


class Normalizer(Preprocessor):
    """Each row's values of ``columns``, as a vector, scaled to unit ``norm`` (l1, l2 or
    max)."""

    _is_fittable = False

    def __init__(self, columns: list[str], norm: str = "l2", *,
                 output_columns: list[str] | None = None) -> None:
        super().__init__()
        if norm not in ("l1", "l2", "max"):
            raise ValueError(f"norm must be l1, l2 or max, got {norm!r}")
        self.columns = list(columns)
        self.norm = norm
        self.output_columns = output_names(self.columns, output_columns)

    def _transform_pandas(self, df):
        values = df[self.columns].to_numpy(dtype=float)
        if self.norm == "l1":
            norms = np.abs(values).sum(axis=1)
        elif self.norm == "l2":
            norms = np.sqrt((values ** 2).sum(axis=1))
        else:
            norms = np.abs(values).max(axis=1)
        norms[norms == 0] = 1.0
        scaled = values / norms[:, None]
        for i, out in enumerate(self.output_columns):
            df[out] = scaled[:, i]
        return df


class Chain(Preprocessor):
    """Preprocessors one after the other; each is fitted on the output of those before."""

    def __init__(self, *preprocessors: Preprocessor) -> None:
        super().__init__()
        self.preprocessors = list(preprocessors)

    def fit(self, ds) -> Chain:
        for p in self.preprocessors:
            ds = p.fit(ds).transform(ds)
        self.stats_ = {}
        return self

    def transform(self, ds):
        for p in self.preprocessors:
            ds = p.transform(ds)
        return ds

    def _transform_pandas(self, df):
        for p in self.preprocessors:
            df = p._transform_pandas(df)
        return df
