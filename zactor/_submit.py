"""Building and sending task specs: shared by remote functions, actor creation and calls."""

from __future__ import annotations

from typing import Any

try:  # the built-in module: hashlib would load OpenSSL (several MB) for one hash function
    from _blake2 import blake2b
except ImportError:  # pragma: no cover
    from hashlib import blake2b

import io
import types

import cloudpickle

from zactor import _state
from zactor._args import pack_args
from zactor._client import CoreClient
from zactor.protocol import Msg, S, encode


class Exported:
    """A function or class pickled once per process, named by the hash of its pickle."""

    __slots__ = ("blob", "hash")

    def __init__(self, obj: Any, what: str) -> None:
        try:
            self.blob = _dumps_keeping_filenames(obj)
        except Exception as exc:  # noqa: BLE001
            raise TypeError(f"Could not serialize {what}: {type(exc).__name__}: {exc}. "
                            "Remote functions and actor classes must be picklable "
                            "(check what they capture from the enclosing scope).") from exc
        self.hash = blake2b(self.blob, digest_size=16).digest()


_code_reduce = getattr(getattr(cloudpickle, "cloudpickle", None), "_code_reduce", None)


class _FilenamePickler(cloudpickle.Pickler):
    """cloudpickle, except that code keeps its file name: cloudpickle 3 writes
    "<dynamic-code>" instead (for byte-identical pickles across machines), which leaves
    remote tracebacks without file names or source lines. Ray's own copy keeps them."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is types.CodeType:
            rebuild, args = _code_reduce(obj)
            return rebuild, tuple(obj.co_filename if type(a) is str and a == "<dynamic-code>"
                                  else a for a in args)
        return super().reducer_override(obj)


def _dumps_keeping_filenames(obj: Any) -> bytes:
    if _code_reduce is None:  # pragma: no cover - a cloudpickle without that helper
        return cloudpickle.dumps(obj, protocol=5)
    out = io.BytesIO()
    _FilenamePickler(out, protocol=5).dump(obj)
    return out.getvalue()


def parent_task_id() -> bytes | None:
    worker = _state.worker
    if worker is None:
        return None
    return worker.context.task_id


def captured(spec_options: dict | None) -> dict | None:
    """``spec_options`` of work submitted from a task or actor that runs in a placement
    group capturing its children: in that group too (any bundle)."""
    group = _state.worker.group()
    if not group or not group[3]:
        return spec_options
    return {**(spec_options or {}), "strategy": ["pg", group[1], -1, True]}


def submit(core: CoreClient, spec: list, args: tuple, kwargs: dict, what: str,
           exported: Exported | None, return_ids: list[bytes],
           actor_id: bytes | None = None) -> None:
    """Fill the spec's argument slots and send it (with the function, the first time).
    A call to ``actor_id`` may go straight to the actor (zactor._direct)."""
    ser, deps, large = pack_args(args, kwargs, what, core)
    spec[S.DEPS] = deps
    spec[S.CONTAINED] = ser.contained
    spec[S.CONTAINED_ACTORS] = ser.contained_actors
    keep = None
    if ser.is_large:
        # Too big to travel in the message: it goes to the object store, as a dependency.
        from zactor._api import store

        keep = store(core, ser)
        deps.append(keep._id)
        spec[S.ARGS_IN_DEP] = True
        frames: list = [b""]
    else:
        frames = [ser.to_blob()]
    if exported is not None and exported.hash not in core.shipped:
        core.shipped.add(exported.hash)
        spec[S.WITH_FUNCTION] = True
        frames.append(exported.blob)
    core.expect(return_ids)
    if actor_id is not None:
        # Refs and handles must reach the head (CALLED) before the actor could name them
        # to it, and a large argument is a dependency: such calls go through the head, as do
        # generators, whose values the head hands out one by one.
        direct_ok = keep is None and not deps and not ser.contained and \
            not ser.contained_actors and spec[S.NUM_RETURNS] >= 0
        core.send_call(actor_id, spec, frames, direct_ok, return_ids)
    else:
        core.send(encode(Msg.SUBMIT, spec), frames)
    del keep, large
