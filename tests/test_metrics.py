"""Prometheus metrics: the head's snapshot (the ``"metrics"`` request) rendered by
``zactor._metrics_export`` and read back with Prometheus's own text parser; user metrics
(``zactor.util.metrics``, Ray's API and validation) recorded in a task, an actor and the
driver; the head's cap on user series; and a real ``zactor head`` + ``zactor worker`` over
TCP whose node serves its own numbers on its metrics port, behind the cluster's token."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
import sys
import uuid
import warnings

import numpy as np
import pytest
from remote_helpers import block_until, touch, wait_until

import zactor
from zactor import _metrics_export, _session, config
from zactor.comm import security
from zactor.comm.transport import listen_tcp
from zactor.exceptions import ActorDiedError
from zactor.head.metrics import UserMetrics
from zactor.util.metrics import Counter, Gauge, Histogram

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

pytestmark = [pytest.mark.usefixtures("cluster"), pytest.mark.timeout(90)]
STORE = 64 * 1024 * 1024
CLUSTER_KWARGS = {"num_cpus": 2, "object_store_memory": STORE}
SERIES_MAX = 300
REPORT_S = 0.3
ZACTOR = os.path.join(os.path.dirname(sys.executable), "zactor")


@pytest.fixture(scope="module", autouse=True)
def small_cap_and_fast_reports():
    """This module's head keeps SERIES_MAX user series, and its processes report every
    REPORT_S (set before the cluster starts: the head and its workers read them at start;
    the driver's reporter reads its interval at each round)."""
    names = ("ZACTOR_METRICS_SERIES_MAX", "ZACTOR_METRICS_REPORT_INTERVAL_S")
    old = {n: os.environ.get(n) for n in names}
    os.environ.update(ZACTOR_METRICS_SERIES_MAX=str(SERIES_MAX),
                      ZACTOR_METRICS_REPORT_INTERVAL_S=str(REPORT_S))
    interval, config.METRICS_REPORT_INTERVAL_S = config.METRICS_REPORT_INTERVAL_S, REPORT_S
    yield
    config.METRICS_REPORT_INTERVAL_S = interval
    for name, value in old.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def scrape() -> dict:
    """The head's metrics as Prometheus text, parsed back: {sample name: {labels: value}}."""
    core = zactor._state.core
    text = prometheus_client.generate_latest(
        _metrics_export.registry(lambda: core.request("metrics"))).decode()
    return parse(text)


def parse(text: str) -> dict:
    out: dict = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = \
                sample.value
    return out


def one(samples: dict, name: str, **labels) -> float:
    return samples[name][tuple(sorted(labels.items()))]


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


# -- the cluster's own numbers ---------------------------------------------------------------


@zactor.remote
def metrics_square(x):
    return x * x


@zactor.remote(max_retries=0)
def metrics_fails(text):
    raise ValueError(text)


@zactor.remote
class MetricsHolder:
    def ping(self):
        return os.getpid()


def test_tasks_actors_store_and_workers_in_the_head_snapshot(tmp_path):
    before = scrape()
    assert zactor.get([metrics_square.remote(i) for i in range(4)]) == [0, 1, 4, 9]
    failing = [metrics_fails.remote("boom") for _ in range(2)]
    for ref in failing:
        with pytest.raises(ValueError):
            zactor.get(ref)
    holders = [MetricsHolder.remote() for _ in range(3)]
    zactor.get([h.ping.remote() for h in holders])
    zactor.kill(holders[0])
    wait_until(lambda: one(scrape(), "zactor_actors", state="DEAD") >= 1,
               message="the killed actor counted DEAD")
    after = scrape()

    def delta(name):
        return one(after, name) - one(before, name)

    # 4 tasks, 3 actor creations and 3 calls ended well; the 2 failing tasks failed
    assert delta("zactor_tasks_failed_total") == 2
    assert delta("zactor_tasks_finished_total") == 4 + 3 + 3
    assert one(after, "zactor_actors", state="ALIVE") == 2
    assert one(after, "zactor_actors", state="PENDING_CREATION") == 0
    assert delta("zactor_head_messages_received_total") > 10
    assert delta("zactor_head_messages_sent_total") > 10
    assert one(after, "zactor_dropped_messages_total") == 0
    assert one(after, "zactor_clients", kind="driver") == 1

    # a task that runs, as RUNNING, and one queued behind it for lack of CPUs
    gate, started = str(tmp_path / "gate"), str(tmp_path / "started")
    blockers = [block_until.remote(gate, i, started=started if i == 0 else None)
                for i in range(2)]
    queued = metrics_square.remote(7)
    wait_until(lambda: one(scrape(), "zactor_tasks", state="RUNNING") >= 1
               and os.path.exists(started), message="a RUNNING task")
    samples = wait_until(lambda: (s := scrape()) and one(
        s, "zactor_tasks", state="PENDING_NODE_ASSIGNMENT") >= 1 and s,
        message="a task queued while both CPUs are taken")
    assert one(samples, "zactor_scheduler_queue_length") >= 1
    touch(gate)
    assert zactor.get(blockers) == [0, 1] and zactor.get(queued) == 49
    for h in holders[1:]:
        zactor.kill(h)

    # the store of the head's node: a large put, then spills once it is full
    (node_id,) = [dict(k)["node_id"] for k, v in after["zactor_node_alive"].items() if v == 1]
    assert one(after, "zactor_workers", node_id=node_id) >= 2
    assert one(after, "zactor_object_store_capacity_bytes", node_id=node_id) == STORE
    used = one(after, "zactor_object_store_used_bytes", node_id=node_id)
    big = zactor.put(np.ones(20 * 1024 * 1024, dtype=np.uint8))
    samples = scrape()
    assert one(samples, "zactor_object_store_used_bytes", node_id=node_id) >= \
        used + 20 * 1024 * 1024
    more = [zactor.put(np.full(20 * 1024 * 1024, i, dtype=np.uint8)) for i in range(3)]
    samples = wait_until(lambda: (s := scrape()) and one(
        s, "zactor_object_spills_total", node_id=node_id) >= 1 and s,
        message="an object spilled")
    assert one(samples, "zactor_object_spilled_bytes_total", node_id=node_id) >= \
        20 * 1024 * 1024
    assert one(samples, "zactor_object_store_disk_bytes", node_id=node_id) >= 20 * 1024 * 1024
    assert one(samples, "zactor_object_store_objects", node_id=node_id, location="disk") >= 1
    assert int(zactor.get(more[0])[0]) == 0 and int(zactor.get(big)[-1]) == 1
    del big, more


# -- user metrics (zactor.util.metrics) ------------------------------------------------------


@zactor.remote
def count_in_task(name, route, times):
    from zactor.util.metrics import Counter

    requests = Counter(name, description="Requests by route.", tag_keys=("route",))
    for _ in range(times):
        requests.inc(tags={"route": route})
    return os.getpid()


@zactor.remote
class Thermometer:
    def __init__(self, name):
        from zactor.util.metrics import Gauge

        self.gauge = Gauge(name, description="Degrees.", tag_keys=("room",))
        self.gauge.set_default_tags({"room": "lab"})

    def read(self, value):
        self.gauge.set(value)
        return value

    def set_and_exit(self, value):
        self.gauge.set(value, tags={"room": "hall"})
        zactor.actor.exit_actor()


def test_user_metrics_from_a_task_an_actor_and_the_driver():
    counter, gauge, hist = unique("requests"), unique("degrees"), unique("latency_s")
    zactor.get([count_in_task.remote(counter, "/a", 3), count_in_task.remote(counter, "/a", 2),
                count_in_task.remote(counter, "/b", 1)])
    thermo = Thermometer.remote(gauge)
    for value in (10.0, 25.5, 21.0):
        zactor.get(thermo.read.remote(value))
    latency = Histogram(hist, description="Latency.", boundaries=[0.1, 1.0, 10.0],
                        tag_keys=("kind",))
    for value in (0.05, 0.1, 0.5, 3.0, 30.0):
        latency.observe(value, tags={"kind": "read"})

    def arrived():
        s = scrape()
        return s if (f"zactor_{counter}_total" in s and f"zactor_{gauge}" in s and
                     s.get(f"zactor_{hist}_count", {}).get((("kind", "read"),)) == 5 and
                     sum(s[f"zactor_{counter}_total"].values()) == 6 and
                     s[f"zactor_{gauge}"].get((("room", "lab"),)) == 21.0) else None

    s = wait_until(arrived, timeout=30, message="the user metrics at the head")
    assert one(s, f"zactor_{counter}_total", route="/a") == 5
    assert one(s, f"zactor_{counter}_total", route="/b") == 1
    assert one(s, f"zactor_{gauge}", room="lab") == 21.0  # the last value set
    buckets = {dict(k)["le"]: v for k, v in s[f"zactor_{hist}_bucket"].items()}
    assert buckets == {"0.1": 2, "1.0": 3, "10.0": 4, "+Inf": 5}  # cumulative, le: <= bound
    assert one(s, f"zactor_{hist}_sum", kind="read") == pytest.approx(33.65)

    # what an actor records just before it exits reaches the head (flushed at its exit)
    with pytest.raises(ActorDiedError):  # the call that ends it, as in Ray
        zactor.get(thermo.set_and_exit.remote(-4.0))
    s = wait_until(lambda: (s := scrape()) and (("room", "hall"),) in s.get(
        f"zactor_{gauge}", {}) and s, timeout=30, message="the value set before exit_actor")
    assert one(s, f"zactor_{gauge}", room="hall") == -4.0


def test_rays_validation_and_messages():
    with pytest.raises(ValueError, match="^Empty name is not allowed. Please provide a "
                       "metric name.$"):
        Counter("")
    with pytest.raises(TypeError, match="tag_keys should be a tuple type, got: <class 'list'>"):
        Counter("m", tag_keys=["a"])
    with pytest.raises(TypeError, match="Tag keys must be str, got <class 'int'>."):
        Gauge("m", tag_keys=(1,))
    c = Counter("validation_counter", description="d", tag_keys=("a", "b"))
    assert c.set_default_tags({"a": "1"}) is c
    assert c.info == {"name": "validation_counter", "description": "d",
                      "tag_keys": ("a", "b"), "default_tags": {"a": "1"}}
    with pytest.raises(ValueError, match="^value must be >0, got 0$"):
        c.inc(0, tags={"b": "2"})
    with pytest.raises(ValueError, match="^value must be >0, got -1$"):
        c.inc(-1, tags={"b": "2"})
    with pytest.raises(TypeError, match="value must be int or float, got <class 'str'>."):
        c.inc("1")
    with pytest.raises(ValueError, match=r"^Missing value for tag key\(s\): b.$"):
        c.inc()
    with pytest.raises(ValueError, match=r"^Missing value for tag key\(s\): a,b.$"):
        Counter("m", tag_keys=("a", "b")).inc()
    with pytest.raises(ValueError, match=r"^Unrecognized tag keys: \['z'\].$"):
        c.inc(tags={"b": "2", "z": "3"})
    with pytest.raises(ValueError, match="^Unrecognized tag key z.$"):
        c.set_default_tags({"z": "1"})
    with pytest.raises(TypeError, match="Tag values must be str, got <class 'int'>."):
        c.set_default_tags({"a": 1})
    with pytest.raises(TypeError, match="Tag values must be str, got <class 'int'>."):
        c.inc(tags={"b": 2})
    g = Gauge("validation_gauge")
    g.set(None)  # a no-op, as in Ray
    with pytest.raises(TypeError, match="value must be int or float"):
        g.set("3")
    with pytest.raises(ValueError, match=r"^boundaries argument should be provided when "
                       r"using the Histogram class. e.g., Histogram\(\"name\", "):
        Histogram("h")
    with pytest.raises(ValueError, match=r"^Invalid `boundaries` argument at index 0, "
                       r"\[0, 1\]. Use positive values for the arguments.$"):
        Histogram("h", boundaries=[0, 1])
    with pytest.raises(ValueError, match=r"at index 1, \[2, 1\]. Use strictly increasing"):
        Histogram("h", boundaries=[2, 1])
    h = Histogram("validation_hist", boundaries=[1, 2])
    assert h.info["boundaries"] == [1, 2]
    with pytest.raises(TypeError, match="value must be int or float"):
        h.observe(None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bad = Counter("1-not a name")
    assert "Invalid metric name: 1-not a name. Metric will be discarded" in \
        str(caught[0].message) and caught[0].category is UserWarning
    bad.inc()  # discarded: nothing recorded, nothing raised


def test_metrics_pickle_into_tasks_with_their_default_tags():
    name = unique("pickled")
    counter = Counter(name, tag_keys=("who",)).set_default_tags({"who": "task"})

    @zactor.remote
    def bump(c, n):
        for _ in range(n):
            c.inc()
        return c.info["default_tags"]

    assert zactor.get(bump.remote(counter, 4)) == {"who": "task"}
    wait_until(lambda: scrape().get(f"zactor_{name}_total", {}).get((("who", "task"),)) == 4,
               timeout=30, message="the counter incremented in the task")


def test_the_exporter_names_labels_and_skips_what_prometheus_cannot_take():
    rows = [["counter", "ray_style", "", None, [[[["ray.key", "x"]], 2.0]]],
            ["gauge", "tasks", "would shadow zactor_tasks", None, [[[], 1.0]]],
            ["histogram", "h_le", "", [1.0], [[[["le", "v"]], [[1, 2], 4.0, 3]]]],
            ["gauge", "clash", "", None, [[[["a.b", "1"], ["a_b", "2"]], 1.0]]]]
    text = prometheus_client.generate_latest(_metrics_export.registry(
        lambda: {**_empty_snapshot(), "user_metrics": rows})).decode()
    s = parse(text)
    assert one(s, "zactor_ray_style_total", ray_key="x") == 2.0  # Ray's ray.key: ray_key
    assert "zactor_tasks" not in s  # zactor's own family (empty here), not the user's gauge
    assert one(s, "zactor_h_le_bucket", tag_le="v", le="1.0") == 1
    assert one(s, "zactor_h_le_bucket", tag_le="v", le="+Inf") == 3
    assert "zactor_clash" not in s  # two tag keys, one label name: left out


def _empty_snapshot() -> dict:
    return {"tasks": {}, "actors": {}, "nodes": [], "clients": {}, "user_metrics": []}


def test_the_head_table_is_bounded_and_warns_once(caplog):
    table = UserMetrics(max_series=3)
    with caplog.at_level(logging.WARNING, logger="zactor.head.metrics"):
        for i in range(5):
            table.report([["counter", "c", "", None, [[[["i", str(i)]], 1.0]]]])
        table.report([["counter", "c", "", None, [[[["i", "0"]], 2.0]]]])  # known: added
        table.report([["gauge", "c", "", None, [[[], 1.0]]]])  # another kind: rejected
        table.report([["counter", "c", "", None, [[[], -1.0]]]])  # negative: rejected
        table.report("not a list")
    assert table.series == 3 and table.dropped_series == 2 and table.rejected == 3
    assert [r for r in caplog.records if "user metric series at most" in r.getMessage()] \
        and len([r for r in caplog.records if r.name == "zactor.head.metrics"]) == 2
    (row,) = table.rows()
    assert dict((tuple(t[0]) if t else (), v) for t, v in row[4]) == {
        ("i", "0"): 3.0, ("i", "1"): 1.0, ("i", "2"): 1.0}


def test_the_cluster_caps_user_series():
    """Last in this module: it fills the head's table (SERIES_MAX series)."""
    name = unique("many")
    wide = Gauge(name, tag_keys=("i",))
    for i in range(SERIES_MAX + 50):
        wide.set(i, tags={"i": str(i)})
    s = wait_until(lambda: (s := scrape()) and one(
        s, "zactor_metrics_series_dropped_total") >= 50 and s, timeout=30,
        message="series past the cap dropped")
    assert one(s, "zactor_metrics_series") == SERIES_MAX
    assert one(s, "zactor_metrics_series_max") == SERIES_MAX
    assert SERIES_MAX - 50 <= len(s[f"zactor_{name}"]) <= SERIES_MAX


# -- a node agent's metrics port, over TCP ---------------------------------------------------


def _outward_ip() -> str | None:
    """An address of this machine other than loopback (a UDP connect picks the route;
    nothing is sent), or None."""
    try:
        ip = _session.local_ip_towards("tcp://192.0.2.1:9")
    except OSError:
        return None
    return None if not ip or ip.startswith("127.") else ip




def _zactor(env, *args) -> str:
    out = subprocess.run([ZACTOR, *args], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


HEAD_SNAPSHOT = """
import json, sys
from zactor import _registry
from zactor._client import CoreClient
address, creds = _registry.resolve(sys.argv[1])
client = CoreClient(address, "observer", connect_timeout=10.0, creds=creds)
try:
    print(json.dumps(client.request("metrics")))
finally:
    client.close(goodbye=(False,))
"""


DRIVER_RECORDS_AND_LEAVES = """
import sys, zactor
from zactor.util.metrics import Counter
zactor.init(address=sys.argv[1])
Counter("from_a_driver", tag_keys=("k",)).inc(7, tags={"k": "v"})
zactor.shutdown()  # before any report of its thread: shutdown sends it
"""


@pytest.mark.timeout(180)
def test_a_worker_node_serves_its_numbers_behind_the_cluster_token(cli_env):
    import httpx

    port = cli_env["ZACTOR_PORT"]
    address = f"tcp://127.0.0.1:{port}"
    _zactor(cli_env, "head", "--daemon", "--num-cpus", "1")
    ip = _outward_ip()
    extra = ["--node-ip-address", ip] if ip else []
    _zactor(cli_env, "worker", "--address", address, "--num-cpus", "1", "--daemon", *extra)

    def worker_row():
        report = json.loads(_zactor(cli_env, "status", "--json"))
        rows = [n for n in report["nodes"] if not n["is_head"] and n["alive"]]
        return rows[0] if rows and rows[0]["workers"] >= 1 else None

    try:
        row = wait_until(worker_row, timeout=60, message="the worker node and its worker")
    except AssertionError:
        logs = os.path.join(cli_env["ZACTOR_SOCKET_ROOT"], f"zactor-{os.getuid()}",
                            "registry", "logs")
        for name in os.listdir(logs) if os.path.isdir(logs) else ():
            with open(os.path.join(logs, name), errors="replace") as f:
                print(f"--- {name}\n{f.read()[-4000:]}")
        raise
    status = _zactor(cli_env, "status")
    report = json.loads(_zactor(cli_env, "status", "--json"))
    (head_row,) = [n for n in report["nodes"] if n["is_head"]]
    # the head node's numbers are on the dashboard's /metrics, the worker node's on its own
    urls = re.findall(r"http://\S+/metrics", status)
    url = row["metrics_address"]
    assert url in urls and url != head_row["metrics_address"]
    if head_row["metrics_address"]:
        assert head_row["metrics_address"] in urls
    key = security.read_key_file(os.path.join(cli_env["HOME"], ".zactor", f"head-{port}",
                                              "cluster.key"))
    token = security.http_token(key)
    # the cluster's token, or 401 (on loopback too: any user of the machine reaches it)
    assert "(token)" in status
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, timeout=10, headers={
        "Authorization": "Bearer " + "0" * len(token)}).status_code == 401
    assert httpx.get(url, timeout=10, auth=("any", "wrong")).status_code == 401
    assert httpx.get(url, timeout=10, auth=("prometheus", token)).status_code == 200
    reply = httpx.get(url, timeout=10, headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200
    s = parse(reply.text)
    labels = {"node_id": row["node_id"], "ip": row["ip"]}
    assert one(s, "zactor_node_workers", **labels) >= 1
    assert one(s, "zactor_node_object_store_capacity_bytes", **labels) > 0
    assert one(s, "zactor_node_heartbeats_sent_total", **labels) >= 1
    assert one(s, "zactor_node_connected", **labels) == 1
    assert one(s, "zactor_node_uptime_seconds", **labels) > 0

    # a driver of this cluster that records and shuts down at once
    out = subprocess.run([sys.executable, "-c", DRIVER_RECORDS_AND_LEAVES, address],
                         env={**cli_env, "ZACTOR_METRICS_REPORT_INTERVAL_S": "600"},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr

    # the head's side of the same node, over the cluster's encrypted connection
    out = subprocess.run([sys.executable, "-c", HEAD_SNAPSHOT, address], env=cli_env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    snap = json.loads(out.stdout)
    h = parse(prometheus_client.generate_latest(
        _metrics_export.registry(lambda: snap)).decode())
    assert one(h, "zactor_node_heartbeats_total", node_id=row["node_id"]) >= 1
    assert one(h, "zactor_node_heartbeat_age_seconds", node_id=row["node_id"]) < \
        config.NODE_TIMEOUT_S
    assert one(h, "zactor_node_alive", node_id=row["node_id"], ip=row["ip"],
               is_head="false") == 1
    assert one(h, "zactor_workers", node_id=row["node_id"]) >= 1
    assert one(h, "zactor_from_a_driver_total", k="v") == 7


def test_the_token_check_of_the_wsgi_wrapper():
    """The check itself, at unit level (the cluster test above reaches it over HTTP)."""
    creds = security.Credentials.generate()
    token = security.http_token(creds)
    assert token == security.http_token(creds) and len(token) == 64
    assert token != security.http_token(security.Credentials.generate())
    assert creds.client_secret.decode() not in token
    with pytest.raises(ValueError):
        security.http_token(security.INSECURE)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    guarded = _metrics_export.guarded(app, token)

    def status_of(header: str | None) -> str:
        seen = []
        environ = {} if header is None else {"HTTP_AUTHORIZATION": header}
        guarded(environ, lambda status, headers: seen.append(status))
        return seen[0]

    basic = base64.b64encode(f"anyone:{token}".encode()).decode()
    assert status_of(None).startswith("401")
    assert status_of("Bearer nope").startswith("401")
    assert status_of("Basic !!!").startswith("401")
    assert status_of("Token " + token).startswith("401")
    assert status_of(f"Bearer {token}") == "200 OK"
    assert status_of(f"bearer {token}") == "200 OK"
    assert status_of(f"Basic {basic}") == "200 OK"
    assert _metrics_export.guarded(app, None) is app  # --insecure: no check


def test_without_prometheus_client_a_node_has_no_metrics_port_and_status_says_why(
        monkeypatch):
    from zactor_cli.cluster import _metrics_cell

    from zactor.node import daemon

    cfg = {"ip": "127.0.0.1", "node_id": "00" * 14, "metrics_port": 0}
    monkeypatch.setattr(_metrics_export, "available", lambda: False)
    metrics = daemon._metrics_port(cfg, security.INSECURE)
    assert metrics["address"] == "" and "server" not in metrics
    assert "prometheus_client is not installed" in metrics["note"]
    assert "prometheus_client is not installed" in _metrics_cell(
        {"metrics_address": "", "metrics_note": metrics["note"]})
    assert "off" in daemon._metrics_port({**cfg, "metrics_port": -1}, security.INSECURE)["note"]
    assert _metrics_cell({"metrics_address": "http://10.0.0.1:9/metrics",
                          "metrics_note": "the cluster's token"}) == \
        "http://10.0.0.1:9/metrics (token)"


def test_a_metrics_server_starts_on_its_first_scrape_and_closes():
    import httpx

    snap = {"node_id": "ab" * 14, "ip": "127.0.0.1", "workers": 3}
    idle = _metrics_export.MetricsServer(listen_tcp("127.0.0.1", 0),
                                         lambda: _metrics_export.node_registry(lambda: snap),
                                         None)
    idle.close()  # never scraped: nothing was built
    idle.thread.join(timeout=5)
    assert not idle.thread.is_alive()
    token = "t" * 64
    server = _metrics_export.MetricsServer(listen_tcp("127.0.0.1", 0),
                                           lambda: _metrics_export.node_registry(lambda: snap),
                                           token)
    try:
        assert httpx.get(server.url, timeout=10).status_code == 401
        reply = httpx.get(server.url, timeout=10, auth=("x", token))
        assert reply.status_code == 200
        assert one(parse(reply.text), "zactor_node_workers", node_id="ab" * 14,
                   ip="127.0.0.1") == 3
    finally:
        server.close()
    server.thread.join(timeout=5)
    assert not server.thread.is_alive()
