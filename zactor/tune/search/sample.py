"""Search spaces (Ray Tune's ``tune.uniform``, ``tune.choice``, ``tune.grid_search``...):
each is a ``Domain`` that draws a value, and ``grid_search`` marks a list to expand."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any


class Domain:
    """A distribution a parameter is drawn from."""

    def sample(self, rng: random.Random, spec: dict | None = None) -> Any:
        raise NotImplementedError


class Float(Domain):
    def __init__(self, lower: float, upper: float, log: bool = False, q: float | None = None,
                 base: float = 10) -> None:
        if not lower < upper:
            raise ValueError(f"a float range needs lower < upper, got {lower}, {upper}")
        if log and lower <= 0:
            raise ValueError(f"a log range needs lower > 0, got {lower}")
        self.lower, self.upper, self.log, self.q, self.base = lower, upper, log, q, base

    def sample(self, rng: random.Random, spec: dict | None = None) -> float:
        if self.log:
            lo, hi = math.log(self.lower, self.base), math.log(self.upper, self.base)
            value = self.base ** rng.uniform(lo, hi)
        else:
            value = rng.uniform(self.lower, self.upper)
        if self.q:
            value = round(value / self.q) * self.q
            value = min(max(value, self.lower), self.upper)
        return value

    def __repr__(self) -> str:
        return f"{'Log' if self.log else ''}Float({self.lower}, {self.upper})"


class Integer(Domain):
    """Integers in [lower, upper) (Ray's ``randint``: upper excluded)."""

    def __init__(self, lower: int, upper: int, log: bool = False, q: int | None = None) -> None:
        if not lower < upper:
            raise ValueError(f"an integer range needs lower < upper, got {lower}, {upper}")
        self.lower, self.upper, self.log, self.q = lower, upper, log, q

    def sample(self, rng: random.Random, spec: dict | None = None) -> int:
        if self.log:
            value = int(math.exp(rng.uniform(math.log(self.lower), math.log(self.upper))))
            value = min(value, self.upper - 1)
        else:
            value = rng.randrange(self.lower, self.upper)
        if self.q:
            value = int(round(value / self.q) * self.q)
        return value

    def __repr__(self) -> str:
        return f"Integer({self.lower}, {self.upper})"


class Categorical(Domain):
    def __init__(self, categories: Sequence) -> None:
        if not len(categories):
            raise ValueError("choice() needs at least one category")
        self.categories = list(categories)

    def sample(self, rng: random.Random, spec: dict | None = None) -> Any:
        return rng.choice(self.categories)

    def __repr__(self) -> str:
        return f"Categorical({self.categories})"


class Normal(Domain):
    def __init__(self, mean: float = 0.0, sd: float = 1.0, q: float | None = None) -> None:
        self.mean, self.sd, self.q = mean, sd, q

    def sample(self, rng: random.Random, spec: dict | None = None) -> float:
        value = rng.gauss(self.mean, self.sd)
        return round(value / self.q) * self.q if self.q else value


class Function(Domain):
    """``sample_from(fn)``: ``fn(spec)`` given the config drawn so far."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def sample(self, rng: random.Random, spec: dict | None = None) -> Any:
        try:
            return self.fn(_Spec(spec or {}))
        except TypeError:
            return self.fn()


class _Spec(dict):
    """What a ``sample_from`` function gets: the config so far, also as ``spec.config``."""

    @property
    def config(self) -> _Spec:
        return self


def uniform(lower: float, upper: float) -> Float:
    """A float drawn uniformly from [lower, upper]."""
    return Float(lower, upper)


def quniform(lower: float, upper: float, q: float) -> Float:
    return Float(lower, upper, q=q)


def loguniform(lower: float, upper: float, base: float = 10) -> Float:
    """A float whose logarithm is uniform: for learning rates, ``loguniform(1e-4, 1e-1)``."""
    return Float(lower, upper, log=True, base=base)


def qloguniform(lower: float, upper: float, q: float, base: float = 10) -> Float:
    return Float(lower, upper, log=True, q=q, base=base)


def randint(lower: int, upper: int) -> Integer:
    """An integer in [lower, upper)."""
    return Integer(lower, upper)


def qrandint(lower: int, upper: int, q: int = 1) -> Integer:
    return Integer(lower, upper + 1, q=q)


def lograndint(lower: int, upper: int) -> Integer:
    return Integer(lower, upper, log=True)


def randn(mean: float = 0.0, sd: float = 1.0) -> Normal:
    return Normal(mean, sd)


def qrandn(mean: float, sd: float, q: float) -> Normal:
    return Normal(mean, sd, q)


def choice(categories: Sequence) -> Categorical:
    """One of ``categories``, at random."""
    return Categorical(categories)


def sample_from(func: Callable) -> Function:
    """A value computed by ``func(spec)`` from the rest of the config."""
    return Function(func)


def grid_search(values: Sequence) -> dict:
    """Every one of ``values``: one trial each (times ``num_samples``), crossed with the
    other grid searches."""
    return {"grid_search": list(values)}
