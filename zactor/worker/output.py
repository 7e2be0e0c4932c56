"""Worker stdout/stderr: each complete line goes to the driver, prefixed like Ray's
``(task_name pid=123)``, through the head, and into the worker's own log file on its node
(:class:`WorkerLog`, read back by ``zactor logs``)."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from typing import Any

from zactor.node.logs import actor_marker, task_marker

#: Set while a thread forwards a line: output made on the way (a log record of the send path,
#: a handler's error) must not be forwarded again, or it would recurse without end.
_forwarding = threading.local()


class WorkerLog:
    """The worker's own file, ``<logs dir>/worker-<pid>.log``: every complete line of both
    streams, in order, rotated at ``max_bytes`` with one backup (``.1``), as logging's
    RotatingFileHandler does, so that a worker never holds more than about twice that on
    disk.

    Marker lines (zactor.node.logs) go only into the file: the actor's once, when the worker
    becomes one; a task's just before that task's first line, so that a task that prints
    nothing writes nothing at all (the hot path stays as it was)."""

    def __init__(self, path: str, max_bytes: int, context: Any) -> None:
        self.path = path
        # Rotation is a link and a rename, done here (_rollover). logging.handlers'
        # RotatingFileHandler would do it, but importing it (with socket, pickle, queue)
        # costs every worker about 12 ms and 2 MB of its own memory after the fork, and its
        # emit() several times the cost of the print itself (a LogRecord, two formats, two
        # stats per line).
        self.file = open(path, "ab")  # noqa: SIM115 - kept open for the worker's life
        self.lock = threading.Lock()
        self.max_bytes = max_bytes
        self.size = self.file.tell()  # appending: a worker's file after an exec
        # A chunk written at once stays below half the cap (longer ones go line by line, each
        # cut to it): a file is never past its cap.
        self.limit = max(64, max_bytes // 2)
        self.context = context  # the TaskContext: which task the writing thread runs
        self.marked: bytes | None = None  # the task whose marker was written last
        self.marked_line: str | None = None  # ... and that marker
        self.actor_line: str | None = None

    def _rollover(self) -> None:
        """The file becomes ``.1`` (replacing the older one) and a new one starts. The name
        never goes missing in between (a reader following it would take the file for
        gone): the full file gets its second name by a link, then the new one takes the
        first name in one rename."""
        path = self.path
        try:
            os.link(path, path + ".1.tmp")
            os.replace(path + ".1.tmp", path + ".1")
            new = open(path + ".new", "ab")  # noqa: SIM115
            os.replace(path + ".new", path)
        except OSError:  # no hard links here: a moment without the file, then
            self.file.close()
            os.replace(path, path + ".1")
            new = open(path, "ab")  # noqa: SIM115
        self.file.close()
        self.file = new
        self.size = 0

    def _emit(self, text: str) -> None:
        data = (text + "\n").encode("utf-8", "replace")
        try:
            if self.size and self.size + len(data) >= self.max_bytes:
                self._rollover()
                # A new file says whose output it goes on with (the actor's, the task's
                # whose lines come next), so that it can be cut on its own once the older
                # one is gone.
                header = "".join(line + "\n" for line in (self.actor_line, self.marked_line)
                                 if line is not None).encode()
                if header:
                    self.file.write(header)
                    self.size = len(header)
            self.file.write(data)
            self.file.flush()  # readable at once by zactor logs, and nothing lost at os._exit
            self.size += len(data)
        except (OSError, ValueError):
            # A file that cannot be written (a full disk, a failed reopen) costs the file,
            # not the output: the lines still reach the driver.
            pass

    def _emit_bounded(self, text: str) -> None:
        limit = self.limit
        if len(text) <= limit:
            self._emit(text)
            return
        for line in text.split("\n"):
            if len(line) > limit:
                line = f"{line[:limit]} [... {len(line) - limit} more characters not kept]"
            self._emit(line)

    def write(self, text: str) -> None:
        """Complete lines (without the last newline), after the marker of the task the
        calling thread runs if the last lines written were another's."""
        ctx = self.context
        task_id = ctx.task_id
        with self.lock:
            if task_id != self.marked:
                self.marked_line = task_marker(ctx.name, task_id)
                self._emit(self.marked_line)
                self.marked = task_id
            self._emit_bounded(text)

    def mark_actor(self, class_name: str, actor_id: bytes) -> None:
        """The worker became this actor: everything below in the file is the actor's."""
        with self.lock:
            self.actor_line = actor_marker(class_name, actor_id)
            self._emit(self.actor_line)

    def close(self) -> None:
        self.file.close()


class ForwardedStream(io.TextIOBase):
    def __init__(self, stream: str, prefix: Callable[[], str], send: Callable,
                 record: Callable[[str], None] | None = None) -> None:
        self._stream = stream
        self._prefix = prefix
        self._send = send
        self._record = record  # WorkerLog.write, when the worker keeps a file
        self._buf = ""
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        with self._lock:
            self._buf += text
            if "\n" not in self._buf:
                return len(text)
            complete, _, self._buf = self._buf.rpartition("\n")
        self._emit(complete)
        return len(text)

    def _emit(self, text: str) -> None:
        if getattr(_forwarding, "busy", False):
            try:  # straight to the process's own stderr: never round again
                os.write(2, (text + "\n").encode("utf-8", "replace"))
            except OSError:
                pass
            return
        _forwarding.busy = True
        try:
            if self._record is not None:
                self._record(text)
            self._send(self._stream, self._prefix(), text)
        finally:
            _forwarding.busy = False

    def flush(self) -> None:
        with self._lock:
            rest, self._buf = self._buf, ""
        if rest:
            self._emit(rest)
