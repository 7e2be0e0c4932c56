"""Worker stdout/stderr: each complete line goes to the driver, prefixed like Ray's
``(task_name pid=123)``, through the head."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable


class ForwardedStream(io.TextIOBase):
    def __init__(self, stream: str, prefix: Callable[[], str], send: Callable) -> None:
        self._stream = stream
        self._prefix = prefix
        self._send = send
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
        self._send(self._stream, self._prefix(), complete)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            rest, self._buf = self._buf, ""
        if rest:
            self._send(self._stream, self._prefix(), rest)
