"""Actor classes, handles and methods: ``Cls.remote()`` → handle; ``h.m.remote()`` → refs."""

from __future__ import annotations

from typing import Any

from zactor import _ids, _options, _refs, _serialization, _state
from zactor._generator import ObjectRefGenerator
from zactor._object_ref import ObjectRef
from zactor._submit import Exported, captured, parent_task_id, submit
from zactor.exceptions import _ActorExit
from zactor.protocol import STREAMING, TaskKind, return_count

_events = _refs.tracker.actor_events
_BUILTIN_METHODS = {"__ray_ready__": 1, "__ray_terminate__": 1}


def exit_actor() -> None:
    """End the current actor now, on purpose (Ray's ``ray.actor.exit_actor``): it is not
    restarted, its queued calls fail with ActorDiedError, and its ``atexit`` handlers run.

    Example::

        @zactor.remote
        class Job:
            def finish(self):
                zactor.actor.exit_actor()
    """
    worker = _state.worker
    if worker is None or worker.actor_id is None:
        raise TypeError("exit_actor() can only be called inside an actor")
    raise _ActorExit()


def _auto_core() -> Any:
    from zactor._api import core

    return core()


def method(*args: Any, **kwargs: Any) -> Any:
    """Set per-method options on an actor method, e.g. ``@zactor.method(num_returns=2)``."""
    if args:
        raise TypeError("@zactor.method takes keyword options only, e.g. num_returns=2")
    _options.validate(kwargs, _options.METHOD_OPTIONS, "an actor method")

    def decorate(fn):
        fn.__zactor_method_options__ = kwargs
        return fn

    return decorate


_ASYNC_FLAGS = 0x80 | 0x200  # CO_COROUTINE | CO_ASYNC_GENERATOR, as inspect defines them
_GENERATOR_FLAGS = 0x20 | 0x200  # CO_GENERATOR | CO_ASYNC_GENERATOR


def _class_meta(cls: type) -> dict:
    """Method names (with their num_returns) and whether any is async: what a handle needs."""
    methods: dict[str, int] = {}
    is_async = False
    for name in dir(cls):
        if name.startswith("__") and name != "__call__":
            continue
        fn = getattr(cls, name, None)
        fn = getattr(fn, "__func__", fn)  # classmethods
        code = getattr(fn, "__code__", None)
        if code is None or not callable(fn):
            continue
        opts = getattr(fn, "__zactor_method_options__", {})
        methods[name] = _options.num_returns(opts.get("num_returns"),
                                             bool(code.co_flags & _GENERATOR_FLAGS))
        if code.co_flags & _ASYNC_FLAGS:
            is_async = True
    return {"class_name": cls.__name__, "methods": methods, "is_async": is_async}


class ActorClass:
    """A class whose instances live in their own worker process.

    Example::

        @zactor.remote
        class Counter:
            def __init__(self):
                self.n = 0
            def incr(self):
                self.n += 1
                return self.n

        c = Counter.remote()
        assert zactor.get(c.incr.remote()) == 1
    """

    def __init__(self, cls: type, options: dict[str, Any]) -> None:
        self._cls = cls
        self._options = _options.validate(options, _options.ACTOR_OPTIONS, "an actor class")
        self._meta = _class_meta(cls)
        self._exported: Exported | None = None
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__doc__ = cls.__doc__
        self.__module__ = cls.__module__

    def __getstate__(self) -> dict:
        return {"cls": self._cls, "options": self._options}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["cls"], state["options"])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Actors cannot be instantiated directly. Instead of '{self.__name__}()', use "
            f"'{self.__name__}.remote()'.")

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        """Create an actor; return its handle at once (creation runs asynchronously)."""
        return self._create(args, kwargs, self._options)

    def options(self, **options: Any) -> _BoundActorClass:
        _options.validate(options, _options.ACTOR_OPTIONS, "an actor class")
        return _BoundActorClass(self, {**self._options, **options})

    def _create(self, args: tuple, kwargs: dict, options: dict) -> ActorHandle:
        from zactor._api import core as get_core
        from zactor._api import current_namespace, warn_if_infeasible

        core = get_core()
        if self._exported is None:
            self._exported = Exported(self._cls, f"the actor class {self.__name__!r}")
        actor_id = _ids.new_actor_id()
        name = options.get("name")
        namespace = options.get("namespace") or current_namespace()
        meta = self._meta
        if name is not None:
            answer = core.request("reserve_name", [actor_id, name, namespace,
                                                   bool(options.get("get_if_exists"))])
            if answer[0] == "exists":
                return ActorHandle(answer[1], answer[2] or meta, _owned=True)
        explicit_cpus = options.get("num_cpus") is not None
        hold = _options.task_resources(options, default_cpus=0)
        strategy = _options.scheduling_strategy(options)
        in_group = _options.in_group(strategy)
        # Ray places an actor on a CPU unless it says num_cpus; in a group, on what it holds.
        place = hold if explicit_cpus or in_group else \
            {**hold, "CPU": max(1.0, hold.get("CPU", 0.0))}
        _options.check_group_fit(strategy, place, f"actor {self.__name__}")
        if not in_group:
            warn_if_infeasible(f"Actor {self.__name__}", place)
        actor_options = {
            "class_name": self.__name__, "meta": meta, "place": place, "name": name,
            "namespace": namespace, "lifetime": options.get("lifetime"),
            "max_concurrency": options.get("max_concurrency"), "is_async": meta["is_async"],
            "max_restarts": options.get("max_restarts") or 0,
            "max_task_retries": options.get("max_task_retries") or 0,
            "supervisor": options.get("_supervisor"),
            "strategy": _options.strategy_spec(strategy),
            "env": _options.env_key(core, options),
        }
        if strategy is None and _state.worker is not None:
            actor_options = captured(actor_options)
        spec = [_ids.new_task_id(), TaskKind.ACTOR_CREATE, f"{self.__name__}.__init__",
                self._exported.hash, 0, hold, 0, False, None, None, None, actor_id, None,
                parent_task_id(), False, actor_options, False]
        handle = ActorHandle(actor_id, meta, _owned=True)
        submit(core, spec, args, kwargs, f"the constructor of actor {self.__name__}",
               self._exported, [])
        return handle


class _BoundActorClass:
    def __init__(self, cls: ActorClass, options: dict[str, Any]) -> None:
        self._cls = cls
        self._options = options

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        return self._cls._create(args, kwargs, self._options)

    def options(self, **options: Any) -> _BoundActorClass:
        _options.validate(options, _options.ACTOR_OPTIONS, "an actor class")
        return _BoundActorClass(self._cls, {**self._options, **options})


class ActorHandle:
    """A reference to a live actor; pass it to tasks and other actors freely."""

    def __init__(self, actor_id: bytes, meta: dict, _owned: bool = True) -> None:
        self._actor_id = actor_id
        self._meta = meta
        _events.append((_refs.OWN if _owned else _refs.BORROW, actor_id))
        if not _owned:
            _refs.tracker.has_borrow = True

    def __del__(self) -> None:
        try:
            _events.append((_refs.DROP, self._actor_id))
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __getattr__(self, name: str) -> ActorMethod:
        if name.startswith("_") and name not in _BUILTIN_METHODS:
            raise AttributeError(name)
        # Not cached on the handle: a method holds its handle, and a cycle would keep the
        # handle (and so the actor) alive until the cyclic GC ran.
        methods = self._meta["methods"]
        n = methods.get(name, _BUILTIN_METHODS.get(name))
        if n is None:
            raise AttributeError(
                f"'{self._meta['class_name']}' actor has no method '{name}' (its methods: "
                f"{', '.join(sorted(methods)) or 'none'})")
        return ActorMethod(self, name, n, {})

    def __reduce__(self):
        _serialization.note_contained_actor(self._actor_id)
        return (_borrowed_handle, (self._actor_id, self._meta))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self) -> int:
        return hash(self._actor_id)

    def __repr__(self) -> str:
        return f"Actor({self._meta['class_name']}, {self._actor_id.hex()})"

    def _call(self, method_name: str, args: tuple, kwargs: dict, num_returns: int,
              options: dict) -> Any:
        core = _state.core or _auto_core()
        task_id = _ids.new_task_id()
        name = options.get("name") or f"{self._meta['class_name']}.{method_name}"
        # max_retries slot: a per-method max_task_retries, or None for the actor's own.
        spec = [task_id, TaskKind.ACTOR_CALL, name, None, num_returns, {},
                options.get("max_task_retries"), False, None,
                None, None, self._actor_id, method_name, parent_task_id(), False, None, False]
        rids = _ids.return_ids(task_id, return_count(num_returns))
        refs = [ObjectRef(oid) for oid in rids]
        submit(core, spec, args, kwargs, f"actor method {name}", None, rids, self._actor_id)
        if num_returns == STREAMING:
            return ObjectRefGenerator(refs[0])
        if num_returns == 1 or num_returns < 0:
            return refs[0]
        if num_returns == 0:
            return None
        return refs


def _borrowed_handle(actor_id: bytes, meta: dict) -> ActorHandle:
    return ActorHandle(actor_id, meta, _owned=False)


class ActorMethod:
    def __init__(self, handle: ActorHandle, name: str, num_returns: int, options: dict) -> None:
        self._handle = handle
        self._name = name
        self._num_returns = num_returns
        self._options = options

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._handle._call(self._name, args, kwargs, self._num_returns, self._options)

    def options(self, **options: Any) -> ActorMethod:
        _options.validate(options, _options.METHOD_OPTIONS, "an actor method")
        n = self._num_returns
        if "num_returns" in options:
            n = _options.num_returns(options["num_returns"], n == STREAMING)
        return ActorMethod(self._handle, self._name, n, {**self._options, **options})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Actor methods cannot be called directly. Instead of running "
            f"'object.{self._name}()', try 'object.{self._name}.remote()'.")
