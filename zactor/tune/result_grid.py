"""``ResultGrid``: the results of a Tuner's trials (Ray's ``ray.tune.ResultGrid``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from zactor.train.result import Result as _TrainResult


@dataclass
class Result(_TrainResult):
    """One trial's result: ``config``, ``metrics`` (its last result), ``checkpoint``,
    ``path``, ``error``, and ``metrics_dataframe`` (every result it reported)."""

    config: dict = field(default_factory=dict)

    @property
    def metrics_dataframe(self):
        import pandas as pd

        return pd.DataFrame(self._metrics_history)


class ResultGrid:
    """Example::

        grid = tuner.fit()
        best = grid.get_best_result(metric="loss", mode="min")
        print(best.config, best.metrics["loss"], grid.get_dataframe())
    """

    def __init__(self, results: list[Result], experiment_path: str, metric: str | None,
                 mode: str | None) -> None:
        self._results = results
        self.experiment_path = experiment_path
        self._metric, self._mode = metric, mode

    def __len__(self) -> int:
        return len(self._results)

    def __getitem__(self, i: int) -> Result:
        return self._results[i]

    def __iter__(self):
        return iter(self._results)

    @property
    def errors(self) -> list[BaseException]:
        return [r.error for r in self._results if r.error is not None]

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    @property
    def num_terminated(self) -> int:
        return sum(1 for r in self._results if r.error is None)

    def get_best_result(self, metric: str | None = None, mode: str | None = None,
                        scope: str = "last", filter_nan_and_inf: bool = True) -> Result:
        """The trial best at ``metric`` (``mode`` "min"/"max"), judged on its last result
        (``scope="last"``), its best (``"all"``), or the mean of its last 5 or 10
        (``"last-5-avg"``, ``"last-10-avg"``, ``"avg"``)."""
        metric, mode = metric or self._metric, mode or self._mode
        if not metric or mode not in ("min", "max"):
            raise ValueError("get_best_result needs a metric and a mode ('min' or 'max'), "
                             "here or in TuneConfig")
        best, best_value = None, None
        for result in self._results:
            value = _scoped(result, metric, mode, scope)
            if value is None or (filter_nan_and_inf and not math.isfinite(value)):
                continue
            better = best_value is None or (value < best_value if mode == "min" else
                                            value > best_value)
            if better:
                best, best_value = result, value
        if best is None:
            raise RuntimeError(f"no trial reported a finite {metric!r}")
        return best

    def get_dataframe(self, filter_metric: str | None = None, filter_mode: str | None = None):
        """One row per trial: its last result (or its best at ``filter_metric``), with
        ``config/...`` columns."""
        import pandas as pd

        rows = []
        for result in self._results:
            row = dict(result.metrics or {})
            if filter_metric and filter_mode and result._metrics_history:
                pick = min if filter_mode == "min" else max
                candidates = [m for m in result._metrics_history if filter_metric in m]
                if candidates:
                    row = dict(pick(candidates, key=lambda m: m[filter_metric]))
            for key, value in _flatten(result.config).items():
                row[f"config/{key}"] = value
            row["logdir"] = result.path
            rows.append(row)
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return f"ResultGrid<{len(self)} trials, {self.num_errors} errors>"


def _scoped(result: Result, metric: str, mode: str, scope: str) -> float | None:
    history = [m[metric] for m in result._metrics_history if isinstance(m.get(metric),
                                                                        (int, float))]
    if not history:
        return None
    if scope == "last":
        return history[-1]
    if scope == "all":
        return min(history) if mode == "min" else max(history)
    if scope in ("avg", "last-5-avg", "last-10-avg"):
        n = {"avg": len(history), "last-5-avg": 5, "last-10-avg": 10}[scope]
        tail = history[-n:]
        return sum(tail) / len(tail)
    raise ValueError(f"scope must be last, all, avg, last-5-avg or last-10-avg, got {scope!r}")


def _flatten(config: Any, prefix: str = "") -> dict:
    out = {}
    for key, value in (config or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "/"))
        else:
            out[name] = value
    return out
