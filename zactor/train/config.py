"""How a training run is sized and kept: ScalingConfig, RunConfig, CheckpointConfig,
FailureConfig (Ray Train 2.60's names and fields)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


@dataclass
class ScalingConfig:
    """How many training workers, and what each holds.

    Example::

        ScalingConfig(num_workers=4, use_gpu=True, resources_per_worker={"CPU": 2})
    """

    num_workers: int = 1
    use_gpu: bool = False
    resources_per_worker: dict[str, float] | None = None
    placement_strategy: str = "PACK"
    trainer_resources: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or \
                self.num_workers < 1:
            raise ValueError(f"num_workers must be a positive integer, got "
                             f"{self.num_workers!r}")
        if self.placement_strategy not in PLACEMENT_STRATEGIES:
            raise ValueError(f"placement_strategy must be one of "
                             f"{', '.join(PLACEMENT_STRATEGIES)}, got "
                             f"{self.placement_strategy!r}")
        for name, amount in (self.resources_per_worker or {}).items():
            if not isinstance(amount, (int, float)) or amount < 0:
                raise ValueError(f"resources_per_worker[{name!r}] must be a non-negative "
                                 f"number, got {amount!r}")

    @property
    def worker_resources(self) -> dict[str, float]:
        """What one worker's bundle holds: 1 CPU (or 1 GPU with ``use_gpu``) unless
        ``resources_per_worker`` says otherwise."""
        res = dict(self.resources_per_worker or {})
        if "CPU" not in res:
            res["CPU"] = 0.0 if self.use_gpu and "GPU" not in res else 1.0
        if self.use_gpu and "GPU" not in res:
            res["GPU"] = 1.0
        return {k: float(v) for k, v in res.items() if v}

    @property
    def num_gpus_per_worker(self) -> float:
        return self.worker_resources.get("GPU", 0.0)


@dataclass
class CheckpointConfig:
    """Which checkpoints a run keeps: ``num_to_keep`` (None: all) ranked by
    ``checkpoint_score_attribute`` in ``checkpoint_score_order`` ("max" or "min"); without
    an attribute, the most recent. The latest checkpoint is always kept, to resume from."""

    num_to_keep: int | None = None
    checkpoint_score_attribute: str | None = None
    checkpoint_score_order: str = "max"
    checkpoint_frequency: int = 0
    checkpoint_at_end: bool | None = None

    def __post_init__(self) -> None:
        if self.num_to_keep is not None and (not isinstance(self.num_to_keep, int) or
                                             self.num_to_keep < 1):
            raise ValueError(f"num_to_keep must be None or a positive integer, got "
                             f"{self.num_to_keep!r}")
        if self.checkpoint_score_order not in ("max", "min"):
            raise ValueError(f"checkpoint_score_order must be 'max' or 'min', got "
                             f"{self.checkpoint_score_order!r}")


@dataclass
class FailureConfig:
    """``max_failures``: how many times a failed run is restarted from its latest
    checkpoint (-1: without limit)."""

    max_failures: int = 0
    fail_fast: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.max_failures, int) or self.max_failures < -1:
            raise ValueError(f"max_failures must be an integer >= -1, got "
                             f"{self.max_failures!r}")

    def allows(self, failures: int) -> bool:
        return self.max_failures < 0 or failures <= self.max_failures


def default_storage_path() -> str:
    return os.path.expanduser(os.environ.get("ZACTOR_RESULTS_DIR", "~/zactor_results"))


@dataclass
class RunConfig:
    """Where a run keeps its results and checkpoints (``storage_path``: a local path or any
    fsspec URI; ``name``: its directory there), and how it keeps them."""

    name: str | None = None
    storage_path: str | None = None
    checkpoint_config: CheckpointConfig = field(default_factory=CheckpointConfig)
    failure_config: FailureConfig = field(default_factory=FailureConfig)
    stop: Any = None  # used by Tune
    verbose: int | None = None
    callbacks: list | None = None
    storage_filesystem: Any = None

    def __post_init__(self) -> None:
        if self.checkpoint_config is None:
            self.checkpoint_config = CheckpointConfig()
        if self.failure_config is None:
            self.failure_config = FailureConfig()
