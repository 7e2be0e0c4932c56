"""``ObjectRef``: a handle to a value that exists, or will, somewhere in the cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zactor import _refs, _serialization, _state

if TYPE_CHECKING:
    import concurrent.futures

_events = _refs.tracker.object_events


class ObjectRef:
    """A reference to a task's result or a ``put`` value; resolve it with ``zactor.get``.

    Example::

        ref = square.remote(4)
        assert zactor.get(ref) == 16
    """

    __slots__ = ("_id", "__weakref__")

    def __init__(self, object_id: bytes, _owned: bool = True) -> None:
        self._id = object_id
        if _owned:
            _events.append((_refs.OWN, object_id))
        else:
            _events.append((_refs.BORROW, object_id))
            _refs.tracker.has_borrow = True

    def __del__(self) -> None:
        try:
            _events.append((_refs.DROP, self._id))
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __reduce__(self):
        _serialization.note_contained_ref(self._id)
        return (_borrowed_ref, (self._id,))

    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    def task_id(self) -> bytes:
        return self._id[:16]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other._id == self._id

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        return f"ObjectRef({self._id.hex()})"

    def future(self) -> concurrent.futures.Future:
        """A ``concurrent.futures.Future`` that completes with the value (or its error)."""
        from concurrent.futures import Future  # imported here: most programs never need it

        fut: concurrent.futures.Future = Future()
        core = _state.core
        if core is None:
            raise RuntimeError("zactor is not initialized")

        def done(entry) -> None:
            if fut.cancelled():
                return
            try:
                fut.set_result(core.decode(self._id, entry))
            except BaseException as exc:  # noqa: BLE001 - delivered to the awaiting side
                fut.set_exception(exc)

        core.on_ready(self._id, done)
        return fut

    def __await__(self) -> Any:
        import asyncio

        return asyncio.wrap_future(self.future()).__await__()

    def _on_completed(self, callback) -> None:
        """Call ``callback(value)`` when the object is ready (Ray's private hook)."""
        self.future().add_done_callback(lambda f: callback(f.result()))


def _borrowed_ref(object_id: bytes) -> ObjectRef:
    return ObjectRef(object_id, _owned=False)
