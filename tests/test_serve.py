"""zactor.serve on a real cluster, over real HTTP on 127.0.0.1: JSON in and out, composition,
FastAPI routes, batching, a replica killed under load, a redeploy under load, user_config,
health checks, back-pressure, autoscaling up and down, two applications and a delete, access
logs, and a deploy that fails."""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from collections import Counter

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from remote_helpers import free_port, wait_until

import zactor
from zactor import serve
from zactor.serve.exceptions import RayServeException

CLUSTER_KWARGS = {"num_cpus": 4}
pytestmark = [pytest.mark.usefixtures("cluster"), pytest.mark.timeout(120)]
_wait = functools.partial(wait_until, timeout=30.0)


@pytest.fixture(scope="module")
def base(cluster, tmp_path_factory):
    logs = tmp_path_factory.mktemp("serve-logs")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port},
                logging_config={"logs_dir": str(logs)})
    try:
        yield {"url": f"http://127.0.0.1:{port}", "logs": logs}
    finally:
        serve.shutdown()


@pytest.fixture
def http(base):
    with httpx.Client(base_url=base["url"], timeout=30) as client:
        yield client


class _Load:
    """Clients sending requests in a loop (each with its own connection) until stopped;
    counts answers by status and body."""

    def __init__(self, url: str, clients: int = 4, path: str = "/") -> None:
        self.url, self.path = url, path
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok: Counter = Counter()
        self.failed: list[str] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    r = client.get(self.path)
                    with self.lock:
                        if r.status_code == 200:
                            self.ok[r.text] += 1
                        else:
                            self.failed.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.failed.append(repr(exc))

    def __enter__(self) -> _Load:
        for t in self.threads:
            t.start()
        _wait(lambda: sum(self.ok.values()) + len(self.failed) >= 10, message="load to start")
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def total(self) -> int:
        with self.lock:
            return sum(self.ok.values()) + len(self.failed)


# --- requests and responses --------------------------------------------------------------------


@serve.deployment
class JsonEcho:
    async def __call__(self, request):
        body = await request.json()
        return {"got": body, "path": request.url.path, "query": dict(request.query_params),
                "method": request.method}


@serve.deployment
def text(request):
    from starlette.responses import Response

    if request.query_params.get("raw"):
        return Response(b"teapot", status_code=418, headers={"x-kind": "raw"})
    return "plain text"


def test_json_in_and_out_over_http(http):
    serve.run(JsonEcho.bind(), name="json", route_prefix="/json")
    serve.run(text.bind(), name="text", route_prefix="/text")
    r = http.post("/json/sub/path?k=v", json={"x": [1, 2.5, "s"]})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {"got": {"x": [1, 2.5, "s"]}, "path": "/json/sub/path",
                        "query": {"k": "v"}, "method": "POST"}
    r = http.get("/text")
    assert (r.status_code, r.text) == (200, "plain text")
    assert r.headers["content-type"].startswith("text/plain")
    r = http.get("/text", params={"raw": 1})
    assert (r.status_code, r.content, r.headers["x-kind"]) == (418, b"teapot", "raw")
    r = http.get("/jsonx")  # a prefix matches whole path segments only
    assert r.status_code == 404
    assert http.get("/-/routes").json() == {"/json": "json", "/text": "text"}
    serve.delete("json")
    serve.delete("text")


def test_a_handle_calls_methods_and_raises_the_deployments_error():
    @serve.deployment
    class Calc:
        def add(self, a, b):
            return a + b

        async def boom(self):
            raise ValueError("no such thing")

    handle = serve.run(Calc.bind(), name="calc", route_prefix=None)
    assert handle.add.remote(2, 3).result(timeout_s=30) == 5
    assert handle.options(method_name="add").remote(a=1, b=1).result() == 2
    with pytest.raises(ValueError, match="no such thing"):
        handle.boom.remote().result()
    assert serve.get_app_handle("calc").add.remote(1, 2).result() == 3
    with pytest.raises(RayServeException):
        serve.get_app_handle("no-such-app")
    serve.delete("calc")


# --- composition ------------------------------------------------------------------------------


@serve.deployment
class Adder:
    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, x):
        return x + self.n


@serve.deployment
class Typed:
    def __call__(self, x):
        # a response passed in arrives resolved: the value, not a response or a ref
        return {"type": type(x).__name__, "value": x}


@serve.deployment
class Pipeline:
    def __init__(self, first, second) -> None:
        self.first = first
        self.second = second

    async def __call__(self, request):
        x = int(request.query_params["x"])
        return await self.second.remote(self.first.remote(x))


def test_composition_resolves_responses_in_the_callee(http):
    handle = serve.run(Pipeline.bind(Adder.bind(10), Typed.bind()), name="pipe",
                       route_prefix="/pipe")
    assert http.get("/pipe", params={"x": 5}).json() == {"type": "int", "value": 15}
    assert handle.remote is not None
    adder = serve.get_deployment_handle("Adder", "pipe")
    typed = serve.get_deployment_handle("Typed", "pipe")
    out = typed.remote(adder.remote(adder.remote(1))).result(timeout_s=30)
    assert out == {"type": "int", "value": 21}
    st = serve.status().applications["pipe"]
    assert set(st.deployments) == {"Pipeline", "Adder", "Typed"}
    serve.delete("pipe")


# --- FastAPI ----------------------------------------------------------------------------------


class Item(BaseModel):  # at module level: FastAPI resolves the annotations by name
    name: str
    price: float


def test_fastapi_ingress_routes_and_404s(http):
    app = FastAPI()

    @serve.deployment
    @serve.ingress(app)
    class Shop:
        def __init__(self, tax: float) -> None:
            self.tax = tax

        @app.get("/items/{item_id}")
        def get_item(self, item_id: int, q: str = "none"):
            return {"item_id": item_id, "q": q}

        @app.post("/price")
        async def price(self, item: Item):
            return {"name": item.name, "total": round(item.price * (1 + self.tax), 2)}

    serve.run(Shop.bind(0.5), name="shop", route_prefix="/shop")
    assert http.get("/shop/items/7", params={"q": "x"}).json() == {"item_id": 7, "q": "x"}
    assert http.post("/shop/price", json={"name": "pen", "price": 2.0}).json() == \
        {"name": "pen", "total": 3.0}
    r = http.post("/shop/price", json={"name": "pen"})  # validation by FastAPI
    assert r.status_code == 422
    r = http.get("/shop/nothing-here")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
    assert http.get("/not-an-app").status_code == 404
    serve.delete("shop")


# --- batching ---------------------------------------------------------------------------------


def test_batching_groups_concurrent_calls():
    @serve.deployment(max_ongoing_requests=32)
    class Model:
        @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.05)
        async def __call__(self, xs: list[int]) -> list[tuple[int, int]]:
            return [(x * 2, len(xs)) for x in xs]

    handle = serve.run(Model.bind(), name="batch", route_prefix=None)
    responses = [handle.remote(i) for i in range(32)]
    results = [r.result(timeout_s=30) for r in responses]
    assert [v for v, _ in results] == [2 * i for i in range(32)]
    sizes = [n for _, n in results]
    assert max(sizes) > 1 and max(sizes) <= 8, sizes
    serve.delete("batch")


# --- faults -----------------------------------------------------------------------------------


@serve.deployment(num_replicas=2)
class Pid:
    def __call__(self, request):
        return str(os.getpid())


def test_a_replica_killed_under_load_is_replaced(base):
    serve.run(Pid.bind(), name="pid", route_prefix="/pid")
    with _Load(base["url"], clients=4, path="/pid") as load:
        pids = _wait(lambda: len(load.ok) == 2 and set(load.ok), message="both replicas")
        victim = int(sorted(pids)[0])
        os.kill(victim, signal.SIGKILL)
        before = load.total()
        # the supervisor rebuilds the replica in place: a new process answers
        _wait(lambda: len(set(load.ok) - pids) >= 1, message="the restarted replica")
        _wait(lambda: load.total() > before + 100, message="more requests")
        failed_after = len(load.failed)
        _wait(lambda: load.total() > before + 200, message="still more requests")
    print(f"replica killed under load: {len(load.failed)} of {load.total()} requests failed: "
          f"{load.failed[:3]}")
    assert len(load.failed) <= 4 + 1, load.failed  # at most the ones in flight to it
    assert len(load.failed) == failed_after, "requests failed after the replica was back"
    assert all("500" in f for f in load.failed)
    deps = serve.status().applications["pid"].deployments["Pid"]
    _wait(lambda: serve.status().applications["pid"].deployments["Pid"].status == "HEALTHY",
           message="healthy again")
    assert deps is not None
    serve.delete("pid")


def test_a_deployment_whose_supervisor_died_gets_a_new_one():
    from zactor.util import state

    handle = serve.run(Pid.bind(), name="orphan", route_prefix=None)
    before = {handle.remote(None).result() for _ in range(20)}
    alive = state.list_actors(filters=[("state", "=", "ALIVE"),
                                       ("class_name", "=", "_SupervisorActor")], limit=1000)
    sups = [a for a in alive if (a["name"] or "").startswith("SERVE_REPLICAS::orphan#Pid#")]
    assert len(sups) == 1
    os.kill(sups[0]["pid"], signal.SIGKILL)  # as a supervisor that gives up exits
    # Its replicas go with it (a call they had, or that reached them before the routers
    # heard, fails); the controller starts a new supervisor and new replicas.
    def new_pids() -> set:
        try:
            return {handle.remote(None).result(timeout_s=30) for _ in range(20)} - before
        except zactor.exceptions.ActorDiedError:
            return set()

    assert _wait(new_pids, message="replicas under a new supervisor")
    _wait(lambda: serve.status().applications["orphan"].deployments["Pid"].replica_states
           == {"RUNNING": 2}, message="two replicas running")
    serve.delete("orphan")


def _version(tag: str):
    @serve.deployment(num_replicas=2, graceful_shutdown_wait_loop_s=0.5)
    class Versioned:
        def __call__(self, request):
            time.sleep(0.002)
            return tag

    return Versioned


def test_a_redeploy_under_load_drops_no_request(base):
    serve.run(_version("v1").bind(), name="roll", route_prefix="/roll")
    with _Load(base["url"], clients=4, path="/roll") as load:
        serve.run(_version("v2").bind(), name="roll", route_prefix="/roll")
        seen = load.total()
        _wait(lambda: load.total() > seen + 100, message="requests after the redeploy")
    assert load.failed == [], load.failed[:5]
    assert load.ok["v1"] > 0 and load.ok["v2"] > 100
    # the old replicas finish draining, then stop
    _wait(lambda: serve.status().applications["roll"].deployments["Versioned"]
           .replica_states == {"RUNNING": 2}, message="only the two new replicas")
    serve.delete("roll")


def test_user_config_reconfigures_without_restarting():
    @serve.deployment(user_config={"factor": 2})
    class Scaled:
        def reconfigure(self, config):
            self.factor = config["factor"]

        def __call__(self, x):
            return x * self.factor, os.getpid()

    handle = serve.run(Scaled.bind(), name="cfg", route_prefix=None)
    value, pid = handle.remote(5).result()
    assert value == 10
    serve.run(Scaled.options(user_config={"factor": 3}).bind(), name="cfg", route_prefix=None)
    value, pid2 = handle.remote(5).result()
    assert (value, pid2) == (15, pid)
    serve.delete("cfg")


def test_a_replica_failing_its_health_check_is_replaced(tmp_path):
    flag = tmp_path / "sick"

    @serve.deployment(health_check_period_s=0.1, health_check_timeout_s=5)
    class Fragile:
        def __init__(self, path: str) -> None:
            self.path = path

        def check_health(self):
            if os.path.exists(self.path):
                raise RuntimeError("feeling sick")

        def __call__(self):
            return serve.get_replica_context().replica_tag

    handle = serve.run(Fragile.bind(str(flag)), name="health", route_prefix=None)
    first = handle.remote().result()
    flag.write_text("x")
    _wait(lambda: handle.remote().result() != first, message="a new replica")
    flag.unlink()
    _wait(lambda: serve.status().applications["health"].status == "RUNNING",
           message="running again")
    serve.delete("health")


def test_back_pressure_answers_503_not_unbounded_queues(base):
    @serve.deployment(max_ongoing_requests=1, max_queued_requests=2)
    class Slow:
        async def __call__(self, request):
            import asyncio

            await asyncio.sleep(0.5)
            return "done"

    serve.run(Slow.bind(), name="slow", route_prefix="/slow")
    codes: list[int] = []

    def one() -> None:
        with httpx.Client(base_url=base["url"], timeout=30) as c:
            codes.append(c.get("/slow").status_code)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(codes) == 8
    assert codes.count(200) >= 3 and codes.count(503) >= 1, codes
    assert set(codes) <= {200, 503}
    serve.delete("slow")


def test_a_failing_constructor_fails_the_deploy_with_its_error():
    @serve.deployment
    class Broken:
        def __init__(self) -> None:
            raise RuntimeError("cannot load the model")

    with pytest.raises(RayServeException, match="cannot load the model"):
        serve.run(Broken.bind(), name="broken", route_prefix=None)
    assert serve.status().applications["broken"].status == "DEPLOY_FAILED"
    serve.delete("broken")


# --- autoscaling ------------------------------------------------------------------------------


def test_autoscaling_goes_up_under_load_and_back_down():
    @serve.deployment(max_ongoing_requests=2, autoscaling_config={
        "min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 1,
        "upscale_delay_s": 0.5, "downscale_delay_s": 1.0, "look_back_period_s": 0.5})
    class Elastic:
        async def __call__(self):
            import asyncio

            await asyncio.sleep(0.1)
            return 1

    handle = serve.run(Elastic.bind(), name="elastic", route_prefix=None)

    def running() -> int:
        st = serve.status().applications["elastic"].deployments["Elastic"]
        return st.replica_states.get("RUNNING", 0)

    assert running() == 1
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            handle.remote().result(timeout_s=30)

    threads = [threading.Thread(target=load, daemon=True) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        _wait(lambda: running() == 3, timeout=60, message="3 replicas")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    _wait(lambda: running() == 1, timeout=60, message="back to 1 replica")
    serve.delete("elastic")


# --- applications -----------------------------------------------------------------------------


def test_two_apps_and_a_delete(http):
    @serve.deployment
    def a(request):
        return "A"

    @serve.deployment
    def b(request):
        return "B"

    handle_a = serve.run(a.bind(), name="app-a", route_prefix="/a")
    serve.run(b.bind(), name="app-b", route_prefix="/b")
    with pytest.raises(ValueError, match="Prefix /b is being used"):
        serve.run(a.bind(), name="app-c", route_prefix="/b")
    assert (http.get("/a").text, http.get("/b").text) == ("A", "B")
    serve.delete("app-a")
    assert http.get("/a").status_code == 404
    assert http.get("/b").text == "B"
    with pytest.raises(RayServeException):
        handle_a.remote(None).result(timeout_s=10)
    assert "app-a" not in serve.status().applications
    assert serve.status().applications["app-b"].status == "RUNNING"
    serve.delete("app-b")


def test_status_and_replica_context():
    @serve.deployment(num_replicas=2)
    class Who:
        def __call__(self):
            ctx = serve.get_replica_context()
            return ctx.app_name, ctx.deployment, ctx.replica_tag, ctx.replica_id.unique_id

    handle = serve.run(Who.bind(), name="who", route_prefix=None)
    tags = {handle.remote().result() for _ in range(40)}
    assert {(t[0], t[1]) for t in tags} == {("who", "Who")}
    assert all(t[2] == t[3] for t in tags) and len(tags) == 2
    st = serve.status()
    app = st.applications["who"]
    assert app.status == "RUNNING" and app.last_deployed_time_s > 0
    dep = app.deployments["Who"]
    assert dep.status == "HEALTHY" and dep.replica_states == {"RUNNING": 2}
    with pytest.raises(RayServeException):
        serve.get_replica_context()
    serve.delete("who")


def test_access_log_has_method_route_status_latency_and_replica(http, base):
    serve.run(text.bind(), name="logged", route_prefix="/logged")
    assert http.get("/logged/x").status_code == 200
    log = base["logs"] / "proxy_access.log"

    def line():
        return [ln for ln in log.read_text().splitlines() if "GET /logged/x 200" in ln] \
            if log.exists() else None

    found = _wait(line, message="the access log line")[0]
    assert "ms replica=" in found and not found.endswith("replica=-")
    serve.delete("logged")


def test_deployment_options_are_checked():
    with pytest.raises(TypeError, match="unknown deployment option"):
        serve.deployment(num_replica=2)
    with pytest.raises(ValueError, match="max_ongoing_requests"):
        serve.deployment(max_ongoing_requests=0)
    with pytest.raises(ValueError, match="autoscaling_config"):
        serve.deployment(autoscaling_config={"min_replicas": 3, "max_replicas": 2})
    with pytest.raises(ValueError, match="route_prefix"):
        serve.run(text.bind(), name="bad", route_prefix="nope")
    assert zactor.is_initialized()


def test_starting_serve_again_with_other_http_options_warns_and_keeps_the_proxy(base, caplog):
    with caplog.at_level("WARNING", logger="zactor.serve.api"):
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    assert "are not applied" in caplog.text
    assert httpx.get(base["url"] + "/-/healthz", timeout=10).text == "success"


def test_a_port_in_use_fails_serve_start_with_the_reason(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "busy.py"
    script.write_text(
        "import socket, zactor\n"
        "from zactor import serve\n"
        "from zactor.serve.exceptions import RayServeException\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); port = s.getsockname()[1]\n"
        "zactor.init(num_cpus=1)\n"
        "try:\n"
        "    serve.start(http_options={'host': '127.0.0.1', 'port': port})\n"
        "except RayServeException as exc:\n"
        "    print('refused:', exc)\n"
        "finally:\n"
        "    zactor.shutdown()\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "refused:" in out.stdout and "Address already in use" in out.stdout, out.stdout
