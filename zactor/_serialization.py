"""Object encoding: cloudpickle protocol 5, inline blobs and shared-memory files (DESIGN §4).

One layout serves both places an object can live::

    flags:u8 | nbuf:u32 | pickle_len:u64 | buf_len:u64 * nbuf | pad | pickle | pad | buf0 | ...

Buffers start on ``BUFFER_ALIGN`` boundaries so a reader that ``mmap``s the file hands numpy a
properly aligned, read-only, zero-copy view. Inline blobs (small objects) may instead be one
lz4 block of that layout, flagged in ``flags``, when compressing actually shrinks them.
ObjectRefs and actor handles met while pickling are collected, so the head can pin them for as
long as the containing object or task lives.
"""

from __future__ import annotations

import mmap
import os
import pickle
import struct
import threading
import traceback
from typing import Any

import lz4.block

from zactor import config
from zactor.exceptions import TaskError

_FLAG_LZ4 = 1
_HEAD = struct.Struct("<BIQ")
_U64 = struct.Struct("<Q")
_ALIGN = config.BUFFER_ALIGN

_collect = threading.local()


def note_contained_ref(object_id: bytes) -> None:
    refs = getattr(_collect, "refs", None)
    if refs is not None:
        refs.append(object_id)


def note_contained_actor(actor_id: bytes) -> None:
    actors = getattr(_collect, "actors", None)
    if actors is not None:
        actors.append(actor_id)


class Serialized:
    """A pickled value: its pickle, out-of-band buffers, size and the refs it contains."""

    __slots__ = ("pickled", "buffers", "size", "contained", "contained_actors", "_pieces")

    def __init__(self, pickled, buffers, contained, contained_actors) -> None:
        self.pickled = pickled
        self.buffers = buffers
        self.size = len(pickled) + sum(b.nbytes for b in buffers)
        self.contained = contained
        self.contained_actors = contained_actors
        self._pieces = None

    @property
    def is_large(self) -> bool:
        return self.size > config.INLINE_OBJECT_MAX

    def _layout(self) -> tuple[bytes, list[tuple[int, memoryview | bytes]]]:
        """Header bytes and (offset, data) pieces of the uncompressed layout."""
        if self._pieces is None:
            self._pieces = self._lay_out()
        return self._pieces

    def _lay_out(self) -> tuple[bytes, list[tuple[int, memoryview | bytes]]]:
        n = len(self.buffers)
        header = _HEAD.pack(0, n, len(self.pickled)) + b"".join(
            _U64.pack(b.nbytes) for b in self.buffers
        )
        pieces = []
        # The pickle follows the header directly when there are no buffers to align.
        off = _align(len(header)) if n else len(header)
        pieces.append((off, self.pickled))
        off += len(self.pickled)
        for b in self.buffers:
            off = _align(off)
            pieces.append((off, b))
            off += b.nbytes
        return header, pieces

    def to_blob(self) -> bytes:
        """The inline form: one bytes object, lz4-compressed when that pays."""
        if not self.buffers:
            body = _HEAD.pack(0, 0, len(self.pickled)) + self.pickled
        else:
            header, pieces = self._layout()
            parts = [header]
            pos = len(header)
            for off, data in pieces:
                parts.append(b"\0" * (off - pos))
                parts.append(data)
                pos = off + len(data if isinstance(data, bytes) else memoryview(data).cast("B"))
            body = b"".join(parts)
        if len(body) >= config.COMPRESS_MIN:
            packed = lz4.block.compress(body, store_size=True)
            if len(packed) + 1 < len(body):
                return bytes((_FLAG_LZ4,)) + packed
        return body

    def layout_size(self) -> int:
        """Bytes of the uncompressed layout: what a shared-memory copy needs."""
        _, pieces = self._layout()
        off, data = pieces[-1]
        return off + memoryview(data).nbytes

    def write_into(self, dest: memoryview, copy=None) -> None:
        """Copy the layout into ``dest`` (a writable view at least ``layout_size()`` long,
        whose untouched padding may hold anything); ``copy(dest, src)`` copies each piece
        (default: a plain memoryview assignment)."""
        header, pieces = self._layout()
        dest[:len(header)] = header
        for off, data in pieces:
            view = memoryview(data).cast("B")
            if copy is None:
                dest[off:off + view.nbytes] = view
            else:
                copy(dest[off:off + view.nbytes], view)

    def write_at(self, fd: int, start: int) -> None:
        """``pwrite`` the layout into ``fd`` at ``start``: the kernel allocates the pages,
        and a full file system raises OSError instead of faulting a mapping."""
        header, pieces = self._layout()
        _pwrite_all(fd, header, start)
        pos = len(header)
        for off, data in pieces:
            if off > pos:
                _pwrite_all(fd, b"\0" * (off - pos), start + pos)
            view = memoryview(data).cast("B")
            _pwrite_all(fd, view, start + off)
            pos = off + view.nbytes

    def to_file(self, path: str) -> int:
        """Write the layout to a file at ``path`` (mode 0600); return its size.

        Written under a temporary name and renamed into place, so no reader ever maps a
        half-written file, and a re-run of the task that made it (a retry, a rebuild from
        lineage) replaces it atomically while earlier readers keep their mapping."""
        header, pieces = self._layout()
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        try:
            _write_all(fd, header)
            pos = len(header)
            for off, data in pieces:
                if off > pos:
                    _write_all(fd, b"\0" * (off - pos))
                view = memoryview(data).cast("B")
                _write_all(fd, view)
                pos = off + view.nbytes
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        os.rename(tmp, path)
        return pos


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _pwrite_all(fd: int, data, offset: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view[: 1 << 30], offset)
        view = view[done:]
        offset += done


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        done = os.write(fd, view[: 1 << 30])
        view = view[done:]


_cloudpickle: Any = None


def _cp() -> Any:
    # Imported on first use: the head encodes only its own errors and never needs it.
    global _cloudpickle
    if _cloudpickle is None:
        import cloudpickle

        _cloudpickle = cloudpickle
    return _cloudpickle


_PLAIN = frozenset({type(None), bool, int, float, str, bytes})
_NO_REFS: tuple = ()


def is_plain(value: Any) -> bool:
    """True for builtin scalars and small flat containers of them: values that plain pickle
    encodes exactly as cloudpickle would, with no refs or buffers inside."""
    t = type(value)
    if t in _PLAIN:
        return True
    if t is tuple or t is list:
        return len(value) <= 32 and all(type(x) in _PLAIN for x in value)
    if t is dict:
        return len(value) <= 32 and all(
            type(k) in _PLAIN and type(x) in _PLAIN for k, x in value.items())
    return False


def serialize_plain(value: Any) -> Serialized:
    """The fast path for :func:`is_plain` values: no cloudpickle pickler to set up."""
    return Serialized(_dumps(value, 5), _NO_REFS, _NO_REFS, _NO_REFS)


_dumps = pickle.dumps


def serialize(value: Any) -> Serialized:
    """Pickle ``value`` (protocol 5, buffers out of band), noting the refs inside it."""
    if type(value) in _PLAIN:
        return Serialized(_dumps(value, 5), _NO_REFS, _NO_REFS, _NO_REFS)
    cloudpickle = _cloudpickle or _cp()
    buffers: list = []
    _collect.refs = refs = []
    _collect.actors = actors = []
    try:
        pickled = cloudpickle.dumps(value, protocol=5, buffer_callback=_raw_buffer(buffers))
    finally:
        _collect.refs = None
        _collect.actors = None
    return Serialized(pickled, buffers, refs, actors)


def _raw_buffer(buffers: list):
    def callback(buf: pickle.PickleBuffer):
        try:
            buffers.append(buf.raw())
        except BufferError:  # not contiguous: let pickle copy it in band
            return True
        return False

    return callback


def loads(data) -> Any:
    """Inverse of the layout above, from bytes, a zmq frame buffer or an mmap view."""
    view = memoryview(data)
    if view.nbytes and view[0] == _FLAG_LZ4:
        view = memoryview(lz4.block.decompress(view[1:]))
    _, nbuf, plen = _HEAD.unpack_from(view, 0)
    off = _HEAD.size
    if nbuf == 0:
        return pickle.loads(view[off : off + plen])
    lens = [_U64.unpack_from(view, off + 8 * i)[0] for i in range(nbuf)]
    off = _align(off + 8 * nbuf)
    pickled = view[off : off + plen]
    off += plen
    bufs = []
    for n in lens:
        off = _align(off)
        bufs.append(view[off : off + n])
        off += n
    return pickle.loads(pickled, buffers=bufs)


def load_file(path: str) -> Any:
    """Map an object file read-only and unpickle it: numpy arrays come back as zero-copy views."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    return loads(mm)


def dumps_plain(value: Any) -> bytes:
    """Inline blob of a value the caller trusts to pickle (zactor's own errors)."""
    return Serialized(pickle.dumps(value, protocol=5), [], [], []).to_blob()


def error_blob(exc: BaseException, task_name: str, pid: int) -> bytes:
    """Encode an exception raised by user code so ``get`` can re-raise it as a TaskError.

    When the exception itself cannot be pickled, its type name, message and traceback text
    still travel; when even its class can be pickled, the caller gets an instance of it.
    """
    return serialize_error(exc, task_name, pid).to_blob()


def serialize_error(exc: BaseException, task_name: str, pid: int) -> Serialized:
    """The TaskError for ``exc``, pickled (see error_blob)."""
    if isinstance(exc, TaskError):  # a nested failure: pass the innermost cause on
        tb_text = exc.traceback_str
        cause: BaseException | None = exc.cause
    else:
        tb_text = "".join(traceback.format_exception(type(exc), exc, _user_frames(exc)))
        cause = exc
    type_name = exc.cause_type_name if isinstance(exc, TaskError) else type(exc).__name__
    err = TaskError(task_name, tb_text, cause, type_name, pid)
    try:
        return serialize(err)
    except Exception:  # noqa: BLE001 - the cause does not pickle; keep its class if that does
        pass
    substitute = _substitute_cause(cause)
    return serialize(TaskError(task_name, tb_text, substitute, type_name, pid))


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _user_frames(exc: BaseException):
    """The traceback from the first frame outside zactor on: the worker's own frames that
    called the user's function say nothing to the user (Ray shows only theirs too)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    return tb if tb is not None else exc.__traceback__


def _substitute_cause(cause: BaseException | None) -> BaseException | None:
    if cause is None:
        return None
    cls = type(cause)
    try:
        _cp().dumps(cls)
        inst = cls.__new__(cls)
        inst.args = (str(cause),)
        return inst
    except Exception:  # noqa: BLE001
        return None
