"""``zactor.tune``: Ray Tune 2.60's API — hyperparameter search over trials that run on
warm, supervised actors.

Example::

    from zactor import tune

    def objective(config):
        for step in range(10):
            tune.report({"loss": (config["x"] - 3) ** 2})

    grid = tune.Tuner(objective, param_space={"x": tune.grid_search([1, 2, 3, 4])},
                      tune_config=tune.TuneConfig(metric="loss", mode="min")).fit()
    print(grid.get_best_result().config)      # {'x': 3}
"""

from zactor.train.checkpoint import Checkpoint
from zactor.train.config import CheckpointConfig, FailureConfig, RunConfig
from zactor.tune import schedulers, search
from zactor.tune._session import get_checkpoint, get_trial_dir, get_trial_id, report
from zactor.tune.result_grid import Result, ResultGrid
from zactor.tune.search.sample import (
    choice,
    grid_search,
    lograndint,
    loguniform,
    qloguniform,
    qrandint,
    qrandn,
    quniform,
    randint,
    randn,
    sample_from,
    uniform,
)
from zactor.tune.trainable import Trainable, with_parameters, with_resources
from zactor.tune.tuner import TuneConfig, Tuner

__all__ = ["Checkpoint", "CheckpointConfig", "FailureConfig", "Result", "ResultGrid",
           "RunConfig", "Trainable", "TuneConfig", "Tuner", "choice", "get_checkpoint",
           "get_trial_dir", "get_trial_id", "grid_search", "lograndint", "loguniform",
           "qloguniform", "qrandint", "qrandn", "quniform", "randint", "randn", "report",
           "sample_from", "schedulers", "search", "uniform", "with_parameters",
           "with_resources"]
