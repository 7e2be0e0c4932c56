"""Running generator tasks in a worker: each value leaves as soon as it is yielded.

A streaming generator (Ray's default for functions that ``yield``) sends one YIELD per value
and ends with TASK_DONE carrying the number of values; the head hands the values to the caller
as they come (zactor.head.streams). A ``num_returns="dynamic"`` task stores each value as an
object of its own and returns one ``DynamicObjectRefGenerator`` of their refs. An exception in
the generator propagates to the task's usual error path, which the head turns into the
stream's last item.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zactor import _ids
from zactor._generator import DynamicObjectRefGenerator
from zactor.protocol import DYNAMIC, Msg, S, encode

if TYPE_CHECKING:
    from zactor.worker.main import WorkerRuntime


def run(rt: WorkerRuntime, spec: list, gen: Any) -> None:
    """Drive a (sync) generator ``gen`` returned by the task's function."""
    _check_generator(spec, gen, "__next__")
    if spec[S.NUM_RETURNS] == DYNAMIC:
        refs: list = []
        try:
            for value in gen:
                refs.append(_store_item(rt, spec, len(refs), value))
        except Exception as exc:  # noqa: BLE001 - as in Ray: the error is the last item
            refs.append(_store_error(rt, spec, len(refs), exc))
        finish_dynamic(rt, spec, refs)
        return
    count = 0
    for value in gen:
        send_item(rt, spec, count, value)
        count += 1
    finish_stream(rt, spec, count)


async def run_async(rt: WorkerRuntime, spec: list, agen: Any) -> None:
    """Drive an async generator (an async actor's method) on the actor's loop."""
    _check_generator(spec, agen, "__anext__")
    count = 0
    refs = []
    try:
        async for value in agen:
            if spec[S.NUM_RETURNS] == DYNAMIC:
                refs.append(_store_item(rt, spec, count, value))
            else:
                send_item(rt, spec, count, value)
            count += 1
    except Exception as exc:  # noqa: BLE001 - a dynamic generator keeps it as its last item
        if spec[S.NUM_RETURNS] != DYNAMIC:
            raise
        refs.append(_store_error(rt, spec, count, exc))
    if spec[S.NUM_RETURNS] == DYNAMIC:
        finish_dynamic(rt, spec, refs)
    else:
        finish_stream(rt, spec, count)


def send_item(rt: WorkerRuntime, spec: list, index: int, value: Any) -> None:
    task_id = spec[S.TASK_ID]
    result, blob = rt.encode_value(spec, _ids.stream_item_id(task_id, index), value)
    rt.core.send(encode(Msg.YIELD, task_id, index, result), () if blob is None else (blob,))


def finish_stream(rt: WorkerRuntime, spec: list, count: int) -> None:
    rt.send_values(spec, _ids.return_ids(spec[S.TASK_ID], 1), [count])


def finish_dynamic(rt: WorkerRuntime, spec: list, refs: list) -> None:
    rt.send_values(spec, _ids.return_ids(spec[S.TASK_ID], 1), [DynamicObjectRefGenerator(refs)])


def _store_item(rt: WorkerRuntime, spec: list, index: int, value: Any):
    from zactor._api import store_as
    from zactor._serialization import serialize

    return store_as(rt.core, _ids.stream_item_id(spec[S.TASK_ID], index), serialize(value))


def _store_error(rt: WorkerRuntime, spec: list, index: int, exc: BaseException):
    from zactor._api import store_as
    from zactor._serialization import serialize_error

    return store_as(rt.core, _ids.stream_item_id(spec[S.TASK_ID], index),
                    serialize_error(exc, spec[S.NAME], rt.pid), status=1)


def _check_generator(spec: list, gen: Any, method: str) -> None:
    if not hasattr(gen, method):
        raise TypeError(f"{spec[S.NAME]} was called as a generator (num_returns="
                        f"'streaming' or 'dynamic') but returned a {type(gen).__name__}, not "
                        "a generator")
