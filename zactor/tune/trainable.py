"""What Tune runs: a function that calls ``tune.report``, or a ``Trainable`` class with
``setup``/``step``/``save_checkpoint``/``load_checkpoint``; ``with_parameters`` and
``with_resources`` wrap either."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import zactor


class Trainable:
    """Ray's class API: ``setup(config)`` once, ``step()`` per iteration (a dict of
    metrics), ``save_checkpoint(dir)`` / ``load_checkpoint(dir)`` to be paused, moved or
    restarted, ``cleanup()`` at the end, ``reset_config(config)`` to be reused.

    Example::

        class Quadratic(tune.Trainable):
            def setup(self, config):
                self.x = config["x"]

            def step(self):
                return {"loss": (self.x - 3) ** 2}
    """

    def __init__(self, config: dict | None = None) -> None:
        self.config = dict(config or {})
        self.iteration = 0
        self.setup(self.config)

    def setup(self, config: dict) -> None:
        pass

    def step(self) -> dict:
        raise NotImplementedError("a Trainable needs a step() method")

    def save_checkpoint(self, checkpoint_dir: str) -> dict | None:
        return None

    def load_checkpoint(self, checkpoint: Any) -> None:
        pass

    def cleanup(self) -> None:
        pass

    def reset_config(self, new_config: dict) -> bool:
        return False

    @classmethod
    def default_resource_request(cls, config: dict) -> dict | None:
        return None

    @property
    def training_iteration(self) -> int:
        return self.iteration


def is_class_trainable(trainable: Any) -> bool:
    return inspect.isclass(trainable) and issubclass(trainable, Trainable)


def with_parameters(trainable: Any, **kwargs):
    """``trainable`` with large constant arguments put in the object store once and given
    to every trial: ``fn(config, **kwargs)`` or ``Cls.setup(config, **kwargs)``.

    Example::

        tune.Tuner(tune.with_parameters(train_fn, data=big_array), ...)
    """
    refs = {k: zactor.put(v) for k, v in kwargs.items()}
    if is_class_trainable(trainable):
        class _WithParameters(trainable):
            def setup(self, config):
                values = {k: zactor.get(r) for k, r in refs.items()}
                return trainable.setup(self, config, **values)

        _WithParameters.__name__ = trainable.__name__
        _WithParameters.__qualname__ = trainable.__qualname__
        _copy_resources(trainable, _WithParameters)
        return _WithParameters

    @functools.wraps(trainable)
    def wrapped(config):
        return trainable(config, **{k: zactor.get(r) for k, r in refs.items()})

    _copy_resources(trainable, wrapped)
    return wrapped


def with_resources(trainable: Any, resources: Any):
    """``trainable`` whose trials each hold ``resources``: a dict (``{"cpu": 0.5}``,
    ``{"CPU": 2, "GPU": 1}``), or a function of the config giving one."""
    if is_class_trainable(trainable):
        wrapped = type(trainable.__name__, (trainable,), {})
    else:
        @functools.wraps(trainable)
        def wrapped(config):
            return trainable(config)
    wrapped._zactor_resources = resources
    return wrapped


def _copy_resources(src, dst) -> None:
    if hasattr(src, "_zactor_resources"):
        dst._zactor_resources = src._zactor_resources


def trial_resources(trainable: Any, config: dict) -> dict[str, float]:
    """What one trial of ``trainable`` holds (1 CPU unless told otherwise)."""
    spec = getattr(trainable, "_zactor_resources", None)
    if spec is None and is_class_trainable(trainable):
        spec = trainable.default_resource_request(config)
    if callable(spec):
        spec = spec(config)
    if spec is None:
        return {"CPU": 1.0}
    if hasattr(spec, "worker_resources"):  # a ScalingConfig: what its trainer's workers hold
        raise TypeError("with_resources takes a dict of resources here; a trainer inside "
                        "the trial places its own workers")
    out = {}
    for key, value in dict(spec).items():
        name = {"cpu": "CPU", "gpu": "GPU"}.get(key, key)
        if not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"resources[{key!r}] must be a non-negative number, got {value!r}")
        out[name] = float(value)
    out.setdefault("CPU", 0.0)
    return out
