"""``Result``: what ``fit()`` returns (Ray's ``ray.train.Result``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from zactor.train.checkpoint import Checkpoint


@dataclass
class Result:
    """The outcome of a training run.

    - ``metrics``: rank 0's latest report that carried a checkpoint (its latest report,
      when none did);
    - ``checkpoint``: the latest checkpoint; ``best_checkpoints``: the kept ones with their
      metrics, oldest first; ``metrics_dataframe``: one row per kept checkpoint;
    - ``path``: the run's directory under ``storage_path``; ``error``: the error a failed
      run ended with (``fit()`` raises it; Tune keeps it here);
    - ``num_failures``: how many times the workers were restarted (zactor's addition).
    """

    metrics: dict[str, Any] | None
    checkpoint: Checkpoint | None
    path: str
    error: BaseException | None = None
    best_checkpoints: list[tuple[Checkpoint, dict]] = field(default_factory=list)
    num_failures: int = 0
    filesystem: Any = None
    _metrics_history: list[dict] = field(default_factory=list, repr=False)

    @property
    def metrics_dataframe(self):
        import pandas as pd

        return pd.DataFrame([m for _, m in self.best_checkpoints])

    @classmethod
    def from_path(cls, path: str | os.PathLike) -> Result:
        """The result of the run whose directory is ``path`` (its kept checkpoints)."""
        from zactor.train._storage import RunStorage

        path = os.fspath(path)
        storage = RunStorage(os.path.dirname(path.rstrip("/")), os.path.basename(
            path.rstrip("/")))
        state = storage.load_state()
        if state is None:
            raise FileNotFoundError(f"{path} holds no zactor.train run")
        kept = [(Checkpoint(f"{storage.run_dir}/{e['dir']}", storage.fs), e["metrics"])
                for e in state["checkpoints"]]
        return cls(metrics=kept[-1][1] if kept else None,
                   checkpoint=kept[-1][0] if kept else None, path=storage.run_dir,
                   best_checkpoints=kept, filesystem=storage.fs)
