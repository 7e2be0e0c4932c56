"""``zactor.train``: Ray Train 2.60's API — data-parallel training on supervised actors.

Example::

    import zactor
    from zactor import train

    def loop(config):
        for step in range(config["steps"]):
            train.report({"step": step, "loss": 1 / (step + 1)})

    trainer = train.DataParallelTrainer(loop, train_loop_config={"steps": 5},
                                        scaling_config=train.ScalingConfig(num_workers=2))
    print(trainer.fit().metrics)
"""

from zactor.train.checkpoint import Checkpoint
from zactor.train.config import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from zactor.train.context import (
    TrainContext,
    get_checkpoint,
    get_context,
    get_dataset_shard,
    report,
)
from zactor.train.exceptions import ControllerError, TrainingFailedError, WorkerGroupError
from zactor.train.predictor import BatchPredictor, Predictor
from zactor.train.result import Result
from zactor.train.trainer import DataParallelTrainer

__all__ = ["BatchPredictor", "Checkpoint", "CheckpointConfig", "ControllerError",
           "DataParallelTrainer", "FailureConfig", "Predictor", "Result", "RunConfig",
           "ScalingConfig", "TrainContext", "TrainingFailedError", "WorkerGroupError",
           "get_checkpoint", "get_context", "get_dataset_shard", "report"]


def __getattr__(name: str):
    # ``ray.train.torch`` / ``ray.train.xgboost`` as attributes, imported when first used
    if name in ("torch", "xgboost"):
        import importlib

        return importlib.import_module(f"zactor.train.{name}")
    raise AttributeError(f"module 'zactor.train' has no attribute {name!r}")
