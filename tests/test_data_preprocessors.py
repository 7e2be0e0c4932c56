"""zactor.data.preprocessors against numpy and pandas computed on the same rows; fitted
preprocessors pickle and transform single batches too."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

import zactor.data as zd
from zactor.data.preprocessors import (
    Chain,
    Concatenator,
    LabelEncoder,
    MaxAbsScaler,
    MinMaxScaler,
    Normalizer,
    OneHotEncoder,
    OrdinalEncoder,
    PreprocessorNotFittedException,
    RobustScaler,
    SimpleImputer,
    StandardScaler,
)

pytestmark = [pytest.mark.usefixtures("cluster"), pytest.mark.timeout(120)]

RNG = np.random.default_rng(0)
DF = pd.DataFrame({"x": RNG.normal(5, 2, 300), "y": RNG.uniform(-3, 1, 300),
                   "color": RNG.choice(["red", "green", "blue"], 300)})


def ds():
    return zd.from_pandas(DF).repartition(4)


def out(pre, data=None):
    return pre.fit_transform(data if data is not None else ds()).to_pandas()


def test_scalers_match_numpy():
    x, y = DF["x"].to_numpy(), DF["y"].to_numpy()
    std = out(StandardScaler(["x", "y"]))
    assert std["x"].to_numpy() == pytest.approx((x - x.mean()) / x.std())
    mm = out(MinMaxScaler(["y"]))
    assert mm["y"].to_numpy() == pytest.approx((y - y.min()) / (y.max() - y.min()))
    ma = out(MaxAbsScaler(["y"]))
    assert ma["y"].to_numpy() == pytest.approx(y / np.abs(y).max())
    rb = out(RobustScaler(["x"]))
    q1, med, q3 = np.quantile(x, [0.25, 0.5, 0.75])
    assert rb["x"].to_numpy() == pytest.approx((x - med) / (q3 - q1))
    appended = out(StandardScaler(["x"], output_columns=["x_scaled"]))
    assert appended["x"].tolist() == DF["x"].tolist() and "x_scaled" in appended


def test_encoders_match_pandas():
    cats = sorted(DF["color"].unique())  # blue, green, red
    onehot = out(OneHotEncoder(["color"]))
    expected = [[int(c == k) for k in cats] for c in DF["color"]]
    assert [list(v) for v in onehot["color"]] == expected
    ordinal = out(OrdinalEncoder(["color"]))
    assert ordinal["color"].tolist() == [cats.index(c) for c in DF["color"]]
    label = LabelEncoder("color").fit(ds())
    encoded = label.transform(ds())
    assert encoded.to_pandas()["color"].tolist() == [cats.index(c) for c in DF["color"]]
    assert label.inverse_transform(encoded).to_pandas()["color"].tolist() == \
        DF["color"].tolist()
    top = OneHotEncoder(["color"], max_categories={"color": 1}).fit(ds())
    assert len(top.stats_["unique_values(color)"]) == 1


def test_imputer_concatenator_normalizer_and_chain():
    holes = DF.copy()
    holes.loc[::7, "x"] = np.nan
    imputed = out(SimpleImputer(["x"]), zd.from_pandas(holes))
    assert imputed["x"].tolist() == pytest.approx(holes["x"].fillna(holes["x"].mean()))
    const = out(SimpleImputer(["x"], strategy="constant", fill_value=-1.0),
                zd.from_pandas(holes))
    assert (const["x"] == -1.0).sum() == holes["x"].isna().sum()
    frequent = out(SimpleImputer(["color"], strategy="most_frequent"),
                   zd.from_pandas(DF.assign(color=DF["color"].where(DF.index % 5 > 0))))
    assert frequent["color"].isna().sum() == 0
    joined = out(Concatenator(["x", "y"], output_column_name="features"))
    assert list(joined.columns) == ["color", "features"]
    assert np.stack(joined["features"]).tolist() == DF[["x", "y"]].to_numpy().tolist()
    norm = out(Normalizer(["x", "y"]))
    v = DF[["x", "y"]].to_numpy()
    assert norm[["x", "y"]].to_numpy() == pytest.approx(v / np.linalg.norm(v, axis=1)[:, None])
    chain = Chain(StandardScaler(["x"]), MinMaxScaler(["x"]))
    chained = out(chain)["x"].to_numpy()
    assert chained.min() == pytest.approx(0) and chained.max() == pytest.approx(1)


def test_fitted_preprocessors_pickle_and_transform_batches():
    scaler = StandardScaler(["x"])
    with pytest.raises(PreprocessorNotFittedException):
        scaler.transform(ds())
    scaler.fit(ds())
    again = pickle.loads(pickle.dumps(scaler))
    batch = again.transform_batch(DF.head(5))
    x = DF["x"].to_numpy()
    assert batch["x"].to_numpy() == pytest.approx(((x - x.mean()) / x.std())[:5])
    as_numpy = again.transform_batch({"x": DF["x"].to_numpy()[:3]})
    assert as_numpy["x"] == pytest.approx(((x - x.mean()) / x.std())[:3])
