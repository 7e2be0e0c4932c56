"""Errors of zactor.train, at Ray 2.60's names (``ray.train.TrainingFailedError``...)."""

from __future__ import annotations


class TrainingFailedError(RuntimeError):
    """``fit()`` failed for good: past ``FailureConfig.max_failures`` restarts, or on an
    error that no restart can fix. The message carries the original error's."""


class WorkerGroupError(TrainingFailedError):
    """A training worker raised, or its process died, and no restart was left.

    ``worker_failures`` maps a world rank to the exception that worker raised (or to the
    ``ActorDiedError`` of a worker whose process died)."""

    def __init__(self, message: str, worker_failures: dict[int, BaseException]) -> None:
        super().__init__(message)
        self.worker_failures = worker_failures


class ControllerError(TrainingFailedError):
    """The training run itself failed (the workers could not be placed or set up)."""
