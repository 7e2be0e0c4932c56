"""A node's log directory: what its workers wrote, and reading it back for ``zactor logs``.

Each worker appends its stdout and stderr, line by line, to ``<logs_dir>/worker-<pid>.log``
(zactor.worker.output.WorkerLog), rotated at ``WORKER_LOG_MAX_BYTES`` with one backup
(``worker-<pid>.log.1``). Marker lines, written only into the file, say whose output follows,
so that one task's or one actor's lines can be cut out of its worker's file afterwards
(zactor.util.state.get_log)::

    :actor_name:Counter 5f3a...     the worker became this actor (written once, eagerly)
    :task_name:square 9c41...       the lines below are this task's (written lazily, before
                                    its first line: a task that prints nothing costs nothing)
    :task_name:                     the lines below belong to no task

The node answers three operations (:func:`handle`), for the head itself on its own machine
and for a node daemon (zactor.node.daemon) on the others: ``list`` (the files, their sizes),
``read`` (a byte range, or the last lines, at most ``LOG_READ_MAX_BYTES`` per answer), and
nothing else. A file name is one name inside the log directory: never a path.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from typing import Any

from zactor import config

ACTOR_MARK = ":actor_name:"
TASK_MARK = ":task_name:"
#: Bytes read at a time when looking backwards for the last lines of a file.
_TAIL_BLOCK = 64 * 1024


def worker_file(pid: int) -> str:
    """The name of a worker's log file in its node's log directory."""
    return f"worker-{int(pid)}.log"


def actor_marker(class_name: str, actor_id: bytes) -> str:
    return f"{ACTOR_MARK}{class_name} {actor_id.hex()}"


def task_marker(name: str | None, task_id: bytes | None) -> str:
    """The marker line before a task's output (``task_id`` None: output of no task)."""
    if task_id is None:
        return TASK_MARK
    return f"{TASK_MARK}{name} {task_id.hex()}"


def parse_marker(line: str) -> tuple[str, str | None] | None:
    """``("actor", id)`` or ``("task", id or None)`` for a marker line; None for any other."""
    if not line.startswith(":"):
        return None
    if line.startswith(TASK_MARK):
        rest = line[len(TASK_MARK):]
        return "task", rest.rsplit(" ", 1)[1] if " " in rest else None
    if line.startswith(ACTOR_MARK):
        rest = line[len(ACTOR_MARK):]
        return "actor", rest.rsplit(" ", 1)[1] if " " in rest else None
    return None


def check_name(filename: Any) -> str:
    """``filename`` if it names a file directly inside a log directory; ValueError if it
    is anything else (a path, ``..``, empty), so that no request reads outside it."""
    if not isinstance(filename, str) or not filename or filename in (".", "..") or \
            "/" in filename or "\\" in filename or "\0" in filename or ".." in filename:
        raise ValueError(f"{filename!r} is not the name of a log file (a name in the log "
                         "directory, with no path separator and no '..')")
    return filename


class LogDir:
    """The log directory of one node."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(path, mode=0o700, exist_ok=True)

    def handle(self, op: Any, args: Any) -> Any:
        """Answer one operation; ValueError for a bad one (or a file that is not there)."""
        if op == "list":
            return self.list(args[0] if isinstance(args, list) and args else None)
        if op == "read":
            if not isinstance(args, list) or len(args) != 4:
                raise ValueError("read: expected [filename, offset, length, tail lines]")
            return self.read(*args)
        raise ValueError(f"unknown log operation {op!r}")

    def list(self, glob: str | None = None) -> list[dict]:
        """The files, sorted by name: ``{"filename", "size", "mtime"}``; only those whose
        name matches ``glob`` if one is given."""
        out = []
        try:
            entries = list(os.scandir(self.path))
        except FileNotFoundError:
            return out
        for entry in entries:
            if glob and not fnmatch.fnmatchcase(entry.name, glob):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # rotated away meanwhile
            if stat.S_ISREG(st.st_mode):
                out.append({"filename": entry.name, "size": st.st_size, "mtime": st.st_mtime})
        out.sort(key=lambda row: row["filename"])
        return out

    def read(self, filename: Any, offset: Any, length: Any, tail: Any) -> dict:
        """Bytes of a file: ``{"data", "offset" (where they start), "size" (of the file),
        "inode"}`` (a new inode: the file was rotated since the last read).

        ``tail`` >= 0 (``offset`` None): the file's last ``tail`` lines. Else the bytes from
        ``offset`` (past the end: none; the reader sees the file was rotated). Never more
        than ``LOG_READ_MAX_BYTES`` (or ``length``, if smaller) in one answer."""
        name = check_name(filename)
        cap = config.LOG_READ_MAX_BYTES
        if isinstance(length, int) and length > 0:
            cap = min(cap, length)
        try:
            # O_NOFOLLOW: a link placed in the directory does not lead out of it either.
            fd = os.open(os.path.join(self.path, name), os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise ValueError(f"no log file {name!r} on this node") from None
        except OSError as exc:
            raise ValueError(f"cannot read log file {name!r}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ValueError(f"{name!r} is not a log file")
            size = st.st_size
            if offset is None and isinstance(tail, int) and tail >= 0:
                start = _tail_start(fd, size, tail, cap)
            else:
                start = max(0, int(offset or 0))
            data = os.pread(fd, min(cap, size - start), start) if start < size else b""
            return {"data": data, "offset": start, "size": size, "inode": st.st_ino}
        finally:
            os.close(fd)


def _tail_start(fd: int, size: int, lines: int, cap: int) -> int:
    """Where the last ``lines`` lines of the file begin, no further back than ``cap`` bytes
    (then at the first line that starts within them)."""
    if lines == 0 or size == 0:
        return size
    floor = max(0, size - cap)
    end = size
    # A last line without its newline counts as a line too.
    wanted = lines + 1 if os.pread(fd, 1, size - 1) == b"\n" else lines
    while end > floor:
        begin = max(floor, end - _TAIL_BLOCK)
        block = os.pread(fd, end - begin, begin)
        at = len(block)
        while True:
            at = block.rfind(b"\n", 0, at)
            if at < 0:
                break
            wanted -= 1
            if wanted == 0:
                return begin + at + 1
        end = begin
    if floor == 0:
        return 0
    # Capped: start at a line's beginning, not in the middle of one.
    first = os.pread(fd, min(cap, _TAIL_BLOCK), floor).find(b"\n")
    return floor + first + 1 if first >= 0 else floor
