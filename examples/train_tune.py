"""Train and tune: data-parallel training with checkpoints, a hyperparameter search with
early stopping, and batch prediction from the best checkpoint — Ray's API, on zactor.

    python examples/train_tune.py
"""

import os
import tempfile

import numpy as np
import pandas as pd
import torch

import zactor as ray
from zactor import train, tune
from zactor.train.torch import TorchPredictor, TorchTrainer, prepare_model
from zactor.tune.schedulers import ASHAScheduler


def make_model():
    return torch.nn.Linear(2, 1)


def train_loop(config):
    """Each worker fits y = 3a - 2b + 1 on its shard of the dataset (DDP syncs gradients)."""
    model = prepare_model(make_model())
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"])
    shard = train.get_dataset_shard("train")
    for epoch in range(config["epochs"]):
        for batch in shard.iter_torch_batches(batch_size=64):
            x = torch.stack([batch["a"], batch["b"]], dim=1).float()
            loss = torch.nn.functional.mse_loss(model(x).squeeze(1), batch["y"].float())
            opt.zero_grad()
            loss.backward()
            opt.step()
        with tempfile.TemporaryDirectory() as d:
            ckpt = None
            if train.get_context().get_world_rank() == 0:
                inner = model.module if hasattr(model, "module") else model
                torch.save(inner.state_dict(), os.path.join(d, "model.pt"))
                ckpt = train.Checkpoint.from_directory(d)
            train.report({"epoch": epoch, "loss": loss.item()}, checkpoint=ckpt)


def objective(config):
    """A trial: the loss of a noisy quadratic, falling with steps (ASHA stops bad ones)."""
    for step in range(1, 21):
        tune.report({"loss": (config["x"] - 2) ** 2 + 1 / step})


def main() -> None:
    ray.init(num_cpus=4, log_to_driver=False)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=2048), rng.normal(size=2048)
    ds = ray.data.from_pandas(pd.DataFrame({"a": a, "b": b, "y": 3 * a - 2 * b + 1}))
    with tempfile.TemporaryDirectory() as storage:
        result = TorchTrainer(
            train_loop, train_loop_config={"lr": 0.1, "epochs": 5},
            scaling_config=train.ScalingConfig(num_workers=2),
            run_config=train.RunConfig(name="linear", storage_path=storage,
                                       checkpoint_config=train.CheckpointConfig(
                                           num_to_keep=2, checkpoint_score_attribute="loss",
                                           checkpoint_score_order="min")),
            datasets={"train": ds}).fit()
        print(f"trained: loss {result.metrics['loss']:.4f} after epoch "
              f"{result.metrics['epoch']}, {len(result.best_checkpoints)} checkpoints kept")

        grid = tune.Tuner(
            objective, param_space={"x": tune.uniform(-5, 5)},
            tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=20,
                                        scheduler=ASHAScheduler(max_t=20, grace_period=2)),
            run_config=tune.RunConfig(storage_path=storage, verbose=0)).fit()
        best = grid.get_best_result()
        iterations = sum(r.metrics["training_iteration"] for r in grid)
        print(f"tuned: best x = {best.config['x']:.3f} (loss {best.metrics['loss']:.3f}); "
              f"ASHA ran {iterations} of {20 * 20} iterations")

        scored = train.BatchPredictor.from_checkpoint(
            result.checkpoint, TorchPredictor, model=make_model()).predict(
            ray.data.from_items([{"a": 1.0, "b": 1.0}, {"a": 0.0, "b": 2.0}]),
            feature_columns=["a", "b"])
        print("predicted for (1, 1) and (0, 2):",
              [round(float(p), 2) for p in scored.to_pandas()["predictions"]],
              "(exactly: 2.0 and -3.0)")
    ray.shutdown()


if __name__ == "__main__":
    main()
