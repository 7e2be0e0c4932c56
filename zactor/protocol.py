"""Every message zactor sends, declared once (DESIGN §3).

A message is a ZeroMQ multipart: a header frame, then opaque payload frames (cloudpickled user
data, never unpickled by the head). The header frame is two bytes — protocol version and
message type — followed by a msgpack list of the type's fields, in the order declared in
``FIELDS``. msgpack is compact and cannot execute code, so a hostile peer can at worst send a
malformed header, which the head counts and drops.

Object locations (``loc`` below) are ``None`` when the object's blob is the next payload frame,
or ``[path, size]`` for an object in a shared-memory file.
"""

from __future__ import annotations

import enum
from typing import Any

import msgpack

VERSION = 4  # 4: TASK_DONE carries the error for the task history

#: A refusal starts with this byte where a header has its version, so that a peer of *any*
#: protocol version can read why it was refused (a different zactor version, say): the rest
#: is UTF-8 text.
REFUSAL = 0


class Msg(enum.IntEnum):
    # any client (driver or worker) -> head
    HELLO = 1
    SUBMIT = 2
    PUT = 3
    SUBSCRIBE = 4
    REFS = 5
    TASK_DONE = 6
    BLOCKED = 7
    CANCEL = 8
    KILL_ACTOR = 9
    REQUEST = 10
    LOG = 11
    ACTOR_READY = 12
    GOODBYE = 13
    CHECKPOINT = 14
    LOST = 15
    CALLED = 16  # a call the client sent straight to the actor (see zactor/_direct.py)
    YIELD = 18  # one value of a streaming generator task (see zactor/_generator.py)
    # client -> actor, on the actor's own socket
    CALL = 17
    # head -> client
    WELCOME = 20
    OBJECT = 21
    EXECUTE = 22
    REPLY = 23
    CANCEL_TASK = 24
    EXIT = 25
    NOTICE = 26
    ROUTE = 27
    # node agent <-> head, for agents in processes of their own (zactor worker); the agent
    # of the head's own machine lives inside the head and needs none.
    NODE_HELLO = 30
    SPAWN = 31
    WORKER_EXIT = 32
    KILL_WORKER = 33
    STORE = 34  # head -> agent: an operation on the node's object store
    SHUTDOWN = 35
    HEARTBEAT = 36
    NODE_EVENT = 37  # agent -> head: a store's answer or event
    RESTART = 38  # head -> agent: the node was declared dead; start again, clean
    # agent -> head: a chunk of a runtime environment's package, please; head -> agent: it
    PACKAGE = 39
    # a worker setting up its runtime environment -> head (the head echoes a "failed")
    ENV_EVENT = 43
    # node <-> node (and head): pulling a large object in chunks
    FETCH = 40
    CHUNK = 41
    PUSH = 42  # a driver on a machine without a node writes a large object into the head's
    # head -> agent: a request on the node's log files (zactor.node.logs); agent -> head: the
    # answer. The head's own node needs neither: the head reads those files itself.
    LOG_READ = 50
    LOG_DATA = 51


#: Field names of each message type, in wire order. Payload frames are noted after "|".
FIELDS: dict[Msg, tuple[str, ...]] = {
    Msg.HELLO: ("kind", "pid", "node_id", "info"),
    Msg.SUBMIT: ("spec",),  # | args blob, [function blob if spec says it is included]
    # status: OK, or ERROR for an error stored as a value (a dynamic generator's failure)
    Msg.PUT: ("object_id", "loc", "contained", "contained_actors", "status"),  # | inline blob
    Msg.SUBSCRIBE: ("object_ids",),
    # streams_closed: [task id, first item never taken, items known (-1: unknown)] for each
    # ObjectRefGenerator this process dropped: the items it never took are released.
    Msg.REFS: ("object_adds", "object_dels", "actor_adds", "actor_dels", "streams_closed"),
    # direct: None for a call the head sent; [caller key, whether the caller got the results
    # straight from this worker] for a call that came on the actor's own socket.
    # error: None, or [exception class name, message] when the task raised (the head keeps
    # it in its task history without unpickling the error blob).
    Msg.TASK_DONE: ("task_id", "results", "retryable", "direct", "error"),  # | result blobs
    Msg.BLOCKED: ("blocked",),
    Msg.CANCEL: ("object_id", "force", "recursive"),
    Msg.KILL_ACTOR: ("actor_id", "no_restart"),
    Msg.REQUEST: ("req_id", "what", "args"),
    Msg.LOG: ("stream", "prefix", "text"),
    Msg.ACTOR_READY: ("actor_id", "failed", "address"),  # | error blob if failed
    Msg.GOODBYE: ("stop_cluster",),
    Msg.CHECKPOINT: ("actor_id",),  # | the state blob from __zactor_checkpoint__
    Msg.LOST: ("object_id",),  # a client found an object's file gone
    Msg.CALLED: ("spec", "address"),  # | args blob: the copy the head keeps for retries
    # result: [object id, status, loc, contained, contained actors], as in TASK_DONE
    Msg.YIELD: ("task_id", "index", "result"),  # | the value's blob if inline
    Msg.CALL: ("spec",),  # | args blob
    Msg.WELCOME: ("info",),
    Msg.OBJECT: ("object_id", "status", "loc"),  # | blob if inline
    Msg.EXECUTE: ("spec", "deps", "with_function", "placement"),  # | args, [fn], dep blobs
    Msg.REPLY: ("req_id", "ok", "value"),
    Msg.CANCEL_TASK: ("task_id", "force"),
    Msg.EXIT: (),
    Msg.NOTICE: ("level", "text"),
    # seen >= 0: call the actor at ``address`` directly, if this client has sent it exactly
    # ``seen`` calls so far; seen == -1: that address is dead, stop using it.
    Msg.ROUTE: ("actor_id", "address", "seen"),
    # info: versions, host, store (arena path, capacity), transfer address, live workers
    Msg.NODE_HELLO: ("node_id", "resources", "info"),
    # env_key None: the default environment; else the resolved environment (a dict)
    Msg.SPAWN: ("count", "env_key", "env"),
    Msg.WORKER_EXIT: ("pid", "exitcode", "signal", "env_key"),
    Msg.KILL_WORKER: ("pid", "signal"),
    # op: sealed, free, touch, abandon, client_gone, lose, alloc, prealloc, pull; args a list
    Msg.STORE: ("op", "args"),
    Msg.SHUTDOWN: (),
    # agent -> head: seq counts up, stats (memory, store) ride along; head -> agent: the echo
    Msg.HEARTBEAT: ("seq", "stats"),
    # event: alloc (a reply: [req, answer]), spilled [oid, loc], pulled [oid, loc | None, why]
    Msg.NODE_EVENT: ("event", "args"),
    Msg.RESTART: ("why",),
    # asked with total 0; answered with the package's size and the bytes at ``offset``
    # (none, and an error, if the head has no such package)
    Msg.PACKAGE: ("uri", "offset", "total", "error"),  # | the bytes, in an answer
    # event: "log" (a line of the setup's output) or "failed" (text: why, with pip's output)
    Msg.ENV_EVENT: ("node_id", "env_key", "event", "text"),
    # the bytes [offset, offset + length) of the stored object ``oid`` at the holder's ``loc``
    Msg.FETCH: ("oid", "loc", "offset", "length"),
    Msg.CHUNK: ("oid", "offset", "error"),  # | the bytes (none if error, or an ack)
    # dest: the "alloc" answer (["arena", offset, seal, hot] or ["file", path]); the bytes at
    # ``offset`` of the object's layout follow; ``last``: the seal goes on after them.
    Msg.PUSH: ("oid", "dest", "offset", "last"),  # | the bytes
    # op: "list" (args [glob | None]) or "read" (args [filename, offset, length, tail lines])
    Msg.LOG_READ: ("req", "op", "args"),
    # value: what zactor.node.logs.LogDir.handle returned (ok), or [error class, message]
    Msg.LOG_DATA: ("req", "ok", "value"),
}

_ARITY = {m: len(f) for m, f in FIELDS.items()}
_BY_CODE: list[Msg | None] = [None] * 256
for _m in Msg:
    _BY_CODE[_m] = _m
_PREFIX = {m: bytes((VERSION, m)) for m in Msg}


class TaskKind(enum.IntEnum):
    TASK = 0
    ACTOR_CREATE = 1
    ACTOR_CALL = 2


#: ``num_returns`` in a spec for generator tasks: a stream of values (Ray's default for
#: generator functions), or Ray's older ``num_returns="dynamic"``: one ref to a generator of
#: refs. Either task has one return object (see return_count).
STREAMING = -1
DYNAMIC = -2


def return_count(num_returns: int) -> int:
    """How many return objects a task with this spec ``num_returns`` has."""
    return num_returns if num_returns >= 0 else 1


class Status(enum.IntEnum):
    OK = 0
    ERROR = 1  # the blob is a pickled error (see zactor._serialization.encode_error)


# A task spec travels as a msgpack list; these are its slots. The head reads only the ones it
# schedules on; the worker reads all of them.
SPEC_FIELDS = (
    "task_id",           # bytes(16)
    "kind",              # TaskKind
    "name",              # str, for logs and errors
    "fn_hash",           # bytes: function or class content hash
    "num_returns",       # int
    "resources",         # dict[str, float] needed while running
    "max_retries",       # int, -1 = infinite
    "retry_exceptions",  # False | True | bytes (pickled tuple of classes; worker decides)
    "deps",              # list[bytes]: object ids of top-level ObjectRef arguments
    "contained",         # list[bytes]: object ids pickled inside the arguments
    "contained_actors",  # list[bytes]: actor ids pickled inside the arguments
    "actor_id",          # bytes | None
    "method",            # str | None
    "parent_task_id",    # bytes | None: the task that submitted this one
    "args_in_dep",       # bool: the arguments blob is the last dep (it was too big inline)
    "options",           # dict: actor options, scheduling strategy
    "with_function",     # bool: the function blob follows the args blob
)

class S:
    """Slot numbers of SPEC_FIELDS (plain ints: these index lists on hot paths)."""

    TASK_ID = 0
    KIND = 1
    NAME = 2
    FN_HASH = 3
    NUM_RETURNS = 4
    RESOURCES = 5
    MAX_RETRIES = 6
    RETRY_EXCEPTIONS = 7
    DEPS = 8
    CONTAINED = 9
    CONTAINED_ACTORS = 10
    ACTOR_ID = 11
    METHOD = 12
    PARENT_TASK_ID = 13
    ARGS_IN_DEP = 14
    OPTIONS = 15
    WITH_FUNCTION = 16


assert len(SPEC_FIELDS) == len([k for k in vars(S) if k.isupper()])


class ProtocolError(ValueError):
    """A message that does not parse: wrong version, unknown type or wrong field count."""


class Refused(ProtocolError):
    """The peer refused this process (the frame was a refusal, see REFUSAL)."""


def refusal(text: str) -> bytes:
    return bytes((REFUSAL,)) + text.encode()


_packb = msgpack.Packer(use_bin_type=True).pack


def encode(mtype: Msg, *fields: Any) -> bytes:
    """Header frame for a message of ``mtype`` with ``fields`` in ``FIELDS`` order."""
    return _PREFIX[mtype] + _packb(fields)


def decode(frame: bytes) -> tuple[Msg, list]:
    """Parse a header frame; raise :class:`ProtocolError` on anything malformed."""
    if len(frame) < 3:
        raise ProtocolError("short header")
    if frame[0] == REFUSAL:
        raise Refused(bytes(frame[1:]).decode(errors="replace"))
    if frame[0] != VERSION:
        raise ProtocolError(f"protocol version {frame[0]} (expected {VERSION})")
    mtype = _BY_CODE[frame[1]]
    if mtype is None:
        raise ProtocolError(f"unknown message type {frame[1]}")
    try:
        fields = msgpack.unpackb(frame[2:], raw=False, use_list=True, strict_map_key=False)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a malformed message
        raise ProtocolError(f"undecodable header: {exc}") from None
    if not isinstance(fields, list) or len(fields) != _ARITY[mtype]:
        raise ProtocolError(f"{mtype.name}: expected {_ARITY[mtype]} fields")
    return mtype, fields
