"""Search algorithms (Ray Tune's ``tune.search``): each suggests the next trial's config.

``BasicVariantGenerator`` (the default) expands ``grid_search`` entries, crossed, and draws
the other ``Domain``s at random, ``num_samples`` times; ``ConcurrencyLimiter`` caps how many
of a searcher's trials run at once; ``zactor.tune.search.optuna.OptunaSearch`` asks Optuna.
"""

from __future__ import annotations

import copy
import itertools
import random
from typing import Any

from zactor.tune.search.sample import Domain, Function


class Searcher:
    """Ray's ``Searcher`` interface: ``suggest`` a config for a trial id (None: not now,
    ``Searcher.FINISHED``: never again), hear of its results and of its end."""

    FINISHED = "FINISHED"

    def __init__(self, metric: str | None = None, mode: str | None = None) -> None:
        self.metric, self.mode = metric, mode

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec) -> bool:
        self.metric = self.metric or metric
        self.mode = self.mode or mode
        return True

    def suggest(self, trial_id: str) -> dict | str | None:
        raise NotImplementedError

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        pass

    def get_state(self) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        pass


class BasicVariantGenerator(Searcher):
    """Grid entries crossed, random entries drawn: ``num_samples`` passes over the grid;
    ``points_to_evaluate`` first; ``random_state`` seeds the draws."""

    def __init__(self, points_to_evaluate: list[dict] | None = None,
                 max_concurrent: int = 0, constant_grid_search: bool = False,
                 random_state: int | None = None) -> None:
        super().__init__()
        self.points = list(points_to_evaluate or [])
        self.max_concurrent = max_concurrent
        self.rng = random.Random(random_state)
        self.space: dict = {}
        self.num_samples = 1
        self._queue: list[dict] | None = None
        self._passes = 0
        self._live: set[str] = set()

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        super().set_search_properties(metric, mode, config)
        self.space = config
        self.num_samples = spec.get("num_samples", 1)
        return True

    def total(self) -> int:
        return len(self.points) + self.num_samples * grid_size(self.space)

    def suggest(self, trial_id: str) -> dict | str | None:
        if self._queue is None:
            self._queue = [resolve(_merge(self.space, p), self.rng) for p in self.points]
        if not self._queue and self._passes < self.num_samples:
            self._queue = variants(self.space, self.rng)  # one pass at a time (-1: forever)
            self._passes += 1
        if not self._queue:
            return Searcher.FINISHED
        if self.max_concurrent and len(self._live) >= self.max_concurrent:
            return None
        self._live.add(trial_id)
        return self._queue.pop(0)

    def on_trial_complete(self, trial_id, result=None, error=False) -> None:
        self._live.discard(trial_id)

    def get_state(self) -> dict:
        return {"queue": self._queue, "passes": self._passes, "rng": self.rng.getstate()}

    def set_state(self, state: dict) -> None:
        self._queue, self._passes = state["queue"], state["passes"]
        self.rng.setstate(_tuples(state["rng"]))


class ConcurrencyLimiter(Searcher):
    """At most ``max_concurrent`` of ``searcher``'s trials at once."""

    def __init__(self, searcher: Searcher, max_concurrent: int, batch: bool = False) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be positive, got {max_concurrent}")
        super().__init__()
        self.searcher, self.max_concurrent = searcher, max_concurrent
        self._live: set[str] = set()

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        self.metric, self.mode = metric, mode
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str):
        if len(self._live) >= self.max_concurrent:
            return None
        config = self.searcher.suggest(trial_id)
        if isinstance(config, dict):
            self._live.add(trial_id)
        return config

    def on_trial_result(self, trial_id, result) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id, result=None, error=False) -> None:
        self._live.discard(trial_id)
        self.searcher.on_trial_complete(trial_id, result, error)

    def get_state(self) -> dict:
        return self.searcher.get_state()

    def set_state(self, state: dict) -> None:
        self.searcher.set_state(state)


# -- resolving a param space ------------------------------------------------------------------


def _paths(space: Any, prefix: tuple = ()) -> list[tuple[tuple, Any]]:
    """(path, leaf) of every grid or domain entry of a nested dict."""
    out = []
    if isinstance(space, dict):
        if set(space) == {"grid_search"}:
            return [(prefix, space)]
        for key, value in space.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(space, Domain):
        out.append((prefix, space))
    return out


def _set(config: dict, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        config = config[key]
    config[path[-1]] = value


def _get(config: dict, path: tuple) -> Any:
    for key in path:
        config = config[key]
    return config


def grid_size(space: dict) -> int:
    size = 1
    for _, leaf in _paths(space):
        if isinstance(leaf, dict):
            size *= len(leaf["grid_search"])
    return size


def variants(space: dict, rng: random.Random) -> list[dict]:
    """One config per point of the grid, the random entries drawn for each."""
    leaves = _paths(space)
    grids = [(p, leaf["grid_search"]) for p, leaf in leaves if isinstance(leaf, dict)]
    out = []
    for values in itertools.product(*[g for _, g in grids]) if grids else [()]:
        config = copy.deepcopy(_plain(space))
        for (path, _), value in zip(grids, values, strict=True):
            _set(config, path, value)
        out.append(resolve(config, rng, space))
    return out


def resolve(config: dict, rng: random.Random, space: dict | None = None) -> dict:
    """``config`` with every ``Domain`` drawn (``sample_from`` last: it may read the rest)."""
    config = copy.deepcopy(_plain(config)) if space is None else config
    source = space if space is not None else config
    leaves = [(p, leaf) for p, leaf in _paths(source) if isinstance(leaf, Domain)]
    leaves.sort(key=lambda pl: isinstance(pl[1], Function))
    for path, domain in leaves:
        _set(config, path, domain.sample(rng, config))
    return config


def _plain(space: Any) -> Any:
    """A copy that deepcopy can take: domains are kept as they are (they are drawn next)."""
    if isinstance(space, dict):
        return {k: _plain(v) for k, v in space.items()}
    return space


def _merge(space: dict, point: dict) -> dict:
    out = copy.deepcopy(_plain(space))
    for key, value in point.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    for path, leaf in _paths(out):
        if isinstance(leaf, dict):  # a grid entry the point did not fix: its first value
            _set(out, path, leaf["grid_search"][0])
    return out


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


__all__ = ["BasicVariantGenerator", "ConcurrencyLimiter", "Searcher"]
