"""The dashboard: its URL from init and `zactor status`, its process (started on the first
connection, restarted when it dies, gone with its head), its JSON and live updates, the
token off loopback, /metrics, and the page itself in a real browser (Playwright driving
Debian's chromium)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import httpx
import psutil
import pytest
from remote_helpers import wait_until

import zactor
from zactor import supervision
from zactor.job_submission import JobSubmissionClient

pytestmark = [pytest.mark.usefixtures("cluster"), pytest.mark.timeout(180)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Debian's chromium, as root, on a machine whose network is closed: no sandbox (root), no
# calls home (refused connections, many at a time, otherwise).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def _head_pid() -> int:
    return zactor._state.driver.cluster.proc.pid


def _dashboard_procs(head_pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(head_pid).children()
    except psutil.NoSuchProcess:
        return []
    return [p for p in children if "zactor.dashboard" in " ".join(p.cmdline())]


def _url() -> str:
    """The dashboard's URL as init() gives it: with the session's token."""
    return zactor._state.core.welcome["dashboard_url"]


def _base() -> str:
    return _url().split("/?")[0]


def _get(path: str, **kwargs) -> httpx.Response:
    """GET a path of the dashboard with the token, as a script or Prometheus sends it."""
    token = _url().partition("token=")[2]
    return httpx.get(_base() + path, headers={"Authorization": f"Bearer {token}"},
                     timeout=30, **kwargs)


@zactor.remote
def dashboard_probe_task(x: int) -> int:
    return x + 1


@zactor.remote
def dashboard_failing_task() -> None:
    raise ValueError("the dashboard shows this error")


@zactor.remote
class DashboardProbeActor:
    def ping(self) -> str:
        return "pong"


@zactor.remote
class Leaf:
    def ping(self) -> str:
        return "leaf"


def test_the_process_starts_on_the_first_connection_only():
    url = _url()
    assert url.startswith("http://127.0.0.1:") and len(url.partition("/?token=")[2]) == 64
    head = _head_pid()
    assert _dashboard_procs(head) == [], "nobody looked yet: there should be no process"
    r = _get("/api/snapshot")
    assert r.status_code == 200
    procs = _dashboard_procs(head)
    assert len(procs) == 1
    assert procs[0].nice() >= os.nice(0)  # it never outranks the cluster's processes


def test_init_returns_the_url_and_status_prints_it():
    ctx = zactor.init(ignore_reinit_error=True)
    assert ctx.dashboard_url == ctx["dashboard_url"] == _url()
    assert ctx.address_info["webui_url"] == _url()
    out = subprocess.run([sys.executable, "-m", "zactor_cli.main", "status", "--address",
                          zactor._state.driver.address], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"Dashboard: {_url()}" in out.stdout
    assert "A local cluster" in out.stdout and "CURVE" not in out.stdout  # it has no TCP
    assert f"{_base()}/metrics" in out.stdout  # the head node's numbers are the dashboard's


def test_the_snapshot_shows_tasks_actors_errors_and_trees():
    assert zactor.get(dashboard_probe_task.remote(1)) == 2
    with pytest.raises(ValueError):
        zactor.get(dashboard_failing_task.remote())
    actor = DashboardProbeActor.remote()
    assert zactor.get(actor.ping.remote()) == "pong"
    sup = supervision.start([supervision.ChildSpec("a", Leaf), supervision.ChildSpec("b", Leaf)],
                            name="dash-tree")
    assert zactor.get(sup.child("a").ping.remote()) == "leaf"

    def shown():
        snap = _get("/api/snapshot").json()
        names = {t["name"]: t for t in snap["tasks"]}
        return snap if "dashboard_probe_task" in names and \
            "dashboard_failing_task" in names else None

    snap = wait_until(shown, timeout=30)
    failed = next(t for t in snap["tasks"] if t["name"] == "dashboard_failing_task")
    assert failed["state"] == "FAILED" and failed["error_type"] == "TASK_EXECUTION_EXCEPTION"
    assert "ValueError: the dashboard shows this error" in failed["error_message"]
    classes = {a["class_name"] for a in snap["actors"] if a["state"] == "ALIVE"}
    assert "DashboardProbeActor" in classes
    leaves = [a for a in snap["actors"] if a["name"] in ("dash-tree/a", "dash-tree/b")]
    assert len(leaves) == 2
    assert len({a["supervisor_id"] for a in leaves}) == 1 and leaves[0]["supervisor_id"]
    node = snap["nodes"][0]
    assert node["resources_total"]["CPU"] == 2 and node["store_capacity"] > 0
    assert 0 < node["memory_available"] <= node["memory_total"] and node["load_1m"] >= 0
    assert snap["cluster"]["tasks_by_state"]["FAILED"] >= 1
    sup.stop()


def test_live_updates_arrive_as_server_sent_events():
    seen = []
    token = _url().partition("token=")[2]
    with httpx.stream("GET", _base() + "/api/events", timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: ") and event == "snapshot":
                seen.append(json.loads(line[len("data: "):])["time"])
                if len(seen) == 2:
                    break
    assert seen[1] > seen[0]  # two snapshots, one after the other


def test_every_request_needs_the_token_on_loopback_too():
    # Any user of the machine reaches a loopback port; a local cluster is its user's only.
    base, token = _base(), _url().partition("token=")[2]
    for path in ("/", "/api/snapshot", "/api/events", "/metrics", "/static/app.js"):
        assert httpx.get(base + path, timeout=30).status_code == 401, path
    wrong = httpx.get(base + "/api/snapshot", headers={"Authorization": "Bearer " + "0" * 64})
    assert wrong.status_code == 401
    assert httpx.get(base + "/metrics", auth=("prometheus", token)).status_code == 200
    with httpx.Client(timeout=30) as browser:  # ?token= once, then the cookie
        first = browser.get(_url())
        assert first.status_code == 200 and "zactor_dashboard" in first.headers["set-cookie"]
        assert "HttpOnly" in first.headers["set-cookie"]
        assert browser.get(base + "/api/snapshot").status_code == 200


def test_a_job_log_is_served():
    client = JobSubmissionClient(zactor._state.driver.address)
    job = client.submit_job(entrypoint=f"{sys.executable} -c \"print('hello from the job')\"")
    wait_until(lambda: client.get_job_status(job).is_terminal(), timeout=60)
    body = _get(f"/api/jobs/{job}/logs").json()
    assert "hello from the job" in body["text"] and body["ended"]
    assert _get("/api/jobs/nosuchjob/logs").status_code == 404


def test_metrics_parse_as_prometheus_text():
    from prometheus_client.parser import text_string_to_metric_families

    r = _get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert all(name.startswith("zactor_") for name in families), sorted(families)
    assert "RUNNING" in {s.labels["state"] for s in families["zactor_tasks"].samples}
    # what the tests above ran (a parser names a counter's family without its _total)
    assert families["zactor_tasks_finished"].samples[0].value >= 2
    assert families["zactor_tasks_failed"].samples[0].value >= 1
    workers = families["zactor_workers"].samples
    assert workers and workers[0].value >= 1
    assert families["zactor_head_messages_received"].samples[0].value > 0


def test_a_killed_dashboard_comes_back_on_the_next_connection():
    head = _head_pid()
    _get("/api/snapshot")
    (proc,) = _dashboard_procs(head)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    r = wait_until(lambda: _get_or_none("/api/snapshot"), timeout=30)
    assert r.status_code == 200
    (again,) = _dashboard_procs(head)
    assert again.pid != proc.pid


def _get_or_none(path: str):
    try:
        return _get(path)
    except httpx.HTTPError:
        return None


def test_off_loopback_every_request_needs_the_token_and_it_dies_with_its_head(tmp_path):
    from zactor.testing import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "env_vars": {"ZACTOR_DASHBOARD_HOST": "0.0.0.0",
                                    "ZACTOR_DASHBOARD_PORT": "0"}})
    try:
        env = {**os.environ,
               "ZACTOR_CLUSTER_KEY_FILE": os.path.join(cluster._state_dir, "cluster.key")}
        out = subprocess.run([sys.executable, "-m", "zactor_cli.main", "status", "--address",
                              cluster.address], capture_output=True, text=True, env=env,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith("Dashboard: "))
        url = line[len("Dashboard: "):]
        base, _, token = url.partition("/?token=")
        assert len(token) == 64, url
        assert httpx.get(base + "/api/snapshot", timeout=30).status_code == 401
        assert httpx.get(base + "/metrics", timeout=30).status_code == 401
        wrong = httpx.get(base + "/api/snapshot", headers={"Authorization": "Bearer " + "0" * 64})
        assert wrong.status_code == 401
        bearer = httpx.get(base + "/api/snapshot",
                           headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert bearer.status_code == 200 and bearer.json()["cluster"]["encrypted"]
        assert httpx.get(base + "/metrics", auth=("prometheus", token)).status_code == 200
        with httpx.Client(timeout=30) as browser:  # ?token= once, then the cookie
            assert browser.get(url).status_code == 200
            assert browser.get(base + "/api/snapshot").status_code == 200
        head = cluster.head_node.process.pid
        (dash,) = [p for p in psutil.Process(head).children(recursive=True)
                   if "zactor.dashboard" in " ".join(p.cmdline())]
        os.kill(head, signal.SIGKILL)  # the head alone: its dashboard must follow by itself
        dash.wait(20)
        assert not dash.is_running() or dash.status() == psutil.STATUS_ZOMBIE
    finally:
        if cluster.head_node is not None and cluster.head_node.process.poll() is not None:
            cluster.kill_head()
        cluster.shutdown()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (make installs Debian's as root)")
def test_the_page_in_a_real_browser(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    import numpy as np

    assert zactor.get(dashboard_probe_task.remote(41)) == 42
    with pytest.raises(ValueError):
        zactor.get(dashboard_failing_task.remote())
    held = zactor.put(np.ones(32 << 20, dtype=np.uint8))  # the store's bar shows it
    busy = DashboardProbeActor.options(num_cpus=1).remote()  # and the CPU bar this one
    assert zactor.get(busy.ping.remote()) == "pong"
    actor = DashboardProbeActor.options(name="browser-probe").remote()
    assert zactor.get(actor.ping.remote()) == "pong"
    sup = supervision.start([supervision.ChildSpec("left", Leaf),
                             supervision.ChildSpec("right", Leaf)], name="browser-tree")
    assert zactor.get(sup.child("right").ping.remote()) == "leaf"
    client = JobSubmissionClient(zactor._state.driver.address)
    job = client.submit_job(
        entrypoint=f"{sys.executable} -c \"print('log line from the browser job')\"")
    wait_until(lambda: client.get_job_status(job).is_terminal(), timeout=60)
    expect = playwright.expect
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                    headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(_url())
            expect(page.get_by_test_id("live")).to_contain_text("live", timeout=30_000)
            expect(page.get_by_test_id("nodes-table")).to_contain_text("head")
            page.get_by_test_id("tab-tasks").click()
            expect(page.get_by_test_id("tasks-table")).to_contain_text(
                "dashboard_probe_task", timeout=20_000)
            page.get_by_test_id("tab-actors").click()
            expect(page.get_by_test_id("actors-table")).to_contain_text("browser-probe")
            expect(page.get_by_test_id("actors-table")).to_contain_text("DashboardProbeActor")
            page.get_by_test_id("tab-supervision").click()
            tree = page.get_by_test_id("supervision-trees")
            expect(tree).to_contain_text("browser-tree/left")
            expect(tree).to_contain_text("browser-tree/right")
            page.get_by_test_id("tab-jobs").click()
            page.locator(f'[data-testid="jobs-table"] tr[data-key="{job}"]').click()
            expect(page.get_by_test_id("job-logs")).to_contain_text(
                "log line from the browser job", timeout=20_000)
            page.get_by_test_id("tab-overview").click()
            expect(page.get_by_test_id("card-actors")).to_be_visible()
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            keep = os.environ.get("ZACTOR_DASHBOARD_SCREENSHOT")
            if keep:  # how the README's picture is made
                shutil.copy(shot, keep)
            assert errors == [], errors
        finally:
            browser.close()
    del held, busy
