"""The preprocessor protocol: ``fit`` gathers ``stats_``; ``transform`` maps batches."""

from __future__ import annotations

from typing import Any

import numpy as np


class PreprocessorNotFittedException(RuntimeError):
    """transform() before fit() on a preprocessor that needs fitting (Ray's name)."""


class Preprocessor:
    """Base class. Subclasses set ``_is_fittable`` and implement ``_fit(ds)`` (setting
    ``stats_``) and ``_transform_pandas(df)``."""

    _is_fittable = True

    def __init__(self) -> None:
        self.stats_: dict | None = None

    def fit(self, ds) -> Preprocessor:
        """Compute the statistics this preprocessor needs from ``ds``, in parallel."""
        if self._is_fittable:
            self.stats_ = self._fit(ds)
        return self

    def fit_transform(self, ds):
        return self.fit(ds).transform(ds)

    def _check_fitted(self) -> None:
        if self._is_fittable and self.stats_ is None:
            raise PreprocessorNotFittedException(
                f"{type(self).__name__} must be fitted before it transforms: call fit()")

    def transform(self, ds):
        """A dataset of ``ds``'s batches transformed (lazily, like any map_batches)."""
        self._check_fitted()
        return ds.map_batches(self._transform_pandas, batch_format="pandas", batch_size=None)

    def transform_batch(self, batch: Any) -> Any:
        """One batch (a DataFrame, or a dict of numpy arrays) transformed, here."""
        self._check_fitted()
        import pandas as pd

        if isinstance(batch, pd.DataFrame):
            return self._transform_pandas(batch.copy())
        frame = pd.DataFrame({k: list(v) if np.ndim(v) > 1 else v for k, v in batch.items()})
        out = self._transform_pandas(frame)
        return {c: np.stack(out[c].to_numpy()) if out[c].dtype == object and len(out) and
                isinstance(out[c].iloc[0], (list, np.ndarray)) else out[c].to_numpy()
                for c in out.columns}

    def _fit(self, ds) -> dict:  # pragma: no cover - overridden
        raise NotImplementedError

    def _transform_pandas(self, df):  # pragma: no cover - overridden
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = {k: v for k, v in vars(self).items() if k != "stats_"}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"


def output_names(columns: list[str], output_columns: list[str] | None) -> list[str]:
    """Where each column's result goes: in place, or (append mode) a column of its own."""
    if output_columns is None:
        return list(columns)
    if len(output_columns) != len(columns):
        raise ValueError(f"output_columns must name one column per input column: "
                         f"{columns} against {output_columns}")
    return list(output_columns)
