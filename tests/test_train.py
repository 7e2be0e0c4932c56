"""zactor.train on a real cluster: DDP on a small model, checkpoints kept and reloaded,
disjoint dataset shards, a worker SIGKILLed mid-training, failures past max_failures."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time

import pytest

import zactor
import zactor.data as zd
from zactor import train
from zactor.train import _storage, _worker_group

torch = pytest.importorskip("torch")
from zactor.train.torch import TorchTrainer, prepare_data_loader, prepare_model  # noqa: E402

CLUSTER_KWARGS = {"num_cpus": 4, "num_gpus": 2}  # declared GPUs: no CUDA here
pytestmark = [pytest.mark.usefixtures("cluster"), pytest.mark.timeout(180)]


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(512, 3, generator=g) * 2 - 1
    y = x @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.7
    return x, y


def _ddp_loop(config):
    torch.manual_seed(0)
    x, y = _data()
    loader = prepare_data_loader(torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True))
    model = prepare_model(torch.nn.Linear(3, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    ctx = train.get_context()
    for epoch in range(config["epochs"]):
        batches = 0
        for xb, yb in loader:
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(xb), yb).backward()
            opt.step()
            batches += 1
        with torch.no_grad():
            loss = torch.nn.functional.mse_loss(model(x), y).item()
        with tempfile.TemporaryDirectory() as d:
            ckpt = None
            if ctx.get_world_rank() == 0:
                inner = model.module if hasattr(model, "module") else model
                torch.save(inner.state_dict(), os.path.join(d, "model.pt"))
                ckpt = train.Checkpoint.from_directory(d)
            train.report({"loss": loss, "epoch": epoch, "batches": batches,
                          "rank": ctx.get_world_rank(), "world": ctx.get_world_size(),
                          "local": ctx.get_local_rank(), "node": ctx.get_node_rank()},
                         checkpoint=ckpt)


def test_ddp_loss_falls_and_the_best_checkpoint_reloads(tmp_path):
    result = TorchTrainer(
        _ddp_loop, train_loop_config={"epochs": 6},
        scaling_config=train.ScalingConfig(num_workers=2),
        run_config=train.RunConfig(name="ddp", storage_path=str(tmp_path),
                                   checkpoint_config=train.CheckpointConfig(
                                       num_to_keep=2, checkpoint_score_attribute="loss",
                                       checkpoint_score_order="min"))).fit()
    assert result.error is None and result.num_failures == 0
    assert result.path == str(tmp_path / "ddp")
    frame = result.metrics_dataframe
    assert len(frame) == 2 and list(frame["epoch"]) == [4, 5]  # the two best: the last two
    assert result.metrics["epoch"] == 5 and result.metrics["rank"] == 0
    assert result.metrics["world"] == 2 and result.metrics["node"] == 0
    # 512 samples, batches of 32, shared by 2 workers: the DistributedSampler at work
    assert result.metrics["batches"] == 8
    first = zactor.get(_first_loss.remote())
    assert result.metrics["loss"] < first / 10
    kept = sorted(p.name for p in (tmp_path / "ddp").iterdir())
    assert kept == ["checkpoint_000004", "checkpoint_000005", "checkpoints.json"]
    best, metrics = min(result.best_checkpoints, key=lambda cm: cm[1]["loss"])
    model = torch.nn.Linear(3, 1)
    with best.as_directory() as d:
        model.load_state_dict(torch.load(os.path.join(d, "model.pt")))
    x, y = _data()
    with torch.no_grad():
        assert torch.nn.functional.mse_loss(model(x), y).item() == pytest.approx(
            metrics["loss"], rel=1e-6)
    again = train.Result.from_path(result.path)
    assert again.checkpoint == result.checkpoint and again.metrics == result.metrics


@zactor.remote
def _first_loss() -> float:
    torch.manual_seed(0)
    x, y = _data()
    with torch.no_grad():
        return torch.nn.functional.mse_loss(torch.nn.Linear(3, 1)(x), y).item()


def _shard_loop(config):
    seen = []
    for _ in range(2):
        epoch = [int(i) for b in train.get_dataset_shard("train").iter_torch_batches(
            batch_size=16) for i in b["id"]]
        seen.append(epoch)
        train.report({"ids": epoch, "rank": train.get_context().get_world_rank()})
    with open(os.path.join(config["out"], f"rank{train.get_context().get_world_rank()}"),
              "w") as f:
        json.dump(seen, f)


def test_workers_get_disjoint_shards_every_epoch(tmp_path):
    ds = zd.range(200, override_num_blocks=8).map_batches(lambda b: {"id": b["id"] * 2})
    train.DataParallelTrainer(_shard_loop, train_loop_config={"out": str(tmp_path)},
                              scaling_config=train.ScalingConfig(num_workers=2),
                              run_config=train.RunConfig(storage_path=str(tmp_path)),
                              datasets={"train": ds}).fit()
    ranks = [json.loads((tmp_path / f"rank{r}").read_text()) for r in range(2)]
    for epoch in range(2):
        a, b = ranks[0][epoch], ranks[1][epoch]
        assert len(a) == len(b) == 100 and not set(a) & set(b)
        assert sorted(a + b) == [2 * i for i in range(200)]


def _resuming_loop(config):
    ctx = train.get_context()
    start = 0
    ckpt = train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            start = json.loads(open(os.path.join(d, "state.json")).read())["step"] + 1
    for step in range(start, config["steps"]):
        if step == 3 and ctx.get_world_rank() == 1 and config["kill_at_3"]:
            marker = os.path.join(config["dir"], "rank1.pid")
            if not os.path.exists(marker + ".done"):
                # the controller commits checkpoints as reports arrive: wait for step 2's
                committed = os.path.join(config["dir"], "killed", "checkpoint_000002")
                deadline = time.monotonic() + 60
                while not os.path.exists(committed) and time.monotonic() < deadline:
                    time.sleep(0.01)
                with open(marker + ".tmp", "w") as f:
                    f.write(str(os.getpid()))
                os.rename(marker + ".tmp", marker)
                time.sleep(60)  # the test kills this process meanwhile
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"step": step}, f)
            train.report({"step": step, "start": start},
                         checkpoint=train.Checkpoint.from_directory(d))


def _kill_when_ready(folder: str) -> threading.Thread:
    def kill() -> None:
        marker = os.path.join(folder, "rank1.pid")
        deadline = time.monotonic() + 60
        while not os.path.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.02)
        pid = int(open(marker).read())
        os.rename(marker, marker + ".done")
        os.kill(pid, signal.SIGKILL)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def test_a_worker_sigkilled_mid_training_resumes_from_its_checkpoint(tmp_path):
    killer = _kill_when_ready(str(tmp_path))
    result = train.DataParallelTrainer(
        _resuming_loop, train_loop_config={"steps": 6, "kill_at_3": True,
                                           "dir": str(tmp_path)},
        scaling_config=train.ScalingConfig(num_workers=2),
        run_config=train.RunConfig(name="killed", storage_path=str(tmp_path),
                                   failure_config=train.FailureConfig(max_failures=1))).fit()
    killer.join(timeout=5)
    assert os.path.exists(tmp_path / "rank1.pid.done")  # the kill did happen
    assert result.num_failures == 1
    assert result.metrics == {"step": 5, "start": 3}  # resumed after the step-2 checkpoint
    steps = [m["step"] for _, m in result.best_checkpoints]
    assert steps == [0, 1, 2, 3, 4, 5]  # every step checkpointed once, none lost
    leftovers = [p.name for p in (tmp_path / "killed").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    # a run of the same name starts from where that one ended
    again = train.DataParallelTrainer(
        _resuming_loop, train_loop_config={"steps": 8, "kill_at_3": False},
        scaling_config=train.ScalingConfig(num_workers=2),
        run_config=train.RunConfig(name="killed", storage_path=str(tmp_path))).fit()
    assert again.metrics == {"step": 7, "start": 6}


def _failing_loop(config):
    if train.get_context().get_world_rank() == config["rank"]:
        raise ValueError(f"boom on rank {config['rank']}")
    train.report({"ok": 1})


def test_failures_past_max_failures_raise_with_the_original_error(tmp_path):
    run = train.RunConfig(storage_path=str(tmp_path),
                          failure_config=train.FailureConfig(max_failures=2))
    with pytest.raises(train.WorkerGroupError, match="boom on rank 1") as info:
        train.DataParallelTrainer(_failing_loop, train_loop_config={"rank": 1},
                                  scaling_config=train.ScalingConfig(num_workers=2),
                                  run_config=run).fit()
    assert isinstance(info.value, train.TrainingFailedError)
    assert "after 2 restart(s)" in str(info.value) and "_failing_loop" in str(info.value)
    assert isinstance(info.value.worker_failures[1], ValueError)


def test_bad_configuration_is_named(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="num_workers"):
        train.ScalingConfig(num_workers=0)
    with pytest.raises(ValueError, match="placement_strategy"):
        train.ScalingConfig(placement_strategy="NEAR")
    with pytest.raises(ValueError, match="checkpoint_score_order"):
        train.CheckpointConfig(checkpoint_score_order="best")
    with pytest.raises(TypeError, match="zactor.data Dataset"):
        train.DataParallelTrainer(_failing_loop, datasets={"train": [1, 2]})
    with pytest.raises(RuntimeError, match="inside a training function"):
        train.get_context()
    monkeypatch.setattr(_worker_group, "PLACEMENT_TIMEOUT_S", 1.0)
    with pytest.raises(train.ControllerError, match="could not be placed"):
        train.DataParallelTrainer(
            _failing_loop, scaling_config=train.ScalingConfig(
                num_workers=2, resources_per_worker={"CPU": 3}),
            run_config=train.RunConfig(storage_path=str(tmp_path))).fit()


def test_a_checkpoint_is_complete_or_absent(tmp_path):
    storage = _storage.RunStorage(str(tmp_path), "run")
    storage.prepare()
    manager = _storage.CheckpointManager(train.CheckpointConfig(), storage)
    src = tmp_path / "src"
    src.mkdir()
    (src / "weights").write_bytes(b"x" * 1000)
    storage.upload(str(src), attempt=0, report=0)
    manager.register(0, 0, {"step": 0})
    storage.upload(str(src), attempt=0, report=1)  # ... and the run dies before the commit
    again = _storage.CheckpointManager(train.CheckpointConfig(), storage)
    assert [m for _, m in again.best_checkpoints()] == [{"step": 0}]
    storage.prepare()  # a new start clears what was being written
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint_000000",
                                                                    "checkpoints.json"]
    ckpt = again.latest[0]
    ckpt.set_metadata({"epoch": 3})
    ckpt.update_metadata({"note": "best"})
    assert ckpt.get_metadata() == {"epoch": 3, "note": "best"}
    copy = ckpt.to_directory(str(tmp_path / "copy"))
    assert open(os.path.join(copy, "weights"), "rb").read() == b"x" * 1000
    with pytest.raises(FileNotFoundError):
        train.Checkpoint.from_directory(str(tmp_path / "missing"))


def test_ray_train_programs_run_with_the_import_switched(tmp_path):
    import zactor as ray
    from zactor.train import ScalingConfig

    def loop():
        ray.train.report({"world": ray.train.get_context().get_world_size()})

    result = ray.train.torch.TorchTrainer(
        loop, scaling_config=ScalingConfig(num_workers=2),
        run_config=ray.train.RunConfig(storage_path=str(tmp_path))).fit()
    assert result.metrics == {"world": 2}


def _xgb_loop(config):
    import xgboost

    from zactor.train.xgboost import RayTrainReportCallback

    part = train.get_dataset_shard("train").materialize().to_pandas()
    dtrain = xgboost.DMatrix(part.drop(columns="y"), label=part["y"])
    xgboost.train(config, dtrain, evals=[(dtrain, "train")], num_boost_round=20,
                  verbose_eval=False, callbacks=[RayTrainReportCallback(frequency=5)])


def test_distributed_xgboost_matches_single_process_accuracy(tmp_path):
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    xgboost = pytest.importorskip("xgboost")
    from zactor.train.xgboost import RayTrainReportCallback, XGBoostTrainer

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 5))
    y = ((x[:, 0] + x[:, 1] * x[:, 2] - x[:, 3]) > 0).astype(int)
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(5)]).assign(y=y)
    params = {"objective": "binary:logistic", "eval_metric": ["logloss", "error"],
              "tree_method": "hist", "max_depth": 4, "eta": 0.3}
    result = XGBoostTrainer(_xgb_loop, train_loop_config=params,
                            scaling_config=train.ScalingConfig(num_workers=2),
                            run_config=train.RunConfig(storage_path=str(tmp_path)),
                            datasets={"train": zd.from_pandas(df)}).fit()
    assert len(result.best_checkpoints) == 4  # every 5 rounds of 20
    booster = RayTrainReportCallback.get_model(result.checkpoint)
    full = xgboost.DMatrix(df.drop(columns="y"), label=df["y"])
    distributed = ((booster.predict(full) > 0.5) == y).mean()
    single = ((xgboost.train(params, full, num_boost_round=20).predict(full) > 0.5) == y).mean()
    assert distributed > 0.9 and abs(distributed - single) < 0.02
    # the metrics are the whole data set's (allreduced), not one shard's
    assert result.metrics["train-error"] == pytest.approx(1 - distributed, abs=1e-6)
    from zactor.train.xgboost import XGBoostPredictor

    scored = train.BatchPredictor.from_checkpoint(result.checkpoint, XGBoostPredictor).predict(
        zd.from_pandas(df.assign(row=range(len(df)))), keep_columns=["row", "y"],
        batch_size=500)
    frame = scored.to_pandas().sort_values("row")
    assert np.allclose(frame["predictions"].to_numpy(), booster.predict(full), atol=1e-6)


def test_batch_prediction_matches_the_model_in_plain_torch(tmp_path):
    import numpy as np
    import pandas as pd

    from zactor.train.torch import TorchPredictor

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    torch.save(model.state_dict(), ckpt_dir / "model.pt")
    checkpoint = train.Checkpoint.from_directory(str(ckpt_dir))
    x = np.random.default_rng(0).normal(size=(1000, 3)).astype("float32")
    df = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "id": np.arange(1000)})
    predictor = train.BatchPredictor.from_checkpoint(
        checkpoint, TorchPredictor, model=torch.nn.Sequential(
            torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)))
    out = predictor.predict(zd.from_pandas(df).repartition(4), feature_columns=["a", "b", "c"],
                            keep_columns=["id"], batch_size=128, min_scoring_workers=2)
    got = out.to_pandas().sort_values("id")
    with torch.no_grad():
        expected = model(torch.as_tensor(x)).numpy().reshape(-1)
    assert got["id"].tolist() == list(range(1000))
    assert np.allclose(got["predictions"].to_numpy(), expected, atol=1e-6)
    # the Ray 2.x way: a callable class in an actor pool, the checkpoint as an argument
    class Scorer:
        def __init__(self, checkpoint):
            self.predictor = TorchPredictor.from_checkpoint(checkpoint, model=torch.nn.Sequential(
                torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)))

        def __call__(self, batch):
            return self.predictor.predict(batch[["a", "b", "c"]]).assign(id=batch["id"].values)

    again = zd.from_pandas(df).map_batches(Scorer, batch_format="pandas", concurrency=2,
                                           fn_constructor_kwargs={"checkpoint": checkpoint})
    assert np.allclose(again.to_pandas().sort_values("id")["predictions"], expected, atol=1e-6)
    with pytest.raises(TypeError, match="Predictor class"):
        train.BatchPredictor.from_checkpoint(checkpoint, object)


def test_the_readme_example_runs():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "examples/train_tune.py"], capture_output=True,
                         text=True, timeout=150)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("trained: loss 0.0") and "2 checkpoints kept" in lines[0]
    assert lines[1].startswith("tuned: best x = ")
    assert lines[2].endswith("[2.0, -3.0] (exactly: 2.0 and -3.0)")


def _gpu_loop(config):
    from zactor.train.torch import get_device

    rank = train.get_context().get_world_rank()
    with open(os.path.join(config["out"], f"gpu{rank}"), "w") as f:
        json.dump({"ids": zactor.get_gpu_ids(), "visible": os.environ["CUDA_VISIBLE_DEVICES"],
                   "device": str(get_device()),
                   "backend": torch.distributed.get_backend()}, f)
    train.report({"rank": rank})


def test_use_gpu_gives_each_worker_its_own_gpu(tmp_path):
    TorchTrainer(_gpu_loop, train_loop_config={"out": str(tmp_path)},
                 scaling_config=train.ScalingConfig(num_workers=2, use_gpu=True),
                 run_config=train.RunConfig(storage_path=str(tmp_path))).fit()
    seen = [json.loads((tmp_path / f"gpu{r}").read_text()) for r in range(2)]
    assert sorted(s["ids"][0] for s in seen) == [0, 1]
    assert all(s["visible"] == str(s["ids"][0]) for s in seen)
    # declared GPUs without CUDA: the CPU, and gloo (NCCL where torch sees CUDA)
    assert all(s["device"] == "cpu" and s["backend"] == "gloo" for s in seen)
