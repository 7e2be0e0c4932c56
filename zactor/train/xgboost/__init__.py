"""``zactor.train.xgboost``: distributed XGBoost (Ray Train 2.60's per-worker-function
``XGBoostTrainer`` and ``RayTrainReportCallback``).

The controller starts XGBoost's own tracker (``xgboost.tracker.RabitTracker``) for each run
of the workers, and every worker runs the training function inside XGBoost's collective
(``xgboost.collective.CommunicatorContext``), so ``xgboost.train`` in it builds one model
from all the workers' shards.

Example::

    def train_fn(config):
        df = zactor.train.get_dataset_shard("train").materialize().to_pandas()
        dtrain = xgboost.DMatrix(df.drop(columns="y"), label=df["y"])
        xgboost.train(config, dtrain, evals=[(dtrain, "train")], num_boost_round=20,
                      callbacks=[RayTrainReportCallback()])

    XGBoostTrainer(train_fn, train_loop_config={"objective": "binary:logistic"},
                   scaling_config=ScalingConfig(num_workers=2),
                   datasets={"train": ds}).fit()
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

from zactor.train import context
from zactor.train._worker_group import Backend, WorkerGroup
from zactor.train.checkpoint import Checkpoint
from zactor.train.predictor import Predictor
from zactor.train.trainer import DataParallelTrainer

log = logging.getLogger(__name__)

try:
    from xgboost.callback import TrainingCallback as _Callback
except ImportError:  # pragma: no cover - xgboost is part of the train extra
    _Callback = object


class _XGBoostBackend(Backend):
    def __init__(self) -> None:
        self._tracker = None  # the controller's, for the current run of the workers

    def __getstate__(self) -> dict:
        return {"_tracker": None}  # the tracker stays with the controller

    def on_start(self, group: WorkerGroup) -> Any:
        from xgboost.tracker import RabitTracker

        self._free()
        tracker = RabitTracker(n_workers=group.n, host_ip=_controller_address(group),
                               sortby="task")
        tracker.start()
        self._tracker = tracker
        return tracker.worker_args()

    def _free(self) -> None:
        tracker, self._tracker = self._tracker, None
        if tracker is not None:
            try:
                tracker.free()
            except Exception as exc:  # noqa: BLE001 - a tracker whose workers died
                log.debug("freeing the XGBoost tracker: %s", exc)

    def on_shutdown(self) -> None:
        self._free()

    def on_worker_start(self, session: context._Session, info: Any) -> None:
        import xgboost.collective

        args = {**info, "dmlc_task_id": str(session.world_rank)}
        session.extra["xgboost"] = xgboost.collective.CommunicatorContext(**args)
        session.extra["xgboost"].__enter__()

    def on_worker_end(self, session: context._Session) -> None:
        ctx = session.extra.pop("xgboost", None)
        if ctx is not None:
            ctx.__exit__(None, None, None)


def _controller_address(group: WorkerGroup) -> str:
    """This process's address as the workers reach it (the tracker listens here)."""
    import socket

    remote = next((p["address"] for p in group.placement if p["address"] != "127.0.0.1"),
                  None)
    if remote is None:
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((remote, 9))  # no packet is sent: this picks the interface toward it
        return s.getsockname()[0]


class XGBoostTrainer(DataParallelTrainer):
    """Runs ``train_loop_per_worker`` on every worker inside XGBoost's collective."""

    def __init__(self, train_loop_per_worker, *, train_loop_config: dict | None = None,
                 xgboost_config: Any = None, scaling_config=None, run_config=None,
                 datasets: dict | None = None, resume_from_checkpoint=None,
                 **kwargs) -> None:
        if not callable(train_loop_per_worker):
            raise TypeError("XGBoostTrainer takes a training function (Ray 2.60's form): "
                            "train_loop_per_worker(config) calling xgboost.train")
        super().__init__(train_loop_per_worker, train_loop_config=train_loop_config,
                         scaling_config=scaling_config, run_config=run_config,
                         datasets=datasets, resume_from_checkpoint=resume_from_checkpoint,
                         **kwargs)

    def _backend(self) -> Backend:
        return _XGBoostBackend()

    @staticmethod
    def get_model(checkpoint: Checkpoint, filename: str = "model.ubj"):
        return RayTrainReportCallback.get_model(checkpoint, filename)


class RayTrainReportCallback(_Callback):
    """An ``xgboost.train`` callback that reports the evaluation metrics after every
    round (``metrics``: which ones, or a {reported name: xgboost name} dict; all by
    default), and saves the model as a checkpoint every ``frequency`` rounds and at the end
    (from rank 0)."""

    CHECKPOINT_NAME = "model.ubj"

    def __init__(self, metrics: str | list | dict | None = None,
                 filename: str = CHECKPOINT_NAME, frequency: int = 0,
                 checkpoint_at_end: bool = True) -> None:
        if isinstance(metrics, str):
            metrics = [metrics]
        self.metrics = metrics
        self.filename = filename
        self.frequency = frequency
        self.checkpoint_at_end = checkpoint_at_end
        self._last_metrics: dict = {}
        self._last_round = -1

    @staticmethod
    def get_model(checkpoint: Checkpoint, filename: str = CHECKPOINT_NAME):
        """The ``xgboost.Booster`` saved in ``checkpoint``."""
        import xgboost

        booster = xgboost.Booster()
        with checkpoint.as_directory() as d:
            booster.load_model(os.path.join(d, filename))
        return booster

    def _flatten(self, evals_log: dict) -> dict:
        flat = {f"{data}-{metric}": values[-1] for data, metrics in evals_log.items()
                for metric, values in metrics.items()}
        if self.metrics is None:
            return flat
        if isinstance(self.metrics, dict):
            return {name: flat[key] for name, key in self.metrics.items() if key in flat}
        return {name: flat[name] for name in self.metrics if name in flat}

    def _report(self, model, metrics: dict, with_checkpoint: bool) -> None:
        from zactor import train

        if not with_checkpoint:
            train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            ckpt = None
            if train.get_context().get_world_rank() == 0:
                model.save_model(os.path.join(d, self.filename))
                ckpt = Checkpoint.from_directory(d)
            train.report(metrics, checkpoint=ckpt)

    def after_iteration(self, model, epoch: int, evals_log: dict) -> bool:
        self._last_metrics = self._flatten(evals_log)
        self._last_round = epoch
        due = self.frequency > 0 and (epoch + 1) % self.frequency == 0
        self._report(model, self._last_metrics, due)
        return False

    def after_training(self, model):
        if self.checkpoint_at_end and not (self.frequency > 0 and
                                           (self._last_round + 1) % self.frequency == 0):
            # one more report, with the final model (every worker reports it)
            self._report(model, self._last_metrics, True)
        return model


class XGBoostPredictor(Predictor):
    """Scores batches with an ``xgboost.Booster`` (Ray AIR's ``XGBoostPredictor``)."""

    def __init__(self, model, preprocessor: Any = None) -> None:
        self.model, self.preprocessor = model, preprocessor

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, filename: str = "model.ubj",
                        **_kwargs) -> XGBoostPredictor:
        return cls(RayTrainReportCallback.get_model(checkpoint, filename))

    def predict(self, data, **predict_kwargs):
        import pandas as pd
        import xgboost

        if self.preprocessor is not None:
            data = self.preprocessor.transform_batch(data)
        out = self.model.predict(xgboost.DMatrix(data), **predict_kwargs)
        return pd.DataFrame({"predictions": list(out) if out.ndim > 1 else out})


__all__ = ["RayTrainReportCallback", "XGBoostPredictor", "XGBoostTrainer"]
