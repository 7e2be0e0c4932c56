"""``zactor memory`` and zactor.util.state: the objects of a running cluster, from inside the
driver and from another process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from remote_helpers import block_until, touch, wait_for_path

import zactor
import zactor.testing
from zactor.util.state import list_objects, memory_summary, summarize_objects

STORE = 64 << 20
CLUSTER_KWARGS = {"num_cpus": 2, "object_store_memory": STORE}
pytestmark = pytest.mark.usefixtures("cluster")


@zactor.remote
class Keeper:
    def keep(self, boxed):
        self.kept = boxed[0]
        return True


def by_id(objects: list[dict]) -> dict[str, dict]:
    return {o["object_id"]: o for o in objects}


def zactor_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zactor_cli.main", *args],
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.timeout(120)
def test_the_report_says_where_each_object_is_and_who_needs_it(tmp_path):
    bigs = [zactor.put(np.full(1 << 20, float(i))) for i in range(10)]  # 80 MiB > the store
    small = zactor.put("small")
    outer = zactor.put([small])
    keeper = Keeper.remote()
    assert zactor.get(keeper.keep.remote([bigs[-1]]), timeout=30)
    view = zactor.get(bigs[-2])  # mapped by this driver: pinned in memory
    gate = str(tmp_path / "gate")
    waiting = block_until.remote(gate, bigs[-3])  # an argument of a running task
    started = str(tmp_path / "started")
    running = block_until.remote(gate, [small], started)
    wait_for_path(started)
    objects = by_id(list_objects())
    assert [o["size"] for o in objects.values()] == sorted(
        (o["size"] for o in objects.values()), reverse=True), "largest first"
    assert objects[small.hex()]["where"] == "inline"
    assert any(r.startswith("inside " + outer.hex()) for r in objects[small.hex()]["references"])
    assert {objects[b.hex()]["where"] for b in bigs} == {"shared memory", "spilled to disk"}
    assert any(r.startswith("actor Keeper") for r in objects[bigs[-1].hex()]["references"])
    assert objects[bigs[-2].hex()]["pinned"] is True
    assert any("argument of" in r for r in objects[bigs[-3].hex()]["references"])
    assert objects[bigs[0].hex()]["owner"] == f"driver pid {os.getpid()}"
    totals = summarize_objects()[0]
    assert totals["store_capacity"] == STORE and totals["objects"] >= 12
    assert totals["by_where"]["spilled to disk"][0] >= 1
    text = memory_summary()
    assert bigs[0].hex() in text and "totals per node" in text and "spilled to disk" in text
    touch(gate)
    zactor.get([waiting, running], timeout=30)
    del view


@pytest.mark.timeout(120)
def test_zactor_memory_works_from_another_terminal():
    ref = zactor.put(np.ones(300_000))
    done = zactor_cli("memory", "--address", zactor.testing.head_address())
    assert done.returncode == 0, done.stderr
    assert ref.hex() in done.stdout and "REFERENCED BY" in done.stdout
    assert "totals per node" in done.stdout
    grouped = zactor_cli("memory", "--address", zactor.testing.head_address(),
                         "--group-by", "owner")
    assert grouped.returncode == 0 and f"owner: driver pid {os.getpid()}" in grouped.stdout
    as_json = zactor_cli("memory", "--address", zactor.testing.head_address(), "--json")
    report = json.loads(as_json.stdout)
    assert ref.hex() in {o["object_id"] for o in report["objects"]}
    auto = zactor_cli("memory")  # finds this user's newest running cluster by itself
    assert auto.returncode == 0 and "object(s)" in auto.stdout


def test_zactor_memory_without_a_cluster_says_so(tmp_path):
    env = {**os.environ, "ZACTOR_SOCKET_ROOT": str(tmp_path)}
    done = zactor_cli("memory", env=env)
    assert done.returncode != 0
    assert "no running zactor cluster" in done.stderr
