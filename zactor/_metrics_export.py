"""Prometheus text for the cluster's numbers: the head's snapshot (``zactor.head.metrics``,
the ``"metrics"`` request) and a node agent's own numbers (``zactor.node.daemon``).

``registry(fetch)`` is a ``prometheus_client`` registry whose one collector calls ``fetch()``
for a fresh snapshot at every scrape and yields metric families named ``zactor_*``; users'
metrics (``zactor.util.metrics``) come with them, as ``zactor_<name>`` with their tags as
labels (Ray exports its users' metrics as ``ray_<name>``). ``serve(...)`` runs such a
registry on an HTTP port of its own, in a thread, asking for the cluster's token when it is
given one (``zactor.comm.security.http_token``).

``prometheus_client`` is the ``dashboard`` extra, not a core dependency: it is imported only
when a registry is built, and :func:`available` says whether it can be.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "zactor_"
_LABEL_RE = re.compile(r"[^a-zA-Z0-9_]")


def available() -> bool:
    """Whether prometheus_client can be imported here (the ``dashboard`` extra)."""
    return importlib.util.find_spec("prometheus_client") is not None


# -- the head's snapshot ---------------------------------------------------------------------

#: The head's families: (name, kind, help, snapshot key). Per-node ones are listed apart.
_HEAD_SCALARS = (
    ("zactor_tasks_finished_total", "counter",
     "Tasks, actor calls and actor creations that ended successfully since the head started.",
     "tasks_finished_total"),
    ("zactor_tasks_failed_total", "counter",
     "Tasks, actor calls and actor creations that ended in an error since the head started.",
     "tasks_failed_total"),
    ("zactor_scheduler_queue_length", "gauge",
     "Tasks queued in the head's scheduler for resources or a worker.",
     "scheduler_queue_length"),
    ("zactor_objects", "gauge", "Objects in the head's object directory.", "objects"),
    ("zactor_head_messages_received_total", "counter",
     "Messages the head received from drivers, workers and nodes.", "messages_received_total"),
    ("zactor_head_messages_sent_total", "counter",
     "Messages the head sent to drivers, workers and nodes.", "messages_sent_total"),
    ("zactor_dropped_messages_total", "counter",
     "Messages the head dropped: malformed, oversized, from an unknown peer, or whose "
     "handler failed.", "dropped_messages_total"),
    ("zactor_refused_connections_total", "counter",
     "TCP connections the head refused for lacking the cluster's key.",
     "refused_connections_total"),
    ("zactor_refused_versions_total", "counter",
     "Peers the head refused for another zactor, protocol or Python version.",
     "refused_versions_total"),
    ("zactor_head_uptime_seconds", "gauge", "Seconds since the head started.", "uptime_s"),
    ("zactor_metrics_series", "gauge",
     "User metric series (zactor.util.metrics) the head keeps.", "user_series"),
    ("zactor_metrics_series_max", "gauge",
     "User metric series the head keeps at most (ZACTOR_METRICS_SERIES_MAX).",
     "user_series_max"),
    ("zactor_metrics_series_dropped_total", "counter",
     "Records of user metric series dropped because the head's table was full.",
     "user_series_dropped_total"),
    ("zactor_metrics_records_rejected_total", "counter",
     "User metric records the head rejected as malformed or disagreeing with their metric.",
     "user_records_rejected_total"),
)

#: Per alive node: (name, kind, help, row key).
_NODE_SERIES = (
    ("zactor_object_store_used_bytes", "gauge",
     "Bytes of the node's shared-memory object store in use.", "store_used_bytes"),
    ("zactor_object_store_capacity_bytes", "gauge",
     "Bytes of the node's shared-memory object store (object_store_memory).",
     "store_capacity_bytes"),
    ("zactor_object_store_disk_bytes", "gauge",
     "Bytes of the node's objects now on disk (spilled, or too large for the store).",
     "bytes_on_disk"),
    ("zactor_object_spills_total", "counter",
     "Objects the node's store spilled to disk.", "spilled_objects_total"),
    ("zactor_object_spilled_bytes_total", "counter",
     "Bytes the node's store spilled to disk.", "spilled_bytes_total"),
    ("zactor_workers", "gauge", "Worker processes of the node known to the head.", "workers"),
)

#: The names zactor's own families take: a user metric of the same name is left out.
SYSTEM_NAMES = frozenset(
    [n for n, *_ in _HEAD_SCALARS] + [n for n, *_ in _NODE_SERIES] + [
        "zactor_tasks", "zactor_actors", "zactor_node_alive", "zactor_object_store_objects",
        "zactor_node_heartbeats_total", "zactor_node_heartbeat_age_seconds", "zactor_clients"])


def _family(kind: str, name: str, doc: str, labels: list[str] | None = None):
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
    return cls(name, doc, labels=labels)


def head_families(snap: dict) -> Iterator:
    """The Prometheus families of a head snapshot (``zactor.head.metrics.snapshot``)."""
    tasks = _family("gauge", "zactor_tasks", "Tasks and actor calls not finished yet, by "
                    "state (the state API's names).", ["state"])
    for state, n in sorted(snap["tasks"].items()):
        tasks.add_metric([state], n)
    yield tasks
    actors = _family("gauge", "zactor_actors", "Actors by state, as zactor list actors shows "
                     "them (dead ones while the head keeps them).", ["state"])
    for state, n in sorted(snap["actors"].items()):
        actors.add_metric([state], n)
    yield actors
    for name, kind, doc, key in _HEAD_SCALARS:
        family = _family(kind, name, doc)
        family.add_metric([], snap.get(key, 0))
        yield family
    clients = _family("gauge", "zactor_clients", "Processes connected to the head, by kind "
                      "(driver, worker, observer).", ["kind"])
    for kind, n in sorted(snap["clients"].items()):
        clients.add_metric([kind], n)
    yield clients
    alive = _family("gauge", "zactor_node_alive", "1 for each alive node, 0 for a dead or "
                    "removed one; its ip and whether it is the head's.",
                    ["node_id", "ip", "is_head"])
    for row in snap["nodes"]:
        alive.add_metric([row["node_id"], row["ip"], "true" if row["is_head"] else "false"],
                         1 if row["alive"] else 0)
    yield alive
    live = [row for row in snap["nodes"] if row["alive"]]
    for name, kind, doc, key in _NODE_SERIES:
        family = _family(kind, name, doc, ["node_id"])
        for row in live:
            family.add_metric([row["node_id"]], row[key])
        yield family
    objects = _family("gauge", "zactor_object_store_objects", "Objects the node's store "
                      "holds, in shared memory or on disk.", ["node_id", "location"])
    for row in live:
        objects.add_metric([row["node_id"], "memory"], row["objects_in_memory"])
        objects.add_metric([row["node_id"], "disk"], row["objects_on_disk"])
    yield objects
    beats = _family("counter", "zactor_node_heartbeats_total", "Heartbeats the head received "
                    "from the node's agent (nodes other than the head's).", ["node_id"])
    age = _family("gauge", "zactor_node_heartbeat_age_seconds", "Seconds since the head last "
                  "heard the node's heartbeat (nodes other than the head's).", ["node_id"])
    for row in live:
        if "heartbeats_total" in row:
            beats.add_metric([row["node_id"]], row["heartbeats_total"])
            age.add_metric([row["node_id"]], row["heartbeat_age_s"])
    yield beats
    yield age
    yield from user_families(snap.get("user_metrics") or [])


_warned: set[str] = set()


def _warn_once(key: str, text: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning("%s", text)


def label_name(key: str) -> str:
    """A tag key as a Prometheus label name: characters outside [a-zA-Z0-9_] become ``_``
    (Ray's ``ray.key`` is ``ray_key``); one that starts with a digit or ``__`` (reserved), or
    is ``le`` (histograms' own), gets ``tag_`` in front."""
    name = _LABEL_RE.sub("_", key) or "_"
    if name[0].isdigit() or name.startswith("__") or name == "le":
        name = "tag_" + name
    return name


def user_families(rows: list) -> Iterator:
    """Families of the user metrics the head keeps (``UserMetrics.rows``)."""
    from prometheus_client.core import HistogramMetricFamily
    from prometheus_client.utils import floatToGoString

    for kind, name, description, boundaries, series in rows:
        full = PREFIX + name
        if kind == "counter" and full.endswith("_total"):
            full = full[:-len("_total")]
        if full in SYSTEM_NAMES or full + "_total" in SYSTEM_NAMES:
            _warn_once(full, f"the user metric {name!r} has the name of one of zactor's own "
                       f"({full}): it is not exported")
            continue
        keys = sorted({k for tags, _ in series for k, _v in tags})
        labels = [label_name(k) for k in keys]
        if len(set(labels)) != len(labels):
            _warn_once(full, f"the tag keys of the user metric {name!r} collide as label "
                       f"names ({', '.join(keys)}): it is not exported")
            continue
        doc = description or name
        if kind == "histogram":
            family = HistogramMetricFamily(full, doc, labels=labels)
        else:
            family = _family(kind, full, doc, labels)
        for tags, value in series:
            given = dict(tags)
            values = [given.get(k, "") for k in keys]
            if kind == "histogram":
                counts, total, _count = value
                buckets, running = [], 0
                for bound, n in zip(boundaries, counts, strict=False):
                    running += n
                    buckets.append((floatToGoString(bound), running))
                buckets.append(("+Inf", running + counts[-1]))
                family.add_metric(values, buckets, total)
            else:
                family.add_metric(values, value)
        yield family


class _Collector:
    """A custom collector: ``collect()`` calls ``fetch()`` and yields ``families(snapshot)``."""

    def __init__(self, fetch: Callable[[], dict], families: Callable[[dict], Iterator]) -> None:
        self.fetch = fetch
        self.families = families

    def collect(self) -> Iterator:
        yield from self.families(self.fetch())

    def describe(self) -> list:
        return []  # not known before a scrape: the registry must not collect at register


def registry(fetch: Callable[[], dict]):
    """A ``prometheus_client.CollectorRegistry`` of the cluster's metrics, fetched at each
    scrape: ``fetch()`` returns a head snapshot, e.g. ``lambda:
    zactor._state.core.request("metrics")``.

    Example::

        from prometheus_client import generate_latest
        text = generate_latest(registry(lambda: core.request("metrics")))
    """
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(fetch, head_families))
    return reg


# -- a node agent's own numbers --------------------------------------------------------------

_NODE_OWN = (
    ("zactor_node_object_store_used_bytes", "gauge",
     "Bytes of this node's shared-memory object store in use.", "store_used_bytes"),
    ("zactor_node_object_store_capacity_bytes", "gauge",
     "Bytes of this node's shared-memory object store.", "store_capacity_bytes"),
    ("zactor_node_object_store_disk_bytes", "gauge",
     "Bytes of this node's objects now on disk.", "bytes_on_disk"),
    ("zactor_node_object_spills_total", "counter",
     "Objects this node's store spilled to disk.", "spilled_objects_total"),
    ("zactor_node_object_spilled_bytes_total", "counter",
     "Bytes this node's store spilled to disk.", "spilled_bytes_total"),
    ("zactor_node_workers", "gauge", "Worker processes this node's agent runs.", "workers"),
    ("zactor_node_heartbeats_sent_total", "counter",
     "Heartbeats this node's agent sent to the head.", "heartbeats_sent_total"),
    ("zactor_node_uptime_seconds", "gauge",
     "Seconds since this node's agent started.", "uptime_s"),
    ("zactor_node_transfer_served_bytes_total", "counter",
     "Bytes of objects other nodes pulled from this node.", "served_bytes_total"),
    ("zactor_node_transfer_pulled_bytes_total", "counter",
     "Bytes of objects this node pulled from others.", "pulled_bytes_total"),
    ("zactor_node_connected", "gauge",
     "1 while the head has welcomed this node, else 0.", "connected"),
)


def node_families(snap: dict) -> Iterator:
    """The families of a node agent's own snapshot (``zactor.node.daemon``)."""
    labels = [snap["node_id"], snap["ip"]]
    for name, kind, doc, key in _NODE_OWN:
        family = _family(kind, name, doc, ["node_id", "ip"])
        family.add_metric(labels, snap.get(key, 0))
        yield family


def node_registry(fetch: Callable[[], dict]):
    """A registry of a node agent's own numbers, ``fetch()`` giving its snapshot."""
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(fetch, node_families))
    return reg


# -- serving over HTTP -----------------------------------------------------------------------


def authorized(environ: dict, token: str) -> bool:
    """Whether a WSGI request carries ``token`` (zactor.comm.security.carries_token)."""
    from zactor.comm.security import carries_token

    return carries_token(environ.get("HTTP_AUTHORIZATION", ""), token)


def guarded(app: Callable, token: str | None) -> Callable:
    """The WSGI ``app``, answering 401 to requests without ``token`` (None: no check)."""
    if token is None:
        return app

    def guard(environ: dict, start_response: Callable):
        if authorized(environ, token):
            return app(environ, start_response)
        start_response("401 Unauthorized", [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("WWW-Authenticate", 'Basic realm="zactor", charset="UTF-8"')])
        return [b"401: this endpoint needs the cluster's token (Authorization: Bearer "
                b"<token>; see zactor.comm.security.http_token)\n"]

    return guard


class MetricsServer:
    """Serves a registry's text at every path of an already listening socket, in a daemon
    thread (the stdlib's WSGI server, a thread per request, as prometheus_client's own
    ``start_wsgi_server``). The thread waits for the first connection before it imports
    prometheus_client and builds the server: a port nobody scrapes costs nothing."""

    def __init__(self, sock: socket.socket, make_registry: Callable[[], Any],
                 token: str | None) -> None:
        self.sock = sock
        host, port = sock.getsockname()[:2]
        self.host, self.port = host, port
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/metrics"
        self._make_registry = make_registry
        self._token = token
        self._server = None
        self._stopped = False
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, name="zactor-metrics",
                                       daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import select

        try:
            while not select.select([self.sock], [], [], 0.5)[0]:
                if self._stopped:
                    return
            if self._stopped:
                return
            server = self._build()
        except Exception:  # noqa: BLE001 - metrics must never take the node down
            if not self._stopped:  # (closed while it waited: nothing to say)
                log.exception("the metrics port %s could not start", self.url)
            return
        with self._lock:
            if self._stopped:
                server.server_close()
                return
            self._server = server
        server.serve_forever(poll_interval=0.25)

    def _build(self):
        import socketserver
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

        from prometheus_client import make_wsgi_app

        class Quiet(WSGIRequestHandler):
            def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
                pass

        class Server(socketserver.ThreadingMixIn, WSGIServer):
            daemon_threads = True
            address_family = self.sock.family

        server = Server((self.host, self.port), Quiet, bind_and_activate=False)
        server.socket.close()
        server.socket = self.sock
        server.server_address = self.sock.getsockname()
        server.server_name, server.server_port = self.host, self.port
        server.setup_environ()
        server.set_app(guarded(make_wsgi_app(self._make_registry()), self._token))
        return server

    def close(self) -> None:
        with self._lock:
            self._stopped = True
            server = self._server
        if server is not None:
            server.shutdown()
            server.server_close()
        else:
            self.sock.close()
