"""Encoders of categories: one-hot vectors, ordinal integers, labels."""

from __future__ import annotations

import numpy as np

from zactor.data.preprocessors._base import Preprocessor, output_names


def _categories(ds, col: str, max_categories: int | None = None) -> list:
    """The column's categories, sorted (the ``max_categories`` most frequent, if given);
    counted in parallel by a groupby."""
    counts = ds.groupby(col).count().take_all()
    if max_categories is not None:
        counts = sorted(counts, key=lambda r: -r["count()"])[:max_categories]
    return sorted((r[col] for r in counts), key=lambda v: (v is None, str(v)))


class OneHotEncoder(Preprocessor):
    """Each column becomes a one-hot vector over its sorted categories (all zeros for one
    not seen in fitting, or beyond ``max_categories``)."""

    def __init__(self, columns: list[str], *, max_categories: dict | None = None,
                 output_columns: list[str] | None = None) -> None:
        super().__init__()
        self.columns = list(columns)
        self.max_categories = max_categories or {}
        self.output_columns = output_names(self.columns, output_columns)

    def _fit(self, ds) -> dict:
        return {f"unique_values({c})": {v: i for i, v in enumerate(
            _categories(ds, c, self.max_categories.get(c)))} for c in self.columns}

    def _transform_pandas(self, df):
        for col, out in zip(self.columns, self.output_columns, strict=True):
            index = self.stats_[f"unique_values({col})"]
            codes = df[col].map(index)
            vectors = np.zeros((len(df), len(index)), dtype=np.int64)
            known = codes.notna().to_numpy()
            vectors[np.nonzero(known)[0], codes[known].astype(int).to_numpy()] = 1
            df[out] = list(vectors)
        return df


class OrdinalEncoder(Preprocessor):
    """Each column's values become their position among its sorted categories (NaN for a
    value not seen in fitting)."""

    def __init__(self, columns: list[str], *, encode_lists: bool = True,
                 output_columns: list[str] | None = None) -> None:
        super().__init__()
        self.columns = list(columns)
        self.output_columns = output_names(self.columns, output_columns)

    def _fit(self, ds) -> dict:
        return {f"unique_values({c})": {v: i for i, v in enumerate(_categories(ds, c))}
                for c in self.columns}

    def _transform_pandas(self, df):
        for col, out in zip(self.columns, self.output_columns, strict=True):
            df[out] = df[col].map(self.stats_[f"unique_values({col})"])
        return df


class LabelEncoder(Preprocessor):
    """A label column's values become integers 0..n-1 (its sorted classes)."""

    def __init__(self, label_column: str, *, output_column: str | None = None) -> None:
        super().__init__()
        self.label_column = label_column
        self.output_column = output_column or label_column

    def _fit(self, ds) -> dict:
        c = self.label_column
        return {f"unique_values({c})": {v: i for i, v in enumerate(_categories(ds, c))}}

    def _transform_pandas(self, df):
        c = self.label_column
        df[self.output_column] = df[c].map(self.stats_[f"unique_values({c})"])
        return df

    def inverse_transform(self, ds):
        c = self.label_column
        classes = {i: v for v, i in self.stats_[f"unique_values({c})"].items()}
        out = self.output_column

        def back(df):
            df[c] = df[out].map(classes)
            return df

        return ds.map_batches(back, batch_format="pandas", batch_size=None)
