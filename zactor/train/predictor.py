"""Batch prediction in Ray AIR 2.4's shape: ``BatchPredictor.from_checkpoint(checkpoint,
predictor_cls).predict(dataset)``, written on ``Dataset.map_batches`` with an actor pool
(each actor loads the model once). The Ray 2.x way works as it is: ``ds.map_batches(
PredictorClass, concurrency=n, fn_constructor_kwargs={"checkpoint": ckpt})``.
"""

from __future__ import annotations

from typing import Any

from zactor.train.checkpoint import Checkpoint


class Predictor:
    """A model that scores batches: ``from_checkpoint`` loads it, ``predict`` takes a
    pandas DataFrame of features and gives a DataFrame of predictions."""

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, **kwargs) -> Predictor:
        raise NotImplementedError

    def predict(self, data, **kwargs):
        raise NotImplementedError


class _Scorer:
    """The callable class each actor of the pool runs."""

    def __init__(self, checkpoint: Checkpoint, predictor_cls: type, predictor_kwargs: dict,
                 feature_columns: list | None, keep_columns: list | None,
                 predict_kwargs: dict) -> None:
        self.predictor = predictor_cls.from_checkpoint(checkpoint, **predictor_kwargs)
        self.feature_columns, self.keep_columns = feature_columns, keep_columns or []
        self.predict_kwargs = predict_kwargs

    def __call__(self, batch):
        import pandas as pd

        features = batch[self.feature_columns] if self.feature_columns else \
            batch.drop(columns=[c for c in self.keep_columns if c in batch.columns])
        out = self.predictor.predict(features, **self.predict_kwargs)
        if not isinstance(out, pd.DataFrame):
            out = pd.DataFrame({"predictions": list(out)} if not isinstance(out, dict)
                               else out)
        for column in self.keep_columns:
            out[column] = batch[column].to_numpy()
        return out


class BatchPredictor:
    """Example::

        predictor = BatchPredictor.from_checkpoint(result.checkpoint, TorchPredictor,
                                                   model=MyNet())
        predictions = predictor.predict(ds, feature_columns=["x"], keep_columns=["id"],
                                        min_scoring_workers=2)
    """

    def __init__(self, checkpoint: Checkpoint, predictor_cls: type, **predictor_kwargs):
        if not (isinstance(predictor_cls, type) and issubclass(predictor_cls, Predictor)):
            raise TypeError("predictor_cls must be a zactor.train Predictor class, got "
                            f"{predictor_cls!r}")
        self.checkpoint, self.predictor_cls = checkpoint, predictor_cls
        self.predictor_kwargs = predictor_kwargs

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, predictor_cls: type,
                        **kwargs) -> BatchPredictor:
        return cls(checkpoint, predictor_cls, **kwargs)

    def predict(self, data, *, feature_columns: list[str] | None = None,
                keep_columns: list[str] | None = None, batch_size: int = 4096,
                min_scoring_workers: int = 1, max_scoring_workers: int | None = None,
                num_cpus_per_worker: float | None = None,
                num_gpus_per_worker: float | None = None, separate_gpu_stage: bool = True,
                ray_remote_args: dict | None = None, **predict_kwargs) -> Any:
        """A dataset of ``data``'s predictions (plus its ``keep_columns``), scored by a pool
        of ``min_scoring_workers`` to ``max_scoring_workers`` actors."""
        if min_scoring_workers < 1 or (max_scoring_workers is not None and
                                       max_scoring_workers < min_scoring_workers):
            raise ValueError("need 1 <= min_scoring_workers <= max_scoring_workers")
        hi = max_scoring_workers or min_scoring_workers
        return data.map_batches(
            _Scorer, batch_format="pandas", batch_size=batch_size,
            fn_constructor_kwargs={"checkpoint": self.checkpoint,
                                   "predictor_cls": self.predictor_cls,
                                   "predictor_kwargs": self.predictor_kwargs,
                                   "feature_columns": feature_columns,
                                   "keep_columns": keep_columns,
                                   "predict_kwargs": predict_kwargs},
            concurrency=(min_scoring_workers, hi) if hi > min_scoring_workers else hi,
            num_cpus=num_cpus_per_worker, num_gpus=num_gpus_per_worker,
            **(ray_remote_args or {}))
