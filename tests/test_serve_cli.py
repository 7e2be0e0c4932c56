"""``zactor serve run|status|shutdown`` against a real ``zactor head``: a YAML config in Ray's
``serve build`` format (options per deployment, user_config), real HTTP, Ctrl-C, and an
import path deployed without blocking."""

from __future__ import annotations

import signal
import subprocess
import textwrap
import time

import httpx
import pytest
import yaml
from remote_helpers import free_port
from test_cli_cluster import ZACTOR, env, zactor  # noqa: F401 - env is a fixture

pytestmark = pytest.mark.timeout(300)

APP = '''
from zactor import serve


@serve.deployment
class Hello:
    def __init__(self) -> None:
        self.greeting = "hello"

    def reconfigure(self, config):
        self.greeting = config["greeting"]

    async def __call__(self, request):
        return {"msg": self.greeting, "replica": serve.get_replica_context().replica_tag}


app = Hello.bind()
'''


def _get(url: str, proc: subprocess.Popen | None = None, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"serve run exited with {proc.returncode}: "
                                 f"{proc.stderr.read()}")
        try:
            r = httpx.get(url, timeout=10)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def _refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=5)
    except httpx.ConnectError:
        return True
    return False


def test_serve_run_a_config_then_status_then_ctrl_c(env, tmp_path):  # noqa: F811
    (tmp_path / "hello_app.py").write_text(APP)
    port = free_port()
    (tmp_path / "serve.yaml").write_text(textwrap.dedent(f"""
        http_options:
          host: 127.0.0.1
          port: {port}
        applications:
        - name: hello
          route_prefix: /hello
          import_path: hello_app:app
          deployments:
          - name: Hello
            num_replicas: 2
            user_config:
              greeting: hi from yaml
    """))
    address = f"tcp://127.0.0.1:{env['ZACTOR_PORT']}"
    zactor(env, "head", "--daemon")
    run = subprocess.Popen([ZACTOR, "serve", "run", str(tmp_path / "serve.yaml"), "--address",
                            address, "--app-dir", str(tmp_path)], env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/hello"
        assert _get(url, run)["msg"] == "hi from yaml"
        replicas = {_get(url)["replica"] for _ in range(30)}
        assert len(replicas) == 2
        status = yaml.safe_load(zactor(env, "serve", "status", "--address", address))
        app = status["applications"]["hello"]
        assert app["status"] == "RUNNING" and app["route_prefix"] == "/hello"
        assert app["deployments"]["Hello"]["replica_states"] == {"RUNNING": 2}
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=120) == 0, run.stderr.read()
        assert "Deployed application 'hello'" in run.stdout.read()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert _refused(url)
    assert yaml.safe_load(zactor(env, "serve", "status", "--address", address)) == \
        {"proxies": {}, "applications": {}}

    # an import path, deployed without blocking; then `serve shutdown`
    port2 = free_port()
    zactor(env, "serve", "run", "hello_app:app", "--address", address, "--app-dir",
           str(tmp_path), "--port", str(port2), "--route-prefix", "/x", "--non-blocking")
    url2 = f"http://127.0.0.1:{port2}/x"
    assert _get(url2)["msg"] == "hello"
    assert "Serve is shut down" in zactor(env, "serve", "shutdown", "--address", address, "-y")
    assert _refused(url2)


def test_serve_run_says_what_is_wrong_with_a_config(env, tmp_path):  # noqa: F811
    (tmp_path / "hello_app.py").write_text(APP)
    bad = tmp_path / "bad.yaml"
    bad.write_text("applications:\n- name: a\n  import_path: hello_app:app\n"
                   "  deployments:\n  - name: Nope\n    num_replicas: 2\n")
    out = subprocess.run([ZACTOR, "serve", "run", str(bad), "--app-dir", str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "Nope" in out.stderr and "Hello" in out.stderr
    out = subprocess.run([ZACTOR, "serve", "run", "hello_app:nothing", "--app-dir",
                          str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "has no attribute 'nothing'" in out.stderr
