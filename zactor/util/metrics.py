"""User metrics, at Ray's path and with Ray's API: ``Counter``, ``Gauge``, ``Histogram``.

Record them anywhere — the driver, a task, an actor — and they show on the cluster's
Prometheus endpoints (the dashboard's ``/metrics``) as ``zactor_<name>``, their tags as
labels (Ray exports them as ``ray_<name>``)::

    from zactor.util.metrics import Counter, Gauge, Histogram

    requests = Counter("num_requests", description="Requests served.",
                       tag_keys=("route",))
    requests.set_default_tags({"route": "/"})
    requests.inc()                                   # zactor_num_requests_total{route="/"}
    Gauge("queue_depth").set(12)                     # zactor_queue_depth
    Histogram("latency_s", boundaries=[0.01, 0.1, 1]).observe(0.05)

Each process adds up what it records and a daemon thread sends it to the head every
``ZACTOR_METRICS_REPORT_INTERVAL_S`` (2 s): counters and histograms as what changed since
the last report, gauges as their last value, as plain msgpack lists (the head unpickles
nothing). A driver's ``shutdown()`` and a worker's clean exit send what is left; a process
that is killed loses at most its last interval. The head adds the reports up in a bounded
table (``ZACTOR_METRICS_SERIES_MAX`` series, see ``zactor.head.metrics``).

Validation and its messages are Ray's: an empty name raises ``ValueError``; a name that is
not a Prometheus name warns and the metric is discarded; ``tag_keys`` must be a tuple of
``str``; every tag key must get a value (from the call's tags or the default tags) and
tags the metric does not declare are refused; counters take only positive increments; a
histogram needs positive boundaries (here also increasing, as Prometheus needs).
"""

from __future__ import annotations

import bisect
import logging
import os
import re
import threading
import warnings
from typing import Any

from zactor import _state, config

log = logging.getLogger(__name__)

__all__ = ["Counter", "Gauge", "Histogram"]

# Prometheus's rule for metric names (prometheus_client's validation; Ray's too).
_VALID_METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


class Metric:
    """The parent of ``Counter``, ``Gauge`` and ``Histogram`` (Ray's ``Metric``)."""

    _kind = ""

    def __init__(self, name: str, description: str = "",
                 tag_keys: tuple[str, ...] | None = None) -> None:
        if len(name) == 0:
            raise ValueError("Empty name is not allowed. Please provide a metric name.")
        self._discard_metric = not _VALID_METRIC_NAME_RE.match(name)
        if self._discard_metric:
            warnings.warn(
                f"Invalid metric name: {name}. Metric will be discarded and data will not be "
                "collected or published. Metric names can only contain letters, numbers, _, "
                "and :. Metric names cannot start with numbers.", UserWarning, stacklevel=3)
        self._name = name
        self._description = description
        self._default_tags: dict[str, str] = {}
        self._tag_keys = tag_keys or ()
        if not isinstance(self._tag_keys, tuple):
            raise TypeError(f"tag_keys should be a tuple type, got: {type(self._tag_keys)}")
        for key in self._tag_keys:
            if not isinstance(key, str):
                raise TypeError(f"Tag keys must be str, got {type(key)}.")
        self._sorted_keys = tuple(sorted(set(self._tag_keys)))
        self._boundaries: list[float] | None = None

    def set_default_tags(self, default_tags: dict[str, str]) -> Metric:
        """Set the tags every record uses unless it gives its own; returns the metric.

        Example::

            counter = Counter("hits", tag_keys=("route",)).set_default_tags({"route": "/"})
        """
        for key, val in default_tags.items():
            if key not in self._tag_keys:
                raise ValueError(f"Unrecognized tag key {key}.")
            if not isinstance(val, str):
                raise TypeError(f"Tag values must be str, got {type(val)}.")
        self._default_tags = default_tags
        return self

    @property
    def info(self) -> dict[str, Any]:
        """The metric's name, description, tag keys and default tags."""
        return {"name": self._name, "description": self._description,
                "tag_keys": self._tag_keys, "default_tags": self._default_tags}

    def _series(self, tags: dict[str, str] | None) -> tuple:
        """The series a record goes to: its tag values, in the order of the sorted keys."""
        if tags:
            for val in tags.values():
                if not isinstance(val, str):
                    raise TypeError(f"Tag values must be str, got {type(val)}.")
            final = {**self._default_tags, **tags}
        else:
            final = self._default_tags
        missing = [key for key in self._tag_keys if key not in final]
        if missing:
            raise ValueError(f"Missing value for tag key(s): {','.join(missing)}.")
        if tags and len(final) > len(self._sorted_keys):
            unknown = [key for key in tags if key not in self._tag_keys]
            if unknown:
                raise ValueError(f"Unrecognized tag keys: {unknown}.")
        return tuple(final[key] for key in self._sorted_keys)

    def __reduce__(self):
        # Rebuilt where it is unpickled (a task's closure): same name, same tags, no state.
        return _rebuild, (type(self), self._name, self._description, self._tag_keys,
                          self._boundaries, dict(self._default_tags))


def _rebuild(cls, name, description, tag_keys, boundaries, default_tags):
    if cls is Histogram:
        metric = Histogram(name, description, boundaries, tag_keys)
    else:
        metric = cls(name, description, tag_keys)
    return metric.set_default_tags(default_tags) if default_tags else metric


class Counter(Metric):
    """A total that only goes up (Prometheus's counter, exported as ``zactor_<name>_total``).

    Example::

        done = Counter("jobs_done", tag_keys=("kind",))
        done.inc(tags={"kind": "resize"})
        done.inc(2.0, tags={"kind": "crop"})
    """

    _kind = "counter"

    def inc(self, value: int | float = 1.0, tags: dict[str, str] | None = None) -> None:
        """Add ``value`` (default 1, must be > 0); ``tags`` override the default tags."""
        if not isinstance(value, (int, float)):
            raise TypeError(f"value must be int or float, got {type(value)}.")
        if value <= 0:
            raise ValueError(f"value must be >0, got {value}")
        if self._discard_metric:
            return
        series = self._series(tags)
        _recorder.add(self, series, float(value))


class Gauge(Metric):
    """A value that goes up and down: the last one set is kept.

    Example::

        depth = Gauge("queue_depth", description="Items waiting.")
        depth.set(len(queue))
    """

    _kind = "gauge"

    def set(self, value: int | float | None, tags: dict[str, str] | None = None) -> None:
        """Set the gauge to ``value`` (None: do nothing); ``tags`` override the defaults."""
        if value is None:
            return
        if not isinstance(value, (int, float)):
            raise TypeError(f"value must be int or float, got {type(value)}.")
        if self._discard_metric:
            return
        series = self._series(tags)
        _recorder.set(self, series, float(value))


class Histogram(Metric):
    """Counts of observed values in buckets, their sum and count (Prometheus's histogram).

    Example::

        latency = Histogram("latency_s", boundaries=[0.01, 0.1, 1.0])
        latency.observe(0.042)   # counted in the buckets le=0.1, le=1.0 and le=+Inf
    """

    _kind = "histogram"

    def __init__(self, name: str, description: str = "", boundaries: list[float] | None = None,
                 tag_keys: tuple[str, ...] | None = None) -> None:
        super().__init__(name, description, tag_keys)
        if boundaries is None or len(boundaries) == 0:
            raise ValueError("boundaries argument should be provided when using the "
                             'Histogram class. e.g., Histogram("name", boundaries=[1.0, 2.0])')
        for i, boundary in enumerate(boundaries):
            if boundary <= 0:
                raise ValueError(f"Invalid `boundaries` argument at index {i}, {boundaries}. "
                                 "Use positive values for the arguments.")
        for i in range(1, len(boundaries)):
            if boundaries[i] <= boundaries[i - 1]:
                raise ValueError(f"Invalid `boundaries` argument at index {i}, {boundaries}. "
                                 "Use strictly increasing values for the arguments.")
        self.boundaries = boundaries
        self._boundaries = [float(b) for b in boundaries]

    def observe(self, value: int | float, tags: dict[str, str] | None = None) -> None:
        """Count ``value`` in its bucket; ``tags`` override the default tags."""
        if not isinstance(value, (int, float)):
            raise TypeError(f"value must be int or float, got {type(value)}.")
        if self._discard_metric:
            return
        series = self._series(tags)
        _recorder.observe(self, series, float(value))

    @property
    def info(self) -> dict[str, Any]:
        """The metric's name, description, tag keys, default tags and boundaries."""
        info = super().info
        info["boundaries"] = self.boundaries
        return info


# -- this process's aggregates and their reports ---------------------------------------------


class _Recorder:
    """What this process recorded since its last report, by metric and series; a daemon
    thread sends it to the head (started by the first record)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.flush_lock = threading.Lock()
        # (kind, name, boundaries tuple) -> [description, tag keys (sorted), {series: value}]
        self.pending: dict[tuple, list] = {}
        self.thread: threading.Thread | None = None
        self.wake = threading.Event()

    def _values(self, metric: Metric) -> dict:
        b = metric._boundaries
        key = (metric._kind, metric._name, tuple(b) if b is not None else None)
        entry = self.pending.get(key)
        if entry is None:
            entry = self.pending[key] = [metric._description, metric._sorted_keys, {}]
        return entry[2]

    def add(self, metric: Metric, series: tuple, value: float) -> None:
        with self.lock:
            values = self._values(metric)
            values[series] = values.get(series, 0.0) + value
        if self.thread is None:
            self._start()

    def set(self, metric: Metric, series: tuple, value: float) -> None:
        with self.lock:
            self._values(metric)[series] = value
        if self.thread is None:
            self._start()

    def observe(self, metric: Metric, series: tuple, value: float) -> None:
        bounds = metric._boundaries
        with self.lock:
            values = self._values(metric)
            hist = values.get(series)
            if hist is None:
                hist = values[series] = [[0] * (len(bounds) + 1), 0.0, 0]
            hist[0][bisect.bisect_left(bounds, value)] += 1  # Prometheus's le: value <= bound
            hist[1] += value
            hist[2] += 1
        if self.thread is None:
            self._start()

    def _start(self) -> None:
        with self.lock:
            if self.thread is not None:
                return
            self.thread = threading.Thread(target=self._loop, name="zactor-metrics",
                                           daemon=True)
            self.thread.start()

    def _loop(self) -> None:
        while True:
            self.wake.wait(config.METRICS_REPORT_INTERVAL_S)
            self.wake.clear()
            core = _state.core  # never init(): a process without a cluster keeps its values
            if core is not None and self.pending:
                self.flush(core)

    def flush(self, core, wait: bool = False) -> bool:
        """Send what was recorded since the last report through ``core`` (a CoreClient);
        kept for the next try if it cannot be sent. ``wait``: until the head has it (for a
        process about to exit without a GOODBYE behind it). Returns whether anything went."""
        with self.flush_lock:
            with self.lock:
                pending, self.pending = self.pending, {}
            if not pending:
                return False
            records = []
            for (kind, name, bounds), (description, keys, values) in pending.items():
                series = [[[[k, v] for k, v in zip(keys, tags, strict=True)],
                           value if kind != "histogram" else [list(value[0]), value[1],
                                                                value[2]]]
                          for tags, value in values.items()]
                records.append([kind, name, description, list(bounds) if bounds else None,
                                series])
            try:
                if wait:
                    core.request("metrics_report", records, timeout=5.0)
                else:
                    core.tell("metrics_report", records)
            except Exception as exc:  # noqa: BLE001 - the connection is closing or gone
                log.debug("could not report metrics: %s", exc)
                self._merge_back(pending)
                return False
            return True

    def _merge_back(self, pending: dict) -> None:
        with self.lock:
            for key, (description, keys, values) in pending.items():
                entry = self.pending.get(key)
                if entry is None:
                    self.pending[key] = [description, keys, values]
                    continue
                newer = entry[2]
                for series, value in values.items():
                    if series not in newer:
                        newer[series] = value
                    elif key[0] == "counter":
                        newer[series] += value
                    elif key[0] == "histogram":
                        mine = newer[series]
                        for i, n in enumerate(value[0]):
                            mine[0][i] += n
                        mine[1] += value[1]
                        mine[2] += value[2]
                    # a gauge: the newer value stays

    def after_fork(self) -> None:
        """A forked child starts empty, without the parent's thread."""
        self.lock = threading.Lock()
        self.flush_lock = threading.Lock()
        self.pending = {}
        self.thread = None
        self.wake = threading.Event()


_recorder = _Recorder()
os.register_at_fork(after_in_child=_recorder.after_fork)


def _flush(core, wait: bool = False) -> None:
    """Send this process's last metrics through ``core`` before it closes (zactor.shutdown,
    a worker's exit), after a report the reporter thread may be sending. ``wait``: until
    the head has them, for a process that exits without a GOODBYE (the head may learn of
    its death before it reads its last messages). Cheap when nothing was recorded."""
    _recorder.flush(core, wait)
