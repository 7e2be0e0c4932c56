"""``@serve.deployment``: a class or function with the options of its replicas, and
``Deployment.bind(...)``, which makes an :class:`Application` (a graph of deployments, bound
to their constructor arguments, that ``serve.run`` deploys)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from zactor.serve.config import AutoscalingConfig, DeploymentConfig

_OPTIONS = ("num_replicas", "autoscaling_config", "max_ongoing_requests", "max_queued_requests",
            "user_config", "health_check_period_s", "health_check_timeout_s",
            "graceful_shutdown_wait_loop_s", "graceful_shutdown_timeout_s",
            "ray_actor_options")
# Ray's options that zactor takes and ignores: placement is the core scheduler's business.
_ACCEPTED = ("placement_group_bundles", "placement_group_strategy", "max_replicas_per_node",
             "logging_config", "route_prefix", "request_router_config")
_RAY_ACTOR_OPTIONS = {"num_cpus", "num_gpus", "memory", "resources", "runtime_env",
                      "accelerator_type", "object_store_memory"}


def _config(config: DeploymentConfig, options: dict) -> DeploymentConfig:
    updates = {k: v for k, v in options.items() if k in _OPTIONS}
    if updates.get("num_replicas") == "auto":
        updates["num_replicas"] = None
        updates.setdefault("autoscaling_config", {"min_replicas": 1, "max_replicas": 100,
                                                   "upscale_delay_s": 30})
    if "autoscaling_config" in updates and updates["autoscaling_config"] is not None:
        updates["autoscaling_config"] = AutoscalingConfig.parse(updates["autoscaling_config"])
        if "num_replicas" not in updates:
            updates["num_replicas"] = None
    elif "num_replicas" in updates and updates["num_replicas"] is not None:
        updates["autoscaling_config"] = None
    new = dataclasses.replace(config, **updates)
    if new.num_replicas is not None and new.autoscaling_config is not None:
        raise ValueError("Manually setting num_replicas is not allowed when "
                         "autoscaling_config is provided")
    if new.num_replicas is not None and (not isinstance(new.num_replicas, int)
                                         or new.num_replicas < 0):
        raise ValueError(f"num_replicas must be a non-negative int, got {new.num_replicas!r}")
    if not isinstance(new.max_ongoing_requests, int) or new.max_ongoing_requests < 1:
        raise ValueError("max_ongoing_requests must be an int >= 1, "
                         f"got {new.max_ongoing_requests!r}")
    if new.max_queued_requests != -1 and new.max_queued_requests < 0:
        raise ValueError("max_queued_requests must be -1 or >= 0")
    unknown = set(new.ray_actor_options or {}) - _RAY_ACTOR_OPTIONS
    if unknown:
        raise ValueError(f"ray_actor_options takes {sorted(_RAY_ACTOR_OPTIONS)}, "
                         f"not {sorted(unknown)}")
    return new


class Deployment:
    """A class or function made into a deployment; ``bind()`` gives an Application."""

    def __init__(self, func_or_class: Callable, name: str, config: DeploymentConfig,
                 version: str | None = None) -> None:
        self.func_or_class = func_or_class
        self._name = name
        self._config = config
        self._version = version

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str | None:
        return self._version

    @property
    def num_replicas(self) -> int | None:
        return self._config.num_replicas

    @property
    def user_config(self) -> Any:
        return self._config.user_config

    @property
    def max_ongoing_requests(self) -> int:
        return self._config.max_ongoing_requests

    @property
    def ray_actor_options(self) -> dict:
        return dict(self._config.ray_actor_options)

    @property
    def autoscaling_config(self) -> AutoscalingConfig | None:
        return self._config.autoscaling_config

    def options(self, *, name: str | None = None, version: str | None = None,
                **options: Any) -> Deployment:
        """A copy with some options changed (the same keywords as ``@serve.deployment``)."""
        _check(options)
        return Deployment(self.func_or_class, name or self._name,
                          _config(self._config, options), version or self._version)

    def bind(self, *args: Any, **kwargs: Any) -> Application:
        """Bind constructor arguments; other Applications among them become
        DeploymentHandles in the replicas (model composition)."""
        return Application(self, args, kwargs)

    def __call__(self, *args, **kwargs):
        raise RuntimeError("Deployments cannot be called directly: use .bind() and serve.run, "
                           "then call the returned handle")

    def __repr__(self) -> str:
        return f"Deployment(name={self._name})"


class Application:
    """A deployment bound to its arguments: what ``serve.run`` takes."""

    def __init__(self, deployment: Deployment, args: tuple, kwargs: dict) -> None:
        self._deployment = deployment
        self._args = args
        self._kwargs = kwargs

    @property
    def deployment(self) -> Deployment:
        return self._deployment

    def _graph(self) -> list[Application]:
        """Every bound deployment reachable from this one (itself last): children first."""
        seen: dict[int, Application] = {}

        def visit(node: Application) -> None:
            if id(node) in seen:
                return
            for value in list(node._args) + list(node._kwargs.values()):
                for child in _applications_in(value):
                    visit(child)
            seen[id(node)] = node

        visit(self)
        return list(seen.values())


def _applications_in(value: Any) -> list[Application]:
    if isinstance(value, Application):
        return [value]
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _applications_in(v)]
    if isinstance(value, dict):
        return [a for v in value.values() for a in _applications_in(v)]
    return []


def _check(options: dict) -> None:
    unknown = set(options) - set(_OPTIONS) - set(_ACCEPTED)
    if unknown:
        raise TypeError(f"unknown deployment option(s) {sorted(unknown)}")


def deployment(_func_or_class: Callable | None = None, *, name: str | None = None,
               version: str | None = None, **options: Any) -> Any:
    """Make a class or function a deployment (Ray's ``@serve.deployment``).

        @serve.deployment(num_replicas=2, max_ongoing_requests=10)
        class Echo:
            async def __call__(self, request):
                return await request.json()

        serve.run(Echo.bind(), route_prefix="/echo")
    """
    _check(options)
    config = _config(DeploymentConfig(), options)  # bad options fail here, not at bind

    def make(target: Callable) -> Deployment:
        if not (inspect.isclass(target) or callable(target)):
            raise TypeError("@serve.deployment takes a class or a function")
        return Deployment(target, name or target.__name__, config, version)

    return make(_func_or_class) if _func_or_class is not None else make
