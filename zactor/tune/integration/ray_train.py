"""``TuneReportCallback``: a trainer run inside a Tune trial reports each of its steps to
the trial (Ray 2.60's ``ray.tune.integration.ray_train.TuneReportCallback``).

Example::

    def train_driver(config):
        TorchTrainer(loop, train_loop_config=config, scaling_config=...,
                     run_config=train.RunConfig(callbacks=[TuneReportCallback()])).fit()

    tune.Tuner(train_driver, param_space={"lr": tune.loguniform(1e-4, 1e-1)}).fit()
"""

from __future__ import annotations

from typing import Any

from zactor.tune import _session

CHECKPOINT_PATH_KEY = "checkpoint_path"


class TuneReportCallback:
    """Rank 0's metrics of every step, and the path of the step's checkpoint, reported to
    the Tune trial the trainer runs in (the checkpoint is already in the trainer's
    storage, so it is not copied again)."""

    def __init__(self) -> None:
        if _session._session is None:
            raise RuntimeError("TuneReportCallback must be used in a Tune trial")

    def after_report(self, run_context: Any, metrics: list[dict], checkpoint: Any) -> None:
        out = dict(metrics[0])
        if checkpoint is not None:
            out[CHECKPOINT_PATH_KEY] = checkpoint.path
        _session.report(out)
