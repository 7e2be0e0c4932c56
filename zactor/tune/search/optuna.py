"""``OptunaSearch``: trials suggested by an Optuna study (Ray's
``ray.tune.search.optuna.OptunaSearch``), told each finished trial's metric."""

from __future__ import annotations

from typing import Any

from zactor.tune.search import Searcher, _paths, _set, resolve
from zactor.tune.search.sample import Categorical, Float, Function, Integer


class OptunaSearch(Searcher):
    """Example::

        OptunaSearch(metric="loss", mode="min", seed=0)   # with param_space domains
    """

    def __init__(self, space: dict | None = None, metric: str | None = None,
                 mode: str | None = None, points_to_evaluate: list[dict] | None = None,
                 sampler: Any = None, seed: int | None = None) -> None:
        import optuna

        super().__init__(metric, mode)
        self.space = space
        self.points = list(points_to_evaluate or [])
        self.sampler = sampler or optuna.samplers.TPESampler(seed=seed)
        self.study = None
        self.trials: dict[str, Any] = {}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        super().set_search_properties(metric, mode, config)
        if self.space is None:
            self.space = config
        return True

    def _ensure_study(self):
        import optuna

        if self.study is None:
            if self.mode not in ("min", "max") or not self.metric:
                raise ValueError("OptunaSearch needs metric and mode (here or in TuneConfig)")
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            self.study = optuna.create_study(
                sampler=self.sampler, direction="minimize" if self.mode == "min" else
                "maximize")
            for point in self.points:
                self.study.enqueue_trial(point)
        return self.study

    def _distributions(self) -> dict:
        import optuna.distributions as d

        out = {}
        for path, leaf in _paths(self.space):
            name = "/".join(map(str, path))
            if isinstance(leaf, Float):
                out[name] = d.FloatDistribution(leaf.lower, leaf.upper, log=leaf.log,
                                                step=None if leaf.log else leaf.q)
            elif isinstance(leaf, Integer):
                out[name] = d.IntDistribution(leaf.lower, leaf.upper - 1, log=leaf.log,
                                              step=leaf.q or 1)
            elif isinstance(leaf, Categorical):
                out[name] = d.CategoricalDistribution(leaf.categories)
            elif isinstance(leaf, dict):
                raise ValueError("OptunaSearch does not take grid_search entries")
            elif not isinstance(leaf, Function):
                raise ValueError(f"OptunaSearch cannot search {leaf!r}")
        return out

    def suggest(self, trial_id: str) -> dict | None:
        study = self._ensure_study()
        dists = self._distributions()
        trial = study.ask(dists)
        self.trials[trial_id] = trial
        config = resolve(self.space, _NoRandom())  # the constants, and any sample_from
        for path, _ in _paths(self.space):
            name = "/".join(map(str, path))
            if name in dists:
                _set(config, path, trial.params[name])
        for path, leaf in _paths(self.space):
            if isinstance(leaf, Function):
                _set(config, path, leaf.sample(None, config))
        return config

    def on_trial_complete(self, trial_id, result=None, error=False) -> None:
        import optuna

        trial = self.trials.pop(trial_id, None)
        if trial is None:
            return
        value = (result or {}).get(self.metric)
        if error or value is None:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, float(value))


class _NoRandom:
    """Draws nothing: OptunaSearch fills the domains itself."""

    def uniform(self, a, b):
        return a

    def randrange(self, a, b):
        return a

    def choice(self, seq):
        return seq[0]

    def gauss(self, mean, sd):
        return mean
