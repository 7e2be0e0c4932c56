"""The head's control state on disk: an append-only log in its state directory, so that a
head killed and started again with the same state directory finds its actors again — named
and detached ones included, with their supervisors — without an external store (Ray needs
Redis for this).

What is kept is what cannot be asked of anyone else after a restart:

- each actor's creation (its spec, constructor arguments, class and owner), and its end;
- the node each actor last ran on, and which node was the head's own (actors there died with
  the old head and are restarted at once rather than waited for).

Everything else comes back by itself: node agents and workers reconnect and introduce
themselves again (a worker says which actor it hosts), drivers say which actors they hold.
Objects are not kept: a value the old head held is gone, and its readers get a named error.

Records are msgpack lists, one after another in ``control.log``; each append is one write()
to the file (the page cache keeps it through a SIGKILL of the head; a machine crash can lose
the last few). Every ``COMPACT_EVERY`` appends the log is rewritten as a snapshot of what
is live (to a temporary file, then renamed over the log).
"""

from __future__ import annotations

import logging
import os

import msgpack

log = logging.getLogger(__name__)

LOG_FILE = "control.log"
COMPACT_EVERY = 2000


class ControlLog:
    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, LOG_FILE)
        self.records: list[list] = self._read()
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.appended = 0
        self._pack = msgpack.Packer(use_bin_type=True).pack

    def _read(self) -> list[list]:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        out = []
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        unpacker.feed(data)
        try:
            for record in unpacker:
                if isinstance(record, list) and record:
                    out.append(record)
        except Exception as exc:  # noqa: BLE001 - a torn last record: keep what came before
            log.warning("the control log %s ends in a damaged record (%s); ignoring it",
                        self.path, exc)
        return out

    def append(self, *record) -> None:
        os.write(self.fd, self._pack(list(record)))
        self.appended += 1

    def due(self) -> bool:
        return self.appended >= COMPACT_EVERY

    def compact(self, snapshot: list[list]) -> None:
        """Replace the log by ``snapshot`` (what is live now)."""
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"".join(self._pack(r) for r in snapshot))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND, 0o600)
        self.appended = 0

    def close(self) -> None:
        os.close(self.fd)
