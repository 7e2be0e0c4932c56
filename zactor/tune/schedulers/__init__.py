"""Trial schedulers (Ray Tune's ``tune.schedulers``): after each result, a trial goes on,
stops early, or — for PBT — is restarted from a better trial's checkpoint with a changed
config.

- ``FIFOScheduler``: every trial runs to its end.
- ``ASHAScheduler`` (``AsyncHyperBandScheduler``): at each rung (grace_period * rf^k of
  ``time_attr``), a trial below the top 1/rf of those that reached the rung stops.
- ``MedianStoppingRule``: a trial whose best result is worse than the median of the other
  trials' running averages at the same time stops.
- ``PopulationBasedTraining``: every ``perturbation_interval``, a trial in the bottom
  quantile copies a top-quantile trial's checkpoint (exploit) and perturbs its config
  (explore).
"""

from __future__ import annotations

import math
import random
from typing import Any


class TrialScheduler:
    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    STOP = "STOP"

    def __init__(self, metric: str | None = None, mode: str | None = None) -> None:
        self.metric, self.mode = metric, mode

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        self.metric = self.metric or metric
        self.mode = self.mode or mode
        return True

    def _better(self, value: float) -> float:
        """The metric, larger is better."""
        return value if self.mode == "max" else -value

    def on_trial_add(self, trial) -> None:
        pass

    def on_trial_result(self, trial, result: dict) -> str:
        return self.CONTINUE

    def on_trial_complete(self, trial, result: dict | None) -> None:
        pass

    def on_trial_remove(self, trial) -> None:
        pass

    def exploit(self, trial, trials: list) -> tuple[Any, dict] | None:
        """PBT only: (donor trial, new config) for ``trial`` now, or None."""
        return None


class FIFOScheduler(TrialScheduler):
    """Every trial runs until it ends or meets the stopping condition."""


class AsyncHyperBandScheduler(TrialScheduler):
    """ASHA (Li et al., 2018), as Ray's: ``time_attr``, ``max_t``, ``grace_period``,
    ``reduction_factor``, ``brackets``."""

    def __init__(self, time_attr: str = "training_iteration", metric: str | None = None,
                 mode: str | None = None, max_t: int = 100, grace_period: int = 1,
                 reduction_factor: float = 4, brackets: int = 1,
                 stop_last_trials: bool = True) -> None:
        super().__init__(metric, mode)
        if grace_period <= 0 or max_t < grace_period or reduction_factor <= 1:
            raise ValueError("ASHA needs 0 < grace_period <= max_t and reduction_factor > 1")
        self.time_attr, self.max_t, self.rf = time_attr, max_t, reduction_factor
        rungs = int(math.log(max_t / grace_period, reduction_factor)) + 1
        self.brackets = [
            {"milestones": [grace_period * reduction_factor ** (k + s) for k in
                            reversed(range(rungs - s))], "recorded": {}}
            for s in range(brackets)]
        self.trial_bracket: dict[str, int] = {}
        self._next = 0

    def on_trial_add(self, trial) -> None:
        self.trial_bracket[trial.trial_id] = self._next % len(self.brackets)
        self._next += 1

    def on_trial_result(self, trial, result: dict) -> str:
        t = result.get(self.time_attr)
        value = result.get(self.metric)
        if t is None or value is None:
            return self.CONTINUE
        if t >= self.max_t:
            return self.STOP
        bracket = self.brackets[self.trial_bracket.get(trial.trial_id, 0)]
        decision = self.CONTINUE
        for milestone in bracket["milestones"]:  # the highest rung reached first
            if t < milestone:
                continue
            recorded = bracket["recorded"].setdefault(milestone, {})
            if trial.trial_id in recorded:
                break
            others = sorted(recorded.values(), reverse=True)
            recorded[trial.trial_id] = self._better(value)
            if others:
                k = max(1, int(len(recorded) / self.rf))
                cutoff = sorted(recorded.values(), reverse=True)[k - 1]
                if self._better(value) < cutoff:
                    decision = self.STOP
            break
        return decision


ASHAScheduler = AsyncHyperBandScheduler


class MedianStoppingRule(TrialScheduler):
    """Stop a trial whose best result so far is worse than the median of the other
    trials' running means at the same ``time_attr``, after ``grace_period`` and once
    ``min_samples_required`` trials have reported that far."""

    def __init__(self, time_attr: str = "time_total_s", metric: str | None = None,
                 mode: str | None = None, grace_period: float = 60.0,
                 min_samples_required: int = 3, min_time_slice: float = 0,
                 hard_stop: bool = True) -> None:
        super().__init__(metric, mode)
        self.time_attr, self.grace_period = time_attr, grace_period
        self.min_samples = min_samples_required
        self.history: dict[str, list[tuple[float, float]]] = {}

    def on_trial_result(self, trial, result: dict) -> str:
        t, value = result.get(self.time_attr), result.get(self.metric)
        if t is None or value is None:
            return self.CONTINUE
        self.history.setdefault(trial.trial_id, []).append((t, self._better(value)))
        if t < self.grace_period:
            return self.CONTINUE
        means = []
        for other, points in self.history.items():
            if other == trial.trial_id:
                continue
            upto = [v for when, v in points if when <= t]
            if upto and points[-1][0] >= t:  # the other trial ran at least as long
                means.append(sum(upto) / len(upto))
        if len(means) < self.min_samples - 1:
            return self.CONTINUE
        means.sort()
        median = means[len(means) // 2] if len(means) % 2 else \
            (means[len(means) // 2 - 1] + means[len(means) // 2]) / 2
        best = max(v for _, v in self.history[trial.trial_id])
        return self.STOP if best < median else self.CONTINUE


class PopulationBasedTraining(TrialScheduler):
    """PBT (Jaderberg et al., 2017), as Ray's: ``time_attr``, ``perturbation_interval``,
    ``hyperparam_mutations`` (a list to pick from, a Domain to draw from, or a function),
    ``quantile_fraction``, ``resample_probability``, ``perturbation_factors``, ``seed``."""

    def __init__(self, time_attr: str = "training_iteration", metric: str | None = None,
                 mode: str | None = None, perturbation_interval: float = 60.0,
                 burn_in_period: float = 0.0, hyperparam_mutations: dict | None = None,
                 quantile_fraction: float = 0.25, resample_probability: float = 0.25,
                 perturbation_factors: tuple[float, float] = (1.2, 0.8),
                 custom_explore_fn=None, log_config: bool = True,
                 require_attrs: bool = True, synch: bool = False,
                 seed: int | None = None) -> None:
        super().__init__(metric, mode)
        if not hyperparam_mutations and custom_explore_fn is None:
            raise ValueError("PopulationBasedTraining needs hyperparam_mutations or "
                             "custom_explore_fn")
        if not 0 < quantile_fraction <= 0.5:
            raise ValueError(f"quantile_fraction must be in (0, 0.5], got {quantile_fraction}")
        self.time_attr, self.interval = time_attr, perturbation_interval
        self.burn_in = burn_in_period
        self.mutations = hyperparam_mutations or {}
        self.quantile, self.resample = quantile_fraction, resample_probability
        self.factors, self.explore_fn = perturbation_factors, custom_explore_fn
        self.rng = random.Random(seed)
        self.last: dict[str, dict] = {}  # trial id -> {"t", "score", "perturbed_at"}
        self.exploits: list[tuple[str, str]] = []  # (trial, donor) pairs, for the record

    def on_trial_result(self, trial, result: dict) -> str:
        t, value = result.get(self.time_attr), result.get(self.metric)
        if t is None or value is None:
            return self.CONTINUE
        state = self.last.setdefault(trial.trial_id, {"perturbed_at": 0.0})
        state["t"], state["score"] = t, self._better(value)
        if t < self.burn_in or t - state["perturbed_at"] < self.interval:
            return self.CONTINUE
        state["perturbed_at"] = t
        return self.PAUSE  # the tuner then asks exploit() for this trial

    def exploit(self, trial, trials: list) -> tuple[Any, dict] | None:
        scored = [(s["score"], tid) for tid, s in self.last.items() if "score" in s]
        if len(scored) < 2:
            return None
        scored.sort()
        k = max(1, int(math.ceil(len(scored) * self.quantile)))
        bottom, top = {tid for _, tid in scored[:k]}, [tid for _, tid in scored[-k:]]
        if trial.trial_id not in bottom or trial.trial_id in top:
            return None
        by_id = {t.trial_id: t for t in trials}
        donors = [by_id[tid] for tid in top if tid in by_id and by_id[tid].checkpoint]
        if not donors:
            return None
        donor = self.rng.choice(donors)
        self.exploits.append((trial.trial_id, donor.trial_id))
        return donor, self._explore(donor.config)

    def _explore(self, config: dict) -> dict:
        from zactor.tune.search.sample import Domain

        new = dict(config)
        for key, spec in self.mutations.items():
            if isinstance(spec, dict):
                new[key] = self._explore_nested(config.get(key, {}), spec)
                continue
            resample = self.rng.random() < self.resample or key not in config
            if isinstance(spec, list):
                if resample or config[key] not in spec:
                    new[key] = self.rng.choice(spec)
                else:  # a neighbour in the list
                    i = spec.index(config[key]) + self.rng.choice([-1, 1])
                    new[key] = spec[min(max(i, 0), len(spec) - 1)]
            elif isinstance(spec, Domain):
                new[key] = spec.sample(self.rng) if resample else \
                    self._perturb(config[key])
            elif callable(spec):
                new[key] = spec() if resample else self._perturb(config[key])
        if self.explore_fn is not None:
            new = self.explore_fn(new)
        return new

    def _explore_nested(self, config: dict, spec: dict) -> dict:
        saved, self.mutations = self.mutations, spec
        try:
            return self._explore(config)
        finally:
            self.mutations = saved

    def _perturb(self, value):
        factor = self.rng.choice(self.factors)
        out = value * factor
        return int(out) if isinstance(value, int) and not isinstance(value, bool) else out


__all__ = ["ASHAScheduler", "AsyncHyperBandScheduler", "FIFOScheduler", "MedianStoppingRule",
           "PopulationBasedTraining", "TrialScheduler"]
