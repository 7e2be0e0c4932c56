"""What a training function sees from inside a worker: ``get_context()``, ``report``,
``get_checkpoint``, ``get_dataset_shard`` (Ray Train 2.60's functions).

Each worker process runs one training function at a time, in a thread of its own; the
session below is that run's state. ``report`` copies a checkpoint into the run's storage
from the worker itself, then queues the metrics for the controller, which polls for them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from zactor.train.checkpoint import Checkpoint


@dataclass
class _Session:
    world_rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    node_rank: int
    experiment_name: str
    storage: Any  # RunStorage
    attempt: int
    checkpoint: Checkpoint | None
    datasets: dict = field(default_factory=dict)
    reports: list = field(default_factory=list)
    reported: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)
    extra: dict = field(default_factory=dict)  # what a backend adds (the torch device)

    def __getstate__(self) -> dict:
        # made by the controller, sent to its worker: the lock and queue are the worker's
        state = dict(self.__dict__)
        del state["cond"]
        state["reports"] = []
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.cond = threading.Condition()


_session: _Session | None = None


def _set_session(session: _Session | None) -> None:
    global _session
    _session = session


def _current() -> _Session:
    if _session is None:
        raise RuntimeError("this is only available inside a training function run by a "
                           "zactor.train trainer (train_loop_per_worker)")
    return _session


class TrainContext:
    """The worker's place in the run (Ray's ``ray.train.get_context()``)."""

    def get_world_rank(self) -> int:
        return _current().world_rank

    def get_world_size(self) -> int:
        return _current().world_size

    def get_local_rank(self) -> int:
        return _current().local_rank

    def get_local_world_size(self) -> int:
        return _current().local_world_size

    def get_node_rank(self) -> int:
        return _current().node_rank

    def get_experiment_name(self) -> str:
        return _current().experiment_name

    def get_storage(self) -> Any:
        return _current().storage


def get_context() -> TrainContext:
    """This worker's ``TrainContext``.

    Example::

        rank = zactor.train.get_context().get_world_rank()
    """
    _current()
    return TrainContext()


def report(metrics: dict[str, Any], checkpoint: Checkpoint | None = None,
           checkpoint_dir_name: str | None = None) -> None:
    """Report ``metrics`` (every worker, the same number of times) and, optionally, a
    checkpoint: its files are copied into the run's storage now (every rank that passes
    one adds its files to the same checkpoint), so the directory may be deleted after."""
    session = _current()
    if not isinstance(metrics, dict):
        raise TypeError(f"report() takes a dict of metrics, got {type(metrics).__name__}")
    if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
        raise TypeError("checkpoint must be a zactor.train.Checkpoint, got "
                        f"{type(checkpoint).__name__}")
    index = session.reported
    if checkpoint is not None:
        with checkpoint.as_directory() as local:
            session.storage.upload(local, session.attempt, index)
    session.reported += 1
    with session.cond:
        session.reports.append({"index": index, "metrics": dict(metrics),
                                "checkpoint": checkpoint is not None})
        session.cond.notify_all()


def get_checkpoint() -> Checkpoint | None:
    """The checkpoint to resume from: the run's latest, after a restart or when a run of
    the same name ran before; None at a fresh start."""
    return _current().checkpoint


def get_dataset_shard(dataset_name: str | None = None):
    """This worker's ``DataIterator`` over the dataset given to the trainer as
    ``datasets[dataset_name]`` (a disjoint share of it)."""
    datasets = _current().datasets
    if dataset_name is None and len(datasets) == 1:
        return next(iter(datasets.values()))
    if dataset_name not in datasets:
        raise KeyError(f"no dataset {dataset_name!r} was given to the trainer (it has "
                       f"{sorted(datasets)})")
    return datasets[dataset_name]
