"""Large arguments are stored once: ``f.remote(big)`` in a loop shares one copy of ``big``.

A top-level argument too large to travel inline becomes an object of its own, as in Ray. This
process remembers, per argument object (by identity, held weakly), which object it became.
Passed again, it asks the head whether that object is still needed by something other than
this process's own ref (a pending task, another process, an object it is nested in): only
then would two copies be alive at once. If so, the argument is compared with the stored copy —
a mutated array must not be sent stale — and, if equal, the same object is passed again; the
head's answer also makes this process hold it, so it cannot vanish before the task is sent.
An old copy nothing else needs is about to be freed, and writing a new one costs no more than
comparing, so it is not reused.

Only arguments with out-of-band buffers (numpy arrays and the like) are compared: their
buffers are compared with ``memcmp`` at memory speed, their (small) pickles as bytes.
"""

from __future__ import annotations

import collections
import sys
import weakref
from typing import TYPE_CHECKING, Any

from zactor._object_ref import ObjectRef

if TYPE_CHECKING:
    from zactor._client import CoreClient
    from zactor._serialization import Serialized

#: Argument objects remembered at most (the oldest are forgotten first).
REMEMBERED = 64

_memcmp: Any = None


class ArgCache:
    def __init__(self) -> None:
        self._entries: collections.OrderedDict[int, tuple] = collections.OrderedDict()

    def ref_for(self, core: CoreClient, value: Any, ser: Serialized) -> ObjectRef:
        """An object holding ``value`` (serialized as ``ser``): the one made for it before if
        something still needs it and it still equals ``value``, else a new one."""
        key = id(value)
        entry = self._entries.get(key)
        if entry is not None and entry[0]() is value:
            ref = self._reuse(core, entry[1], ser)
            if ref is not None:
                self._entries.move_to_end(key)
                return ref
        from zactor._api import store

        ref = store(core, ser)
        if ser.buffers and "numpy" in sys.modules:
            self._remember(key, value, ref.binary())
        return ref

    def _remember(self, key: int, value: Any, oid: bytes) -> None:
        entries = self._entries

        def forget(wref: weakref.ref, key: int = key) -> None:
            if entries.get(key, (None,))[0] is wref:
                del entries[key]

        try:
            wref = weakref.ref(value, forget)
        except TypeError:  # not weakly referable: not remembered
            return
        entries[key] = (wref, oid)
        entries.move_to_end(key)
        while len(entries) > REMEMBERED:
            entries.popitem(last=False)

    def _reuse(self, core: CoreClient, oid: bytes, ser: Serialized) -> ObjectRef | None:
        # Held by this process from now on, if it exists and is needed elsewhere too. This
        # process's pending ref events go first: a release of its earlier hold, arriving
        # after the adoption, would take back the hold the adoption just gave (the head
        # counts one hold per process), and the object could be freed under a task that is
        # about to be sent with it.
        core.flush_refs()
        answer = core.request("adopt", oid)
        if answer is None:
            return None
        ref = ObjectRef(oid)
        status, loc = answer
        if status == 0 and loc is not None and _same(core.store.layout_view(oid, loc), ser):
            return ref
        return None  # changed since: the ref goes, and this process's hold with it


def _same(view: memoryview | None, ser: Serialized) -> bool:
    if view is None or len(view) != ser.layout_size():
        return False
    header, pieces = ser._layout()
    if bytes(view[:len(header)]) != header:
        return False
    for off, data in pieces:
        data = memoryview(data).cast("B")
        stored = view[off:off + data.nbytes]
        if data.nbytes <= 4096:
            equal = bytes(stored) == bytes(data)
        else:
            equal = _equal_memory(stored, data)
        if not equal:
            return False
    return True


def _equal_memory(a: memoryview, b: memoryview) -> bool:
    """memcmp of two buffers of the same length (numpy gives their addresses)."""
    global _memcmp
    import numpy as np

    if _memcmp is None:
        import ctypes

        _memcmp = ctypes.CDLL(None).memcmp
        _memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
        _memcmp.restype = ctypes.c_int
    pa = np.frombuffer(a, dtype=np.uint8).ctypes.data
    pb = np.frombuffer(b, dtype=np.uint8).ctypes.data
    return _memcmp(pa, pb, a.nbytes) == 0
