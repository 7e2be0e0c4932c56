"""``@zactor.remote`` functions: ``f.remote(...)`` submits a task and returns ObjectRefs."""

from __future__ import annotations

import functools
import inspect
from typing import Any

from zactor import _ids, _options, _state
from zactor._actor import _auto_core
from zactor._generator import ObjectRefGenerator
from zactor._object_ref import ObjectRef
from zactor._submit import Exported, captured, parent_task_id, submit
from zactor.protocol import STREAMING, TaskKind, return_count


class RemoteFunction:
    """A function that runs as a task on the cluster.

    Example::

        @zactor.remote(num_returns=2)
        def split(x):
            return x, -x

        a, b = split.remote(3)
    """

    def __init__(self, function: Any, options: dict[str, Any]) -> None:
        self._function = function
        self._options = _options.validate(options, _options.TASK_OPTIONS, "a remote function")
        self._name = getattr(function, "__name__", "task")
        self._is_generator = inspect.isgeneratorfunction(function) or \
            inspect.isasyncgenfunction(function)
        self._exported: Exported | None = None
        self._prepared: dict | None = None
        functools.update_wrapper(self, function)

    def __getstate__(self) -> dict:
        # Shipped inside other functions' pickles: carry the function, not this process's
        # caches (which hold its connection to the head).
        return {"function": self._function, "options": self._options}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["function"], state["options"])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Remote functions cannot be called directly. Instead of running "
            f"'{self._name}()', try '{self._name}.remote()'.")

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Submit a task running this function; return its ObjectRef(s)."""
        return self._remote(args, kwargs, self._options, self)

    def options(self, **options: Any) -> _BoundFunction:
        """The same function with some options overridden for the calls made through it."""
        _options.validate(options, _options.TASK_OPTIONS, "a remote function")
        return _BoundFunction(self, {**self._options, **options})

    def _prepare(self, options: dict[str, Any], core: Any) -> dict:
        from zactor._api import warn_if_infeasible

        resources = _options.task_resources(options)
        name = options.get("name") or self._name
        strategy = _options.scheduling_strategy(options)
        _options.check_group_fit(strategy, resources, f"task {name}")
        if not _options.in_group(strategy):  # a group's bundles were checked when made
            warn_if_infeasible(f"Task {name}", resources)
        return {
            "resources": resources,
            "num_returns": _options.num_returns(options.get("num_returns"), self._is_generator),
            "max_retries": _options.max_retries(options),
            "retry": _options.retry_policy(options.get("retry_exceptions")),
            "name": name,
            "spec_options": _spec_options(options, strategy, core),
            # No strategy of its own: it runs in its parent's placement group if the parent
            # captures its children (decided at each call: the caller varies).
            "capturable": strategy is None,
        }

    def _remote(self, args: tuple, kwargs: dict, options: dict, holder: Any) -> Any:
        core = _state.core or _auto_core()
        prepared = holder._prepared
        if prepared is None or prepared["core"] is not core:
            prepared = holder._prepared = self._prepare(options, core)
            prepared["core"] = core
        if self._exported is None:
            self._exported = Exported(self._function, f"the function {self._name!r}")
        task_id = _ids.new_task_id()
        n = prepared["num_returns"]
        spec_options = prepared["spec_options"]
        if prepared["capturable"] and _state.worker is not None:
            spec_options = captured(spec_options)
        spec = [task_id, TaskKind.TASK, prepared["name"], self._exported.hash, n,
                prepared["resources"], prepared["max_retries"], prepared["retry"], None, None,
                None, None, None, parent_task_id(), False, spec_options, False]
        rids = _ids.return_ids(task_id, return_count(n))
        refs = [ObjectRef(oid) for oid in rids]
        submit(core, spec, args, kwargs, f"task {prepared['name']}", self._exported, rids)
        if n == STREAMING:
            return ObjectRefGenerator(refs[0])
        if n == 1 or n < 0:
            return refs[0]
        if n == 0:
            return None
        return refs


def _spec_options(options: dict[str, Any], strategy: Any, core: Any) -> dict | None:
    """What of a task's options the head needs: its placement strategy and its runtime
    environment's key, where not the default."""
    out = {}
    strategy = _options.strategy_spec(strategy)
    if strategy is not None:
        out["strategy"] = strategy
    env = _options.env_key(core, options)
    if env is not None:
        out["env"] = env
    return out or None


class _BoundFunction:
    def __init__(self, fn: RemoteFunction, options: dict[str, Any]) -> None:
        self._fn = fn
        self._options = options
        self._prepared: dict | None = None

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn._remote(args, kwargs, self._options, self)

    def options(self, **options: Any) -> _BoundFunction:
        _options.validate(options, _options.TASK_OPTIONS, "a remote function")
        return _BoundFunction(self._fn, {**self._options, **options})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)
