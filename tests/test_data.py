"""zactor.data against plain pandas and numpy: every creation, transform and consumption
call gives what pandas or numpy computes on the same rows."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

import zactor
import zactor.data as zd

pytestmark = [pytest.mark.usefixtures("cluster"), pytest.mark.timeout(120)]

ROWS = [{"k": i % 4, "g": "abcd"[i % 4], "v": float(i * 7 % 23), "n": i} for i in range(200)]
DF = pd.DataFrame(ROWS)


def frame(ds) -> pd.DataFrame:
    return ds.to_pandas().reset_index(drop=True)


def test_range_and_its_blocks():
    ds = zd.range(1000, override_num_blocks=7)
    assert ds.count() == 1000 and ds.num_blocks() == 7
    assert ds.columns() == ["id"] and str(ds.schema().types[0]) == "int64"
    assert [r["id"] for r in ds.take(5)] == [0, 1, 2, 3, 4]
    assert ds.sum("id") == sum(range(1000))
    tensors = zd.range_tensor(10, shape=(2, 3)).take_batch(10)["data"]
    assert tensors.shape == (10, 6) and tensors[4].tolist() == [4] * 6


def test_from_values_round_trip():
    assert frame(zd.from_items(ROWS)).equals(DF)
    assert frame(zd.from_pandas(DF)).equals(DF)
    assert frame(zd.from_arrow(pa.Table.from_pandas(DF))).equals(DF)
    assert zd.from_items([1, 2, 3]).take_all() == [{"item": 1}, {"item": 2}, {"item": 3}]
    arr = np.arange(12).reshape(4, 3)
    assert zd.from_numpy(arr).take_batch(4)["data"].tolist() == arr.tolist()


def test_row_transforms_match_pandas():
    ds = zd.from_items(ROWS)
    mapped = frame(ds.map(lambda r: {"n": r["n"], "twice": r["v"] * 2}))
    assert mapped["twice"].tolist() == (DF["v"] * 2).tolist()
    kept = frame(ds.filter(lambda r: r["v"] > 10))
    assert kept["n"].tolist() == DF[DF["v"] > 10]["n"].tolist()
    flat = ds.flat_map(lambda r: [{"n": r["n"]}] * 2).count()
    assert flat == 2 * len(DF)


@pytest.mark.parametrize("fmt", ["default", "numpy", "pandas", "pyarrow"])
def test_map_batches_in_every_format(fmt):
    def double(batch):
        if fmt == "pandas":
            return batch.assign(v=batch["v"] * 2)
        if fmt == "pyarrow":
            import pyarrow.compute as pc

            return batch.set_column(batch.column_names.index("v"), "v",
                                    pc.multiply(batch["v"], 2))
        return {**batch, "v": batch["v"] * 2}

    out = frame(zd.from_items(ROWS).map_batches(double, batch_format=fmt, batch_size=17))
    assert out["v"].tolist() == (DF["v"] * 2).tolist()


def test_map_batches_with_an_actor_pool_and_constructor_args():
    class AddOffset:
        def __init__(self, offset):
            self.offset = offset
            self.calls = 0

        def __call__(self, batch, scale=1):
            self.calls += 1
            return {"n": batch["n"] * scale + self.offset}

    out = zd.from_items(ROWS).map_batches(AddOffset, fn_constructor_args=(1000,),
                                          fn_kwargs={"scale": 3}, concurrency=(1, 2),
                                          batch_size=50)
    assert [r["n"] for r in out.take_all()] == [n * 3 + 1000 for n in DF["n"]]
    with pytest.raises(ValueError, match="concurrency"):
        zd.range(3).map_batches(AddOffset)


def test_column_operations():
    ds = zd.from_items(ROWS)
    assert ds.select_columns(["n", "v"]).columns() == ["n", "v"]
    assert ds.drop_columns(["g"]).columns() == ["k", "v", "n"]
    assert ds.rename_columns({"v": "value"}).columns() == ["k", "g", "value", "n"]
    added = frame(ds.add_column("v2", lambda df: df["v"] ** 2))
    assert added["v2"].tolist() == (DF["v"] ** 2).tolist()
    with pytest.raises(ValueError, match=r"column\(s\) \['nope'\] do not exist"):
        ds.select_columns(["nope"]).take(1)
    with pytest.raises(ValueError, match="batch_format"):
        ds.map_batches(lambda b: b, batch_format="arrow")


def test_limit_repartition_union_and_shuffles():
    ds = zd.range(100, override_num_blocks=5)
    assert ds.limit(13).count() == 13
    assert [r["id"] for r in ds.limit(3).take_all()] == [0, 1, 2]
    parts = ds.repartition(3).materialize()
    assert parts.num_blocks() == 3 and parts.count() == 100
    assert sorted(r["id"] for r in ds.union(ds).take_all()) == sorted(list(range(100)) * 2)
    shuffled = [r["id"] for r in ds.random_shuffle(seed=7).take_all()]
    assert sorted(shuffled) == list(range(100)) and shuffled != list(range(100))
    assert shuffled == [r["id"] for r in ds.random_shuffle(seed=7).take_all()]
    assert sorted(r["id"] for r in ds.randomize_block_order(seed=1).take_all()) == \
        list(range(100))


def test_sort_matches_pandas():
    ds = zd.from_items(ROWS, override_num_blocks=6)
    assert [r["v"] for r in ds.sort("v").take_all()] == sorted(DF["v"])
    assert [r["v"] for r in ds.sort("v", descending=True).take_all()] == \
        sorted(DF["v"], reverse=True)
    by_two = frame(ds.sort(["k", "n"]))
    assert by_two[["k", "n"]].values.tolist() == \
        DF.sort_values(["k", "n"])[["k", "n"]].values.tolist()


def test_groupby_aggregations_match_pandas():
    ds = zd.from_items(ROWS, override_num_blocks=5)
    grouped = DF.groupby("k")
    assert [r["count()"] for r in ds.groupby("k").count().take_all()] == \
        grouped.size().tolist()
    for agg in ("sum", "min", "max", "mean"):
        got = [r[f"{agg}(v)"] for r in getattr(ds.groupby("k"), agg)("v").take_all()]
        assert got == pytest.approx(getattr(grouped["v"], agg)().tolist())
    std = [r["std(v)"] for r in ds.groupby("g").std("v").take_all()]
    assert std == pytest.approx(DF.groupby("g")["v"].std().tolist())
    two = ds.groupby(["k", "g"]).sum("n").take_all()
    assert [r["sum(n)"] for r in two] == DF.groupby(["k", "g"])["n"].sum().tolist()

    def top(group):
        return {"k": group["k"][:1], "best": [group["v"].max()]}

    best = ds.groupby("k").map_groups(top).take_all()
    assert sorted((r["k"], r["best"]) for r in best) == \
        sorted(zip(grouped["v"].max().index, grouped["v"].max(), strict=True))


def test_global_aggregations_match_numpy():
    ds = zd.from_items(ROWS, override_num_blocks=4)
    v = DF["v"].to_numpy()
    assert ds.sum("v") == pytest.approx(v.sum())
    assert ds.min("v") == v.min() and ds.max("v") == v.max()
    assert ds.mean("v") == pytest.approx(v.mean())
    assert ds.std("v") == pytest.approx(v.std(ddof=1))
    assert ds.std("v", ddof=0) == pytest.approx(v.std())


def test_iteration():
    ds = zd.range(1000, override_num_blocks=3)
    sizes = [len(b["id"]) for b in ds.iter_batches(batch_size=300)]
    assert sizes == [300, 300, 300, 100]
    assert [len(b) for b in ds.iter_batches(batch_size=300, drop_last=True,
                                            batch_format="pandas")] == [300] * 3
    assert [r["id"] for r in ds.iter_rows()] == list(range(1000))
    assert isinstance(ds.take_batch(5, batch_format="pyarrow"), pa.Table)
    refs = ds.to_numpy_refs(column="id")
    assert np.concatenate(zactor.get(refs)).tolist() == list(range(1000))
    assert sum(t.num_rows for t in zactor.get(ds.to_arrow_refs())) == 1000


def test_files_round_trip(tmp_path):
    ds = zd.from_items(ROWS, override_num_blocks=3)
    ds.write_parquet(str(tmp_path / "pq"))
    ds.write_csv(str(tmp_path / "csv"))
    ds.write_json(str(tmp_path / "json"))
    for read, folder in ((zd.read_parquet, "pq"), (zd.read_csv, "csv"),
                         (zd.read_json, "json")):
        back = frame(read(str(tmp_path / folder)).sort("n"))
        assert back["v"].tolist() == DF["v"].tolist(), folder
    only = zd.read_parquet(str(tmp_path / "pq"), columns=["n"],
                           filter=pads.field("n") < 10)
    assert only.columns() == ["n"] and sorted(r["n"] for r in only.take_all()) == \
        list(range(10))
    (tmp_path / "a.txt").write_text("one\ntwo\n\nthree\n")
    assert [r["text"] for r in zd.read_text(str(tmp_path / "a.txt")).take_all()] == \
        ["one", "two", "three"]
    np.save(tmp_path / "x.npy", np.arange(6).reshape(3, 2))
    assert zd.read_numpy(str(tmp_path / "x.npy")).take_batch(3)["data"].tolist() == \
        [[0, 1], [2, 3], [4, 5]]
    files = zd.read_binary_files(str(tmp_path / "a.txt"), include_paths=True).take_all()
    assert files[0]["bytes"] == b"one\ntwo\n\nthree\n" and files[0]["path"].endswith("a.txt")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "glob1.parquet")
    assert zd.read_parquet(str(tmp_path / "glob*.parquet")).count() == 1


def test_bad_input_is_named():
    with pytest.raises(FileNotFoundError, match="no such file"):
        zd.read_parquet("/nonexistent/data.parquet")
    bad = "/tmp/zactor-not-parquet.parquet"
    with open(bad, "w") as f:
        f.write("hello")
    with pytest.raises(ValueError, match="cannot read .*not-parquet.parquet as parquet"):
        zd.read_parquet(bad).take(1)

    def boom(batch):
        raise KeyError("missing thing")

    with pytest.raises(KeyError) as info:
        zd.range(10).map_batches(boom).take(1)
    assert "MapBatches(boom)" in "".join(getattr(info.value, "__notes__", [])) + \
        str(info.value)
    with pytest.raises(ValueError, match="column"):
        zd.from_items(ROWS).groupby("nope").count().take_all()


def test_ray_data_programs_run_with_the_import_switched():
    ray = zactor
    ds = ray.data.from_items([{"x": i} for i in range(10)])
    assert ds.map_batches(lambda b: {"y": b["x"] + 1}).sum("y") == 55
    assert json.dumps(ds.take(1)) == '[{"x": 0}]'


def test_aggregations_match_pandas():
    from zactor.data.aggregate import (
        AbsMax,
        AggregateFn,
        Count,
        Max,
        Mean,
        Min,
        Quantile,
        Std,
        Sum,
        Unique,
    )

    ds = zd.from_items(ROWS, override_num_blocks=5)
    whole = ds.aggregate(Count(), Sum("v"), Min("v"), Max("v"), Mean("v"), Std("v"),
                         AbsMax("v"), Quantile("v", q=0.25), Unique("g"))
    v = DF["v"]
    assert whole["count()"] == len(DF) and whole["sum(v)"] == pytest.approx(v.sum())
    assert (whole["min(v)"], whole["max(v)"]) == (v.min(), v.max())
    assert whole["mean(v)"] == pytest.approx(v.mean())
    assert whole["std(v)"] == pytest.approx(v.std())
    assert whole["abs_max(v)"] == v.abs().max()
    assert whole["quantile(v)"] == pytest.approx(v.quantile(0.25))
    assert whole["unique(g)"] == sorted(DF["g"].unique())
    assert ds.unique("k") == [0, 1, 2, 3]
    per_key = ds.groupby("k").aggregate(Count(), Mean("v"), Std("n")).take_all()
    grouped = DF.groupby("k")
    assert [r["count()"] for r in per_key] == grouped.size().tolist()
    assert [r["mean(v)"] for r in per_key] == pytest.approx(grouped["v"].mean().tolist())
    assert [r["std(n)"] for r in per_key] == pytest.approx(grouped["n"].std().tolist())
    total = AggregateFn(init=lambda k: 0, accumulate_row=lambda a, r: a + r["n"],
                        merge=lambda a, b: a + b, name="total")
    assert ds.aggregate(total) == {"total": DF["n"].sum()}


def test_splits_and_zip():
    ds = zd.range(100, override_num_blocks=4)
    train, test = ds.train_test_split(0.25)
    assert (train.count(), test.count()) == (75, 25)
    assert [r["id"] for r in test.take_all()] == list(range(75, 100))
    shuffled_train, _ = ds.train_test_split(10, shuffle=True, seed=3)
    assert shuffled_train.count() == 90
    parts = ds.split(3, equal=True)
    assert [p.count() for p in parts] == [33, 33, 33]
    assert sum(p.count() for p in ds.split(3)) == 100
    zipped = ds.zip(zd.range(100, override_num_blocks=3).map_batches(
        lambda b: {"id": b["id"] * 10}))
    rows = zipped.take_all()
    assert rows[42] == {"id": 42, "id_1": 420}
    with pytest.raises(ValueError, match="different numbers of rows"):
        ds.zip(zd.range(5)).take_all()


def test_progress_bars_and_stats(capsys):
    ctx = zd.DataContext.get_current()
    before = ctx.enable_progress_bars
    ctx.enable_progress_bars = True
    try:
        ds = zd.range(1000, override_num_blocks=4).map_batches(lambda b: b)
        assert ds.count() == 1000
    finally:
        ctx.enable_progress_bars = before
    err = capsys.readouterr().err
    assert "ReadRange->MapBatches(<lambda>)" in err and "rows" in err
    text = ds.stats()
    assert "Operator ReadRange->MapBatches(<lambda>): 4 blocks, 1000 rows" in text
    assert " s CPU, peak memory of a process running it " in text


def test_read_parquet_blocks_and_unknown_arguments(tmp_path):
    zd.range(100, override_num_blocks=2).write_parquet(str(tmp_path))
    assert zd.read_parquet(str(tmp_path)).num_blocks() == 2  # a block per file
    again = zd.read_parquet(str(tmp_path), override_num_blocks=5)
    assert again.num_blocks() == 5 and again.count() == 100
    with pytest.raises(TypeError):
        zd.read_parquet(str(tmp_path), no_such_argument=1)


def test_blocks_take_their_own_size_in_the_store(tmp_path):
    # Parquet's reader hands out columns as chunks sliced from one large buffer, and pyarrow
    # pickles each slice with the whole buffer: such a block once took 7x its size.
    from zactor.testing import store_stats

    n = 2_000_000
    pq.write_table(pa.table({"a": np.arange(n), "b": np.random.default_rng(0).random(n)}),
                   tmp_path / "big.parquet")
    ds = zd.read_parquet(str(tmp_path)).materialize()
    nbytes = sum(m["bytes"] for _, m in ds._plan[0].blocks)
    assert nbytes >= 16 * n
    # the worker that wrote it may hold a spare region for a while (SPARE_TTL_S)
    deadline = time.monotonic() + 10
    while (used := store_stats()[0]["used"]) >= 1.5 * nbytes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert used < 1.5 * nbytes, f"{used} bytes of the store for {nbytes} of rows"
    sliced = pq.read_table(tmp_path / "big.parquet").slice(0, 1000)
    ref = zactor.put(sliced)  # 16 kB of rows, inline: not the 16 MB buffer it slices
    assert store_stats()[0]["used"] <= used and zactor.get(ref).equals(sliced)
    del ds


@zactor.remote(num_cpus=0)
def _consume(it, epochs: int = 1, **batches) -> list:
    return [[int(x) for b in it.iter_batches(**batches) for x in b["id"]]
            for _ in range(epochs)]


def test_streaming_split_streams_disjoint_shares_to_other_processes():
    ds = zd.range(1000, override_num_blocks=10).map_batches(lambda b: {"id": b["id"] * 3})
    a, b = ds.streaming_split(2)
    first, second = zactor.get([_consume.remote(a, 2, batch_size=7),
                                _consume.remote(b, 2, batch_size=7)])
    for epoch in range(2):  # each epoch: every row once, between the two
        assert sorted(first[epoch] + second[epoch]) == [3 * i for i in range(1000)]
    assert "Operator ReadRange->MapBatches(<lambda>): 10 blocks, 1000 rows" in a.stats()
    equal = zactor.get([_consume.remote(it) for it in ds.streaming_split(3, equal=True)])
    assert [len(e[0]) for e in equal] == [333, 333, 333]
    assert len({x for e in equal for x in e[0]}) == 999
    with pytest.raises(ValueError, match="n >= 1"):
        ds.streaming_split(0)


def test_streaming_splits_consumed_one_after_another_finish():
    # more consumers than CPUs: the splits cannot all begin an epoch together
    ctx = zd.DataContext.get_current()
    before, ctx.streaming_split_wait_s = ctx.streaming_split_wait_s, 0.2
    try:
        splits = zd.range(300, override_num_blocks=6).streaming_split(4)
    finally:
        ctx.streaming_split_wait_s = before
    consume = _consume.options(num_cpus=1)
    parts = zactor.get([consume.remote(it) for it in splits], timeout=60)
    assert sorted(x for p in parts for x in p[0]) == list(range(300))
    (only,) = zd.range(50).streaming_split(1)
    for _ in only.iter_batches(batch_size=5):
        break  # left early: the next pass still sees every row
    assert sum(len(b["id"]) for b in only.iter_batches(batch_size=5)) == 50
    assert only.materialize().count() == 50


def test_iterator_and_local_shuffle():
    ds = zd.range(1000, override_num_blocks=5)
    it = ds.iterator()
    assert [len(b["id"]) for b in it.iter_batches(batch_size=300)] == [300, 300, 300, 100]
    assert [len(b["id"]) for b in it.iter_batches(batch_size=300, drop_last=True)] == [300] * 3
    shuffled = [int(x) for b in ds.iter_batches(batch_size=64, local_shuffle_buffer_size=200,
                                                 local_shuffle_seed=1) for x in b["id"]]
    assert sorted(shuffled) == list(range(1000)) and shuffled != list(range(1000))
    assert it.materialize().count() == 1000
    with pytest.raises(ValueError, match="local_shuffle_buffer_size"):
        next(ds.iter_batches(local_shuffle_buffer_size=0))


def test_read_parquet_splits_files_by_row_group(tmp_path):
    df = pd.DataFrame({"a": np.arange(1000), "b": np.arange(1000) % 7})
    pq.write_table(pa.Table.from_pandas(df), tmp_path / "one.parquet", row_group_size=100)
    pq.write_table(pa.Table.from_pandas(df.iloc[:50]), tmp_path / "two.parquet")
    five = zd.read_parquet(str(tmp_path / "one.parquet"), override_num_blocks=5)
    assert five.num_blocks() == 5 and frame(five).equals(df)
    assert zd.read_parquet(str(tmp_path), override_num_blocks=1).num_blocks() == 1
    both = zd.read_parquet(str(tmp_path), override_num_blocks=4, columns=["a"],
                           filter=[("b", "=", 3)])
    expected = pd.concat([df, df.iloc[:50]])
    assert both.num_blocks() == 4
    assert frame(both)["a"].tolist() == expected[expected.b == 3]["a"].tolist()
    ctx = zd.DataContext.get_current()
    before, ctx.target_max_block_size = ctx.target_max_block_size, 3000  # 2 row groups
    try:
        big = zd.read_parquet(str(tmp_path / "one.parquet"))
    finally:
        ctx.target_max_block_size = before
    assert big.num_blocks() == 5 and frame(big).equals(df)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match=r"x\.parquet as parquet"):
        zd.read_parquet(str(tmp_path / "bad"), override_num_blocks=3)


def test_file_reads_take_override_num_blocks(tmp_path):
    zd.from_pandas(DF).repartition(3).write_csv(str(tmp_path))
    assert zd.read_csv(str(tmp_path)).num_blocks() == 3
    one = zd.read_csv(str(tmp_path), override_num_blocks=1)
    assert one.num_blocks() == 1 and frame(one).equals(DF.astype({"v": int}))
    seven = zd.read_csv(str(tmp_path), override_num_blocks=7, include_paths=True)
    assert seven.num_blocks() == 7 and frame(seven).drop(columns="path").equals(
        DF.astype({"v": int}))
    with pytest.raises(ValueError, match="override_num_blocks"):
        zd.read_json(str(tmp_path), override_num_blocks=0)
