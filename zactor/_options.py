"""Validation of ``@remote(...)`` / ``.options(...)`` arguments, with Ray's names and rules."""

from __future__ import annotations

import numbers
from typing import Any

import cloudpickle

from zactor import config
from zactor.protocol import DYNAMIC, STREAMING

#: Ray's older spelling of PlacementGroupSchedulingStrategy, still accepted by Ray.
GROUP_OPTIONS = frozenset({"placement_group", "placement_group_bundle_index",
                           "placement_group_capture_child_tasks"})
TASK_OPTIONS = frozenset({
    "num_returns", "num_cpus", "num_gpus", "resources", "memory", "max_retries",
    "retry_exceptions", "name", "scheduling_strategy", "runtime_env", "max_calls",
    "enable_task_events", "_metadata",
}) | GROUP_OPTIONS
ACTOR_OPTIONS = frozenset({
    "num_cpus", "num_gpus", "resources", "memory", "name", "namespace", "lifetime",
    "max_restarts", "max_task_retries", "max_concurrency", "get_if_exists",
    "scheduling_strategy", "runtime_env", "max_pending_calls", "enable_task_events",
    "_metadata", "_supervisor",
}) | GROUP_OPTIONS
METHOD_OPTIONS = frozenset({"num_returns", "name", "max_task_retries", "retry_exceptions",
                            "enable_task_events", "concurrency_group"})


def validate(options: dict[str, Any], allowed: frozenset, what: str) -> dict[str, Any]:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"Invalid option(s) {', '.join(map(repr, unknown))} for {what}. "
            f"Valid options are: {', '.join(sorted(k for k in allowed if not k.startswith('_')))}"
        )
    for key, value in options.items():
        _check(key, value)
    return dict(options)


def _number(key: str, value: Any, minimum: float = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < minimum:
        raise ValueError(f"{key} must be a number >= {minimum}, got {value!r}")


def _whole_above_one(key: str, value: float) -> None:
    """Ray's rule: a share of one unit (a GPU split between actors), or whole units."""
    if value > 1 and value != int(value):
        raise ValueError(f"Resource quantities >1 must be whole numbers. The specified "
                         f"quantity {value} for {key} is invalid.")


def _integer(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")


def _check(key: str, value: Any) -> None:
    if value is None and key not in ("num_returns",):
        return
    if key in ("num_cpus", "num_gpus"):
        _number(key, value)
        _whole_above_one(key, value)
    elif key == "memory":
        _number(key, value)
    elif key == "num_returns":
        if value in ("dynamic", "streaming"):
            return
        _integer(key, value, 0)
    elif key in ("max_retries", "max_restarts", "max_task_retries"):
        _integer(key, value, -1)
    elif key == "max_concurrency":
        _integer(key, value, 1)
    elif key == "resources":
        if not isinstance(value, dict):
            raise ValueError(f"resources must be a dict, got {type(value).__name__}")
        for name, amount in value.items():
            if not isinstance(name, str):
                raise ValueError(f"resource names must be strings, got {name!r}")
            if name in ("CPU", "GPU"):
                raise ValueError(
                    f"Use the num_{name.lower()}s option, not resources={{{name!r}: ...}}")
            _number(f"resources[{name!r}]", amount)
            _whole_above_one(f"resources[{name!r}]", amount)
    elif key == "retry_exceptions":
        if not isinstance(value, bool) and not (
            isinstance(value, (list, tuple))
            and all(isinstance(c, type) and issubclass(c, BaseException) for c in value)
        ):
            raise ValueError("retry_exceptions must be a bool or a list of exception classes")
    elif key == "lifetime":
        if value not in ("detached", "non_detached"):
            raise ValueError(f"lifetime must be 'detached' or 'non_detached', got {value!r}")
    elif key in ("name", "namespace"):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{key} must be a non-empty string, got {value!r}")
    elif key == "scheduling_strategy":
        strategy_spec(value)  # raises on what is not a strategy
    elif key == "placement_group":
        from zactor.util.placement_group import PlacementGroup

        if value != "default" and not isinstance(value, PlacementGroup):
            raise ValueError(f"placement_group must be a PlacementGroup, got {value!r}")
    elif key == "runtime_env":
        from zactor.runtime_env._spec import validate as check_env

        check_env(value)
    elif key == "get_if_exists":
        if not isinstance(value, bool):
            raise ValueError(f"get_if_exists must be a bool, got {value!r}")


def num_returns(value: Any, is_generator: bool) -> int:
    """The spec's ``num_returns``: generator functions stream by default, as in Ray."""
    if value is None:
        return STREAMING if is_generator else 1
    if value == "streaming":
        return STREAMING
    if value == "dynamic":
        return DYNAMIC
    return value


def task_resources(options: dict[str, Any], default_cpus: float = 1) -> dict[str, float]:
    """The resource request of a task (or of a running actor)."""
    cpus = options.get("num_cpus")
    req: dict[str, float] = {}
    cpus = default_cpus if cpus is None else cpus
    if cpus:
        req["CPU"] = float(cpus)
    if options.get("num_gpus"):
        req["GPU"] = float(options["num_gpus"])
    if options.get("memory"):
        req["memory"] = float(options["memory"])
    for name, amount in (options.get("resources") or {}).items():
        if amount:
            req[name] = float(amount)
    return req


def retry_policy(value: Any) -> bool | bytes:
    if not value:
        return False
    if value is True:
        return True
    return cloudpickle.dumps(tuple(value))


def max_retries(options: dict[str, Any]) -> int:
    value = options.get("max_retries")
    return config.DEFAULT_MAX_RETRIES if value is None else value


def env_key(core: Any, options: dict[str, Any]) -> str | None:
    """The worker pool key of a task's or actor's ``runtime_env`` (inherited from its job or
    parent task; uploaded and registered with the head on first use)."""
    from zactor.runtime_env import _spec, _upload

    env = options.get("runtime_env")
    return _upload.for_submission(core, _spec.validate(env) if env else None)


def scheduling_strategy(options: dict[str, Any]) -> Any:
    """``scheduling_strategy``, or the one Ray's older ``placement_group=`` options name."""
    group = options.get("placement_group")
    if group is None or group == "default":
        return options.get("scheduling_strategy")
    if options.get("scheduling_strategy") is not None:
        raise ValueError("Use scheduling_strategy or placement_group, not both")
    from zactor.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    index = options.get("placement_group_bundle_index")
    return PlacementGroupSchedulingStrategy(
        group, -1 if index is None else index,
        options.get("placement_group_capture_child_tasks"))


def strategy_spec(strategy: Any) -> object:
    """The spec's form of a ``scheduling_strategy`` (None for the default)."""
    if strategy is None or strategy == "DEFAULT":
        return None
    if strategy == "SPREAD":
        return "SPREAD"
    from zactor.util.scheduling_strategies import (
        NodeAffinitySchedulingStrategy,
        PlacementGroupSchedulingStrategy,
    )

    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        return ["node", bytes.fromhex(strategy.node_id), strategy.soft,
                bool(strategy._spill_on_unavailable)]
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        return ["pg", strategy.placement_group.id.binary(),
                strategy.placement_group_bundle_index,
                bool(strategy.placement_group_capture_child_tasks)]
    raise NotImplementedError(
        f"scheduling_strategy={strategy!r} is not supported (DEFAULT, SPREAD, "
        "NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy)")


def in_group(strategy: Any) -> bool:
    from zactor.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return isinstance(strategy, PlacementGroupSchedulingStrategy)


def check_group_fit(strategy: Any, request: dict[str, float], what: str) -> None:
    """Ray's checks of work meant for a placement group, made where it is submitted: the
    bundle index exists, and the request fits the bundle (any bundle, for index -1)."""
    from zactor.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    if not isinstance(strategy, PlacementGroupSchedulingStrategy):
        return
    bundles = strategy.placement_group.bundle_specs
    index = strategy.placement_group_bundle_index
    if not -1 <= index < len(bundles):
        raise ValueError(f"placement_group_bundle_index {index} is out of range: the "
                         f"placement group has {len(bundles)} bundle(s)")
    candidates = bundles if index == -1 else [bundles[index]]
    if not any(all(b.get(k, 0.0) + 1e-9 >= v for k, v in request.items() if v)
               for b in candidates):
        raise ValueError(f"Cannot schedule {what} with the placement group because the "
                         f"resource request {request} cannot fit into any bundles for the "
                         f"placement group, {bundles}.")
