"""``tqdm``: progress bars updated from tasks and actors, drawn once, on the driver (Ray's
``ray.experimental.tqdm_ray``).

In a worker a bar draws nothing: each change of its state is printed to stdout as one JSON
line carrying ``MAGIC``. zactor forwards worker output to the driver line by line, and the
driver's printer (``zactor._client``) hands such lines to this module instead of printing them;
here a manager keeps one real ``tqdm.tqdm`` bar per remote bar, stacked so that bars of
different processes never overwrite each other. In the driver itself a bar reports to the
manager directly. Updates are sent at most every ``flush_interval_s`` seconds (and on
``close``), so a tight loop does not flood the driver.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["MAGIC", "tqdm"]

# Marks a progress-bar line in worker output; zactor._client holds the same literal.
MAGIC = "__zactor_tqdm_magic_token__"


def _in_worker() -> bool:
    import zactor

    # A task or actor call has a task id; a driver has none.
    return zactor.get_runtime_context().get_task_id() is not None


class tqdm:
    """A progress bar for tasks and actors, with a subset of ``tqdm.tqdm``'s arguments.

    Example::

        from zactor.experimental.tqdm_ray import tqdm

        @zactor.remote
        def work(n):
            for _ in tqdm(range(n), desc="work"):
                ...

        zactor.get([work.remote(100), work.remote(100)])  # two bars on the driver
    """

    def __init__(self, iterable: Iterable | None = None, desc: str | None = None,
                 total: int | None = None, unit: str | None = None,
                 position: int | None = None, flush_interval_s: float = 1.0) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        self._iterable = iterable
        self._desc = desc or ""
        self._total = total
        self._unit = unit or "it"
        self._pos = position or 0
        self._ip = _node_ip()
        self._pid = os.getpid()
        self._uuid = uuid.uuid4().hex
        self._x = 0
        self._closed = False
        self._flush_interval_s = flush_interval_s
        self._last_flush = 0.0
        self._dump_state()

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        """Change the bar's description (``tqdm.tqdm.set_description``)."""
        self._desc = desc or ""
        self._dump_state()

    def update(self, n: int = 1) -> None:
        """Advance the bar by ``n`` (``tqdm.tqdm.update``)."""
        self._x += n
        self._dump_state(throttle=True)

    def refresh(self) -> None:
        """Send the bar's state now."""
        self._dump_state()

    def close(self) -> None:
        """Finish the bar (its final state is drawn, then it goes)."""
        if self._closed:
            return
        self._closed = True
        self._dump_state()

    @property
    def n(self) -> int:
        return self._x

    @property
    def total(self) -> int | None:
        return self._total

    @total.setter
    def total(self, total: int | None) -> None:
        self._total = total

    def __iter__(self) -> Iterator:
        if self._iterable is None:
            raise ValueError("No iterable provided")
        for x in self._iterable:
            yield x
            self.update(1)
        self.close()

    def __enter__(self) -> tqdm:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _state(self) -> dict[str, Any]:
        return {"__magic_token__": MAGIC, "x": self._x, "pos": self._pos, "desc": self._desc,
                "total": self._total, "unit": self._unit, "ip": self._ip, "pid": self._pid,
                "uuid": self._uuid, "closed": self._closed}

    def _dump_state(self, throttle: bool = False) -> None:
        now = time.monotonic()
        if throttle and now - self._last_flush < self._flush_interval_s:
            return
        self._last_flush = now
        if _in_worker():
            # One write of one whole line: the forwarding stream sends complete lines.
            print(MAGIC + json.dumps(self._state()), flush=True)
        else:
            instance().process_state_update(self._state(), prefix="")


def _node_ip() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


class _Bar:
    """One remote bar, drawn by a real ``tqdm.tqdm`` at ``offset + its position``."""

    def __init__(self, state: dict[str, Any], label: str, offset: int) -> None:
        import tqdm as real_tqdm  # imported on the driver only, when a bar first shows up

        self.state = state
        self.label = label
        self.offset = offset
        # leave=False as in Ray: bars of finished work go, the live ones stay stacked.
        self.bar = real_tqdm.tqdm(desc=self._desc(state), total=state["total"],
                                  unit=state.get("unit") or "it",
                                  position=offset + state["pos"], leave=False)
        if state["x"]:
            self.bar.update(state["x"])

    def _desc(self, state: dict[str, Any]) -> str:
        return f"{self.label}{state['desc']}"

    def update(self, state: dict[str, Any]) -> None:
        if state["desc"] != self.state["desc"]:
            self.bar.set_description(self._desc(state), refresh=False)
        if state["total"] != self.state["total"]:
            self.bar.total = state["total"]
        delta = state["x"] - self.state["x"]
        if delta:
            self.bar.update(delta)
        self.state = state

    def close(self) -> None:
        # Draw the final state before the bar goes: tqdm throttles redraws, and the last
        # count would otherwise never be shown (nor reach a log).
        self.bar.refresh()
        self.bar.close()

    def move(self, offset: int) -> None:
        if offset != self.offset:
            self.offset = offset
            self.bar.clear()
            self.bar.pos = -(offset + self.state["pos"])
            self.bar.refresh()


class _BarManager:
    """The driver's bars, grouped by the process that owns them; each group gets as many
    lines as its highest position needs, below the groups that came before it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.groups: dict[tuple, dict[str, _Bar]] = {}

    def process_state_update(self, state: dict[str, Any], prefix: str) -> None:
        with self.lock:
            key = (state["ip"], state["pid"])
            group = self.groups.setdefault(key, {})
            bar = group.get(state["uuid"])
            if bar is None:
                if state["closed"]:
                    # Opened and closed between two flushes: show its final state once.
                    _Bar(state, _label(prefix), self._offset_of(key)).close()
                    self._drop_if_empty(key)
                    return
                group[state["uuid"]] = _Bar(state, _label(prefix), self._offset_of(key))
                self._restack()
            else:
                bar.update(state)
                if state["closed"]:
                    bar.close()
                    del group[state["uuid"]]
                    self._drop_if_empty(key)
                    self._restack()

    def _offset_of(self, key: tuple) -> int:
        offset = 0
        for other, bars in self.groups.items():
            if other == key:
                break
            offset += _slots(bars)
        return offset

    def _drop_if_empty(self, key: tuple) -> None:
        if not self.groups.get(key):
            self.groups.pop(key, None)

    def _restack(self) -> None:
        offset = 0
        for bars in self.groups.values():
            for bar in bars.values():
                bar.move(offset)
            offset += _slots(bars)


def _slots(bars: dict[str, _Bar]) -> int:
    return 1 + max(b.state["pos"] for b in bars.values()) if bars else 0


def _label(prefix: str) -> str:
    return f"{prefix} " if prefix else ""


_manager: _BarManager | None = None
_manager_lock = threading.Lock()


def instance() -> _BarManager:
    """This process's bar manager (made on first use)."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = _BarManager()
        return _manager


def _take_progress_lines(prefix: str, text: str) -> str:
    """Called by the driver's printer with forwarded worker output that holds ``MAGIC``:
    draws the progress-bar lines and returns the other lines, to be printed as usual."""
    rest = []
    for line in text.splitlines():
        start = line.find(MAGIC)
        if start < 0:
            rest.append(line)
            continue
        if line[:start].strip():  # text printed without a newline just before the bar's
            rest.append(line[:start])
        try:
            state = json.loads(line[start + len(MAGIC):])
            instance().process_state_update(state, prefix)
        except Exception:  # noqa: BLE001 - a garbled line is printed, not lost
            log.debug("could not draw a progress bar line", exc_info=True)
            rest.append(line)
    return "\n".join(rest)
