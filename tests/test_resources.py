"""Resources and introspection: cluster/available resources, nodes, runtime context, GPUs."""

from __future__ import annotations

import os

import pytest
from remote_helpers import touch, wait_for_path, wait_until

import zactor

pytestmark = pytest.mark.usefixtures("cluster")

CLUSTER_KWARGS = {"num_cpus": 2, "num_gpus": 2, "resources": {"widget": 3}}


@zactor.remote
def context_in_task():
    ctx = zactor.get_runtime_context()
    return {
        "job_id": ctx.get_job_id(),
        "node_id": ctx.get_node_id(),
        "task_id": ctx.get_task_id(),
        "actor_id": ctx.get_actor_id(),
        "worker_id": ctx.get_worker_id(),
        "namespace": ctx.namespace,
        "resources": ctx.get_assigned_resources(),
    }


@zactor.remote(num_gpus=1)
def gpu_task():
    ctx = zactor.get_runtime_context()
    return {
        "gpu_ids": zactor.get_gpu_ids(),
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "accelerators": ctx.get_accelerator_ids(),
        "resources": ctx.get_assigned_resources(),
    }


@zactor.remote
def hold(release, started, value=None):
    touch(started)
    wait_for_path(release)
    return value


@zactor.remote
class ContextActor:
    def context(self):
        ctx = zactor.get_runtime_context()
        return {"actor_id": ctx.get_actor_id(), "worker_id": ctx.get_worker_id(),
                "task_id": ctx.get_task_id(), "job_id": ctx.get_job_id()}


def wait_for_idle_cluster():
    wait_until(lambda: zactor.available_resources().get("CPU", 0) == 2
               and zactor.available_resources().get("GPU", 0) == 2
               and zactor.available_resources().get("widget", 0) == 3,
               timeout=20, message="all resources available again")


def test_cluster_resources_report_cpus_gpus_and_custom_resources():
    total = zactor.cluster_resources()
    assert total["CPU"] == 2
    assert total["GPU"] == 2
    assert total["widget"] == 3


def test_available_resources_equal_cluster_resources_when_idle():
    wait_for_idle_cluster()
    available = zactor.available_resources()
    total = zactor.cluster_resources()
    for key in ("CPU", "GPU", "widget"):
        assert available[key] == total[key]


@pytest.mark.timeout(60)
def test_available_resources_drop_while_a_task_holds_them(tmp_path):
    wait_for_idle_cluster()
    release, started = str(tmp_path / "release"), str(tmp_path / "started")
    ref = hold.options(num_cpus=1, num_gpus=1, resources={"widget": 2}).remote(release, started)
    try:
        wait_for_path(started, timeout=30)
        wait_until(lambda: zactor.available_resources().get("widget", 0) == 1, timeout=10,
                   message="widget availability to drop to 1")
        available = zactor.available_resources()
        assert available.get("CPU", 0) == 1
        assert available.get("GPU", 0) == 1
        assert zactor.cluster_resources()["widget"] == 3
    finally:
        touch(release)
    zactor.get(ref, timeout=30)
    wait_for_idle_cluster()


def test_nodes_lists_the_single_live_local_node():
    nodes = zactor.nodes()
    assert len(nodes) == 1
    node = nodes[0]
    assert node["Alive"] is True
    assert node["Resources"]["CPU"] == 2
    assert node["Resources"]["GPU"] == 2
    assert node["Resources"]["widget"] == 3
    assert node["NodeID"] == zactor.get(context_in_task.remote())["node_id"]


def test_runtime_context_in_a_task():
    driver = zactor.get_runtime_context()
    first, second = zactor.get([context_in_task.remote(), context_in_task.remote()])
    assert first["job_id"] == driver.get_job_id() == second["job_id"]
    assert first["node_id"] == driver.get_node_id()
    assert first["task_id"] and second["task_id"] and first["task_id"] != second["task_id"]
    assert first["actor_id"] is None
    assert first["worker_id"]
    assert first["namespace"] == driver.namespace
    assert first["resources"].get("CPU") == 1


def test_runtime_context_reports_custom_assigned_resources():
    resources = zactor.get(
        context_in_task.options(num_cpus=0, resources={"widget": 2}).remote())["resources"]
    assert resources.get("widget") == 2
    assert not resources.get("CPU")


def test_runtime_context_in_an_actor_identifies_the_actor():
    a, b = ContextActor.remote(), ContextActor.remote()
    ca, cb = zactor.get([a.context.remote(), b.context.remote()])
    assert ca["actor_id"] and cb["actor_id"] and ca["actor_id"] != cb["actor_id"]
    assert ca["worker_id"] != cb["worker_id"]
    assert ca["job_id"] == zactor.get_runtime_context().get_job_id()
    again = zactor.get(a.context.remote())
    assert again["actor_id"] == ca["actor_id"]
    assert again["task_id"] != ca["task_id"]


def test_driver_runtime_context_has_no_actor():
    ctx = zactor.get_runtime_context()
    assert ctx.get_actor_id() is None
    assert ctx.get_job_id()
    assert ctx.get_node_id()


def test_gpu_task_gets_one_gpu_id_exported_as_cuda_visible_devices():
    info = zactor.get(gpu_task.remote())
    assert len(info["gpu_ids"]) == 1
    gpu = info["gpu_ids"][0]
    assert str(gpu) in {"0", "1"}
    assert info["cuda"] == str(gpu)
    assert [str(x) for x in info["accelerators"]["GPU"]] == [str(gpu)]
    assert info["resources"].get("GPU") == 1


@pytest.mark.timeout(60)
def test_two_concurrent_gpu_tasks_get_different_gpus(tmp_path):
    @zactor.remote(num_gpus=1)
    def gpu_meet(me, other, d):
        touch(os.path.join(d, me))
        wait_for_path(os.path.join(d, other), timeout=30)
        return os.environ.get("CUDA_VISIBLE_DEVICES")

    refs = [gpu_meet.remote("a", "b", str(tmp_path)), gpu_meet.remote("b", "a", str(tmp_path))]
    assert sorted(zactor.get(refs, timeout=45)) == ["0", "1"]


def test_driver_and_cpu_tasks_have_no_gpus():
    assert zactor.get_gpu_ids() == []

    @zactor.remote
    def cpu_only():
        return zactor.get_gpu_ids()

    assert zactor.get(cpu_only.remote()) == []


@pytest.mark.timeout(60)
def test_custom_resource_limits_concurrency(tmp_path):
    """widget=3 and each task needs 2: the second task waits until the first releases."""
    wait_for_idle_cluster()
    r1, s1 = str(tmp_path / "r1"), str(tmp_path / "s1")
    first = hold.options(num_cpus=0, resources={"widget": 2}).remote(r1, s1, "first")
    second = hold.options(num_cpus=0, resources={"widget": 2}).remote(
        str(tmp_path / "r2"), str(tmp_path / "s2"), "second")
    try:
        wait_for_path(s1, timeout=30)
        ready, _ = zactor.wait([second], timeout=0.5)
        assert ready == []
        assert not os.path.exists(tmp_path / "s2"), "second task must not start yet"
        touch(r1)
        wait_for_path(str(tmp_path / "s2"), timeout=30)
    finally:
        touch(r1)
        touch(str(tmp_path / "r2"))
    assert zactor.get([first, second], timeout=30) == ["first", "second"]


@zactor.remote
class Holder:
    def ping(self):
        return "pong"

    def gpus(self):
        return zactor.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")


@pytest.mark.timeout(60)
def test_default_actor_holds_no_cpu_while_running():
    wait_for_idle_cluster()
    actors = [Holder.remote() for _ in range(3)]  # more actors than CPUs
    assert zactor.get([a.ping.remote() for a in actors], timeout=30) == ["pong"] * 3
    assert zactor.available_resources().get("CPU", 0) == 2
    for a in actors:
        zactor.kill(a)


@pytest.mark.timeout(60)
def test_actor_with_explicit_resources_holds_them_for_its_lifetime():
    wait_for_idle_cluster()
    actor = Holder.options(num_cpus=1, num_gpus=1, resources={"widget": 1}).remote()
    gpu_ids, cuda = zactor.get(actor.gpus.remote(), timeout=30)
    assert len(gpu_ids) == 1 and cuda == str(gpu_ids[0])
    available = zactor.available_resources()
    assert available.get("CPU", 0) == 1
    assert available.get("GPU", 0) == 1
    assert available.get("widget", 0) == 2
    zactor.kill(actor)
    wait_for_idle_cluster()


@pytest.mark.timeout(60)
def test_fractional_gpus_share_a_device_as_in_ray():
    wait_for_idle_cluster()
    halves = [Holder.options(num_cpus=0, num_gpus=0.5).remote() for _ in range(3)]
    seen = [zactor.get(a.gpus.remote(), timeout=30) for a in halves]
    devices = [ids[0] for ids, _ in seen]
    assert devices[0] == devices[1] and devices[2] != devices[0]  # two halves fill one
    assert all(cuda == str(ids[0]) for ids, cuda in seen)
    assert zactor.available_resources()["GPU"] == 0.5
    whole = Holder.options(num_cpus=0, num_gpus=1).remote()
    ready, _ = zactor.wait([whole.ping.remote()], timeout=0.5)
    assert not ready  # half of each device is taken: no whole one is free
    zactor.kill(halves[0])
    zactor.kill(halves[1])
    ids, cuda = zactor.get(whole.gpus.remote(), timeout=30)
    assert ids == [devices[0]] and cuda == str(devices[0])
    for a in (halves[2], whole):
        zactor.kill(a)
    wait_for_idle_cluster()


@pytest.mark.timeout(60)
def test_a_placement_group_bundle_hands_out_the_gpus_it_reserved():
    from zactor.util.placement_group import placement_group, remove_placement_group
    from zactor.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    wait_for_idle_cluster()
    group = placement_group([{"CPU": 1, "GPU": 1}, {"GPU": 1}])
    assert group.wait(10)
    assert zactor.available_resources().get("GPU", 0) == 0
    ids = [zactor.get(gpu_task.options(num_cpus=0, scheduling_strategy=(
        PlacementGroupSchedulingStrategy(group, i))).remote())["gpu_ids"] for i in range(2)]
    assert sorted(i[0] for i in ids) == [0, 1]  # each bundle its own device
    remove_placement_group(group)
    wait_for_idle_cluster()


@pytest.mark.timeout(60)
def test_a_task_asking_for_two_gpus_sees_both():
    wait_for_idle_cluster()
    info = zactor.get(gpu_task.options(num_gpus=2).remote())
    assert sorted(info["gpu_ids"]) == [0, 1] and info["cuda"] in ("0,1", "1,0")


def test_shares_above_one_unit_must_be_whole_as_in_ray():
    with pytest.raises(ValueError, match="must be whole numbers"):
        gpu_task.options(num_gpus=1.5)
    with pytest.raises(ValueError, match="must be whole numbers"):
        gpu_task.options(resources={"widget": 2.5})
