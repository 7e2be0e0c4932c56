"""``zactor.remote``: turn a function into a task, or a class into an actor."""

from __future__ import annotations

from typing import Any

from zactor._actor import ActorClass
from zactor._remote_function import RemoteFunction


def remote(*args: Any, **options: Any) -> Any:
    """Decorator: ``@zactor.remote`` or ``@zactor.remote(num_cpus=2, ...)``.

    Example::

        @zactor.remote
        def add(a, b):
            return a + b

        assert zactor.get(add.remote(1, 2)) == 3
    """
    if len(args) == 1 and not options and (isinstance(args[0], type) or callable(args[0])):
        return _make(args[0], {})
    if args:
        raise TypeError(
            "The @zactor.remote decorator must be applied either with no arguments and no "
            "parentheses, for example '@zactor.remote', or with keyword options, for example "
            "'@zactor.remote(num_returns=2, resources={\"CustomResource\": 1})'.")
    return lambda obj: _make(obj, options)


def _make(obj: Any, options: dict[str, Any]) -> Any:
    if isinstance(obj, type):
        return ActorClass(obj, options)
    if callable(obj):
        return RemoteFunction(obj, options)
    raise TypeError(f"@zactor.remote applies to functions and classes, not {type(obj).__name__}")
