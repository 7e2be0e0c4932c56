"""Task arguments: top-level ObjectRefs become dependencies, nested ones stay refs.

The submitter replaces each top-level ``ObjectRef`` argument with a ``_Dep`` placeholder
and lists its id in the spec's ``deps``; the worker swaps each placeholder for the value.
Refs inside containers are pickled as refs (and pinned by the head while the task lives),
exactly as in Ray. A top-level argument too large to travel inline is stored as an object of
its own and passed the same way, once for all the tasks it is passed to (zactor._arg_cache).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zactor._object_ref import ObjectRef
from zactor._serialization import Serialized, is_plain, serialize, serialize_plain

if TYPE_CHECKING:
    from zactor._client import CoreClient


class _Dep:
    __slots__ = ("i",)

    def __init__(self, i: int) -> None:
        self.i = i

    def __reduce__(self):
        return (_Dep, (self.i,))


_NO_ARGS = serialize_plain(([], {}))


def pack_args(args: tuple, kwargs: dict, what: str,
              core: CoreClient | None = None) -> tuple[Serialized, list[bytes], list]:
    """The arguments' blob, the ids of the objects they name at the top level, and the refs
    to keep until the task is sent (its large arguments, stored as objects)."""
    if not args and not kwargs:
        return _NO_ARGS, [], []
    if is_plain(args) and is_plain(kwargs):
        return serialize_plain((list(args), kwargs)), [], []
    deps: list[bytes] = []

    def sub(x: Any) -> Any:
        if type(x) is ObjectRef:
            deps.append(x._id)
            return _Dep(len(deps) - 1)
        return x

    a = [sub(x) for x in args] if args else []
    k = {key: sub(v) for key, v in kwargs.items()} if kwargs else {}
    try:
        ser = serialize((a, k))
    except Exception as exc:  # noqa: BLE001 - name the argument that does not pickle
        raise TypeError(_which_argument(args, kwargs, what, exc)) from exc
    keep: list = []
    if ser.is_large and core is not None:

        def stored(x: Any) -> Any:
            if type(x) is _Dep or is_plain(x):
                return x
            one = serialize(x)
            if not one.is_large:
                return x
            ref = core.arg_cache.ref_for(core, x, one)
            keep.append(ref)
            deps.append(ref._id)
            return _Dep(len(deps) - 1)

        a = [stored(x) for x in a]
        k = {key: stored(v) for key, v in k.items()}
        if keep:
            ser = serialize((a, k))
    return ser, deps, keep


def _which_argument(args: tuple, kwargs: dict, what: str, exc: Exception) -> str:
    for label, value in [*((f"positional argument {i}", v) for i, v in enumerate(args)),
                         *((f"keyword argument {k!r}", v) for k, v in kwargs.items())]:
        try:
            serialize(value)
        except Exception as inner:  # noqa: BLE001
            return (f"Could not serialize the {label} ({_short(value)}) of {what}: "
                    f"{type(inner).__name__}: {inner}")
    return f"Could not serialize the arguments of {what}: {type(exc).__name__}: {exc}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def unpack_args(value: tuple, resolve: Callable[[int], Any]) -> tuple[list, dict]:
    a, k = value
    for i, x in enumerate(a):
        if type(x) is _Dep:
            a[i] = resolve(x.i)
    for key, x in k.items():
        if type(x) is _Dep:
            k[key] = resolve(x.i)
    return a, k
