"""Scalers: standard, min-max, max-abs and robust (quantile) scaling of numeric columns."""

from __future__ import annotations

from zactor.data.aggregate import AbsMax, Max, Mean, Min, Quantile, Std
from zactor.data.preprocessors._base import Preprocessor, output_names


class _Scaler(Preprocessor):
    def __init__(self, columns: list[str], output_columns: list[str] | None = None) -> None:
        super().__init__()
        self.columns = list(columns)
        self.output_columns = output_names(self.columns, output_columns)

    def _transform_pandas(self, df):
        for col, out in zip(self.columns, self.output_columns, strict=True):
            df[out] = self._scale(df[col], col)
        return df


def _nonzero(value) -> float:
    return 1.0 if value is None or value == 0 else value


class StandardScaler(_Scaler):
    """(x - mean) / std, the population std (a column of one value is only centred)."""

    def _fit(self, ds) -> dict:
        aggs = [a for c in self.columns for a in (Mean(c), Std(c, ddof=0))]
        return ds.aggregate(*aggs)

    def _scale(self, s, col):
        return (s - self.stats_[f"mean({col})"]) / _nonzero(self.stats_[f"std({col})"])


class MinMaxScaler(_Scaler):
    """(x - min) / (max - min)."""

    def _fit(self, ds) -> dict:
        return ds.aggregate(*[a for c in self.columns for a in (Min(c), Max(c))])

    def _scale(self, s, col):
        lo, hi = self.stats_[f"min({col})"], self.stats_[f"max({col})"]
        return (s - lo) / _nonzero(hi - lo)


class MaxAbsScaler(_Scaler):
    """x / max(|x|)."""

    def _fit(self, ds) -> dict:
        return ds.aggregate(*[AbsMax(c) for c in self.columns])

    def _scale(self, s, col):
        return s / _nonzero(self.stats_[f"abs_max({col})"])


class RobustScaler(_Scaler):
    """(x - median) / (q_high - q_low), with ``quantile_range`` (0.25, 0.75) by default."""

    def __init__(self, columns: list[str], quantile_range: tuple = (0.25, 0.75),
                 output_columns: list[str] | None = None) -> None:
        super().__init__(columns, output_columns)
        self.quantile_range = tuple(quantile_range)

    def _fit(self, ds) -> dict:
        lo, hi = self.quantile_range
        aggs = []
        for c in self.columns:
            aggs += [Quantile(c, q=lo, alias_name=f"low({c})"),
                     Quantile(c, q=0.5, alias_name=f"median({c})"),
                     Quantile(c, q=hi, alias_name=f"high({c})")]
        return ds.aggregate(*aggs)

    def _scale(self, s, col):
        spread = self.stats_[f"high({col})"] - self.stats_[f"low({col})"]
        return (s - self.stats_[f"median({col})"]) / _nonzero(spread)
