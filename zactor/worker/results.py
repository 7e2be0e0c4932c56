"""How a worker sends a task's outcome: its values (inline, or written to the store), or its
error, to the head and, for a direct actor call, to its caller too (zactor._direct).

A mixin of WorkerRuntime: it needs the runtime's connection (``core``), the actor's state
(``checkpointing``, ``instance``, ``actor_id``, ``actor_error_blob``), the direct socket and
the caller of the direct call running now (``direct``, ``reply_to``).
"""

from __future__ import annotations

import inspect
from typing import Any

import cloudpickle
import zmq

from zactor import _serialization
from zactor._ids import return_ids
from zactor.comm.transport import send_routed
from zactor.exceptions import TaskCancelledError
from zactor.protocol import Msg, S, Status, TaskKind, encode, return_count

#: Characters of an error's message the head's task history keeps (it keeps thousands).
ERROR_MESSAGE_MAX = 1000


def _error_summary(exc: BaseException | None) -> list | None:
    """[class name, message] of a task's error, for the head's task history (computed here,
    only on failures: the head never unpickles errors)."""
    if exc is None:
        return None
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a __str__ that raises must not lose the result
        text = ""
    name = getattr(exc, "cause_type_name", None) or type(exc).__name__
    return [name, text[:ERROR_MESSAGE_MAX]]


class ActorBroken(Exception):
    """The actor's constructor failed; every call answers with that failure."""


class ResultSender:
    core: Any
    pid: int
    checkpointing: bool
    instance: Any
    actor_id: bytes | None
    actor_error_blob: bytes | None
    direct: Any
    reply_to: bytes | None

    def send_results(self, spec: list, result: Any) -> None:
        n = spec[S.NUM_RETURNS]
        task_id = spec[S.TASK_ID]
        if n == 1:
            values = [result]
        elif n == 0:
            values = []
        elif inspect.isgenerator(result):
            # A generator for a fixed num_returns: values it yielded before failing are kept,
            # the rest of the refs hold its error (as in Ray).
            values = []
            try:
                for value in result:
                    values.append(value)
                    if len(values) > n:
                        break
            except Exception as exc:  # noqa: BLE001
                if len(values) < n:
                    self.send_values(spec, return_ids(task_id, n), values, exc)
                    return
            if len(values) != n:
                raise ValueError(f"Task {spec[S.NAME]} has num_returns={n} but its generator "
                                 f"yielded {'more' if len(values) > n else len(values)} values")
        else:
            try:
                values = list(result)
            except TypeError:
                values = None
            if values is None or len(values) != n:
                got = "a non-iterable" if values is None else f"{len(values)} values"
                raise ValueError(f"Task {spec[S.NAME]} has num_returns={n} but returned {got}")
        self.send_values(spec, return_ids(task_id, n), values)

    def send_values(self, spec: list, ids: list[bytes], values: list,
                    error: BaseException | None = None) -> None:
        """The task's results: objects ``ids`` hold ``values``, and ``error`` if there are
        more ids than values."""
        results: list = []
        blobs: list = []
        if self.checkpointing and spec[S.KIND] == TaskKind.ACTOR_CALL:
            # Saved before the result leaves, so a result the caller saw is never lost to
            # a restart.
            state = _serialization.serialize(self.instance.__zactor_checkpoint__()).to_blob()
            self.core.send(encode(Msg.CHECKPOINT, self.actor_id), (state,))
        for oid, value in zip(ids, values, strict=False):
            result, blob = self.encode_value(spec, oid, value)
            results.append(result)
            if blob is not None:
                blobs.append(blob)
        if len(ids) > len(values):
            failure = _serialization.error_blob(error, spec[S.NAME], self.pid)
            for oid in ids[len(values):]:
                results.append((oid, Status.ERROR, None, (), ()))
                blobs.append(failure)
        direct = None if self.reply_to is None else self._reply(results, blobs)
        summary = None if len(ids) <= len(values) else _error_summary(error)
        self.core.send(encode(Msg.TASK_DONE, spec[S.TASK_ID], results, False, direct,
                              summary), blobs)

    def encode_value(self, spec: list, oid: bytes, value: Any) -> tuple[tuple, bytes | None]:
        """``value`` as object ``oid``: (result tuple for the head, inline blob or None for a
        value written to the store)."""
        try:
            ser = _serialization.serialize(value)
        except Exception as exc:  # noqa: BLE001
            raise TypeError(
                f"Could not serialize the return value of {spec[S.NAME]} "
                f"({type(value).__name__}): {type(exc).__name__}: {exc}") from exc
        if ser.is_large:
            loc = self.core.store.write(self.core, oid, ser)
            return (oid, Status.OK, loc, ser.contained, ser.contained_actors), None
        return (oid, Status.OK, None, ser.contained, ser.contained_actors), ser.to_blob()

    def _reply(self, results: list, blobs: list) -> list:
        """Answer a direct call's caller itself; the head then stores the results but does
        not send them to the caller again. If the caller's inbound connection is not up yet
        (ROUTER_MANDATORY says so), the head answers instead."""
        caller = self.reply_to
        identity = caller + b"<"
        sock = self.direct
        i = 0
        try:
            for result in results:
                oid, status, loc = result[0], result[1], result[2]
                if loc is None:
                    send_routed(sock, identity, encode(Msg.OBJECT, oid, status, None),
                                (blobs[i],))
                    i += 1
                else:
                    send_routed(sock, identity, encode(Msg.OBJECT, oid, status, loc))
        except zmq.ZMQError:
            return [caller, False]
        return [caller, True]

    def send_error(self, spec: list, exc: BaseException, as_task_error: bool = False) -> None:
        if isinstance(exc, ActorBroken):
            self._send_failure_blob(spec, self.actor_error_blob,
                                    summary=["ActorDiedError", "the actor's constructor failed"])
            return
        if isinstance(exc, TaskCancelledError) and not as_task_error:
            blob = _serialization.dumps_plain(exc)
        else:
            blob = _serialization.error_blob(exc, spec[S.NAME], self.pid)
        self._send_failure_blob(spec, blob, self._retryable(spec, exc), _error_summary(exc))

    def _retryable(self, spec: list, exc: BaseException) -> bool:
        policy = spec[S.RETRY_EXCEPTIONS]
        if not policy or isinstance(exc, TaskCancelledError):
            return False
        if policy is True:
            return isinstance(exc, Exception)
        try:
            classes = cloudpickle.loads(policy)
            return isinstance(exc, classes)
        except Exception:  # noqa: BLE001
            return False

    def _send_failure_blob(self, spec: list, blob: bytes, retryable: bool = False,
                           summary: list | None = None) -> None:
        task_id = spec[S.TASK_ID]
        n = spec[S.NUM_RETURNS]
        ids = return_ids(task_id, return_count(n))
        results = [(oid, Status.ERROR, None, (), ()) for oid in ids]
        blobs = [blob] * len(ids)
        direct = None
        if self.reply_to is not None:
            # A retryable failure is the head's to answer: it may run the call again.
            direct = [self.reply_to, False] if retryable else self._reply(results, blobs)
        self.core.send(encode(Msg.TASK_DONE, task_id, results, retryable, direct, summary),
                       blobs)

    # -- actors ------------------------------------------------------------------------------
