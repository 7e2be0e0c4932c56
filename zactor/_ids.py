"""Ids are made where work is submitted, without a round trip (DESIGN §2).

A task id is an 8-byte per-process prefix plus a counter; object ids append a 4-byte index:
0 for an object made by ``put``, ``i + 1`` for a task's ``i``-th return value. So the head can
tell from any object id which task made it (``object_id[:16]``).
"""

from __future__ import annotations

import itertools
import os
import struct

TASK_ID_LEN = 16
OBJECT_ID_LEN = 20

_q = struct.Struct(">Q").pack
_i = struct.Struct(">I").pack
_INDEX = [_i(i) for i in range(257)]

_prefix = os.urandom(8)
_counter = itertools.count(1)


def _reseed() -> None:
    global _prefix, _counter
    _prefix = os.urandom(8)
    _counter = itertools.count(1)


os.register_at_fork(after_in_child=_reseed)


def new_task_id() -> bytes:
    return _prefix + _q(next(_counter))


def new_actor_id() -> bytes:
    return _prefix + _q(next(_counter))


def put_object_id() -> bytes:
    return _prefix + _q(next(_counter)) + _INDEX[0]


def return_ids(task_id: bytes, n: int) -> list[bytes]:
    if n < 256:
        return [task_id + _INDEX[i] for i in range(1, n + 1)]
    return [task_id + _i(i) for i in range(1, n + 1)]


def stream_item_id(task_id: bytes, index: int) -> bytes:
    """The id of the ``index``-th value a generator task yields (index 1 is its one return:
    the stream's end, or the dynamic generator; items follow)."""
    return task_id + _i(index + 2)


def stream_index(object_id: bytes) -> int:
    """Inverse of stream_item_id for an item's id."""
    return struct.unpack(">I", object_id[TASK_ID_LEN:])[0] - 2


def task_of(object_id: bytes) -> bytes:
    return object_id[:TASK_ID_LEN]


def is_put(object_id: bytes) -> bool:
    return object_id[TASK_ID_LEN:] == _INDEX[0]
