"""Corners of Ray Core that Ray's own documentation programs rely on: module paths of the
types, RuntimeContext properties, cancelling actor calls, sys.exit and exit_actor in actors,
and the output of work started just before a driver exits."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time

import pytest
from remote_helpers import attempts_in, record_attempt, touch, wait_for_path, wait_until

import zactor as ray
from zactor.exceptions import (
    ActorDiedError,
    ActorError,
    TaskCancelledError,
    TaskError,
    WorkerCrashedError,
)

pytestmark = pytest.mark.usefixtures("cluster")


@ray.remote
class Probe:
    def context(self):
        ctx = ray.get_runtime_context()
        return ctx.node_id.hex(), ctx.get_node_id(), ctx.actor_id.hex(), ctx.get_actor_id(), \
            ctx.task_id.hex(), ctx.get_task_id(), ctx.job_id.hex(), ctx.get_job_id()

    def poll_cancel(self, started: str):
        touch(started)
        for _ in range(2000):
            if ray.get_runtime_context().is_canceled():
                return "saw the cancel"
            time.sleep(0.005)
        return "never cancelled"

    def exit_with(self, code):
        sys.exit(code)

    def pid(self):
        return os.getpid()

    def leave(self, marker: str):
        import atexit

        atexit.register(touch, marker)
        ray.actor.exit_actor()


@ray.remote
class AsyncSleeper:
    async def sleep(self, started: str):
        touch(started)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "swallowed the cancel"


@ray.remote
def task_context():
    ctx = ray.get_runtime_context()
    return ctx.task_id.hex(), ctx.get_task_id(), ctx.actor_id


@ray.remote(max_retries=1)
def exits_once(path: str):
    if record_attempt(path) == 1:
        sys.exit(3)
    return "second attempt"


@ray.remote(max_retries=0)
def exits_for_good():
    sys.exit(5)


def test_the_types_are_at_ray_s_module_paths():
    handle = Probe.remote()
    assert isinstance(handle, ray.actor.ActorHandle)
    assert isinstance(Probe, ray.actor.ActorClass)
    assert isinstance(task_context, ray.remote_function.RemoteFunction)
    assert isinstance(ray.get_runtime_context(), ray.runtime_context.RuntimeContext)
    assert ray.runtime_context.get_runtime_context is ray.get_runtime_context
    assert issubclass(ray.exceptions.RayActorError, Exception)
    assert isinstance(ray.put(1), ray.ObjectRef)
    assert ray.cloudpickle.loads(ray.cloudpickle.dumps(lambda x: x + 1))(1) == 2
    from zactor._raylet import ObjectRef, ObjectRefGenerator

    assert ObjectRef is ray.ObjectRef and ObjectRefGenerator is ray.ObjectRefGenerator


def test_runtime_context_ids_are_properties_as_well_as_getters():
    node, node_hex, actor, actor_hex, task, task_hex, job, job_hex = ray.get(
        Probe.remote().context.remote(), timeout=30)
    assert node == node_hex and actor == actor_hex and task == task_hex and job == job_hex
    task, task_hex, actor_id = ray.get(task_context.remote(), timeout=30)
    assert task == task_hex and actor_id is None
    ctx = ray.get_runtime_context()
    assert ctx.node_id.hex() == ctx.get_node_id() and ctx.job_id.hex() == ctx.get_job_id()
    assert ctx.task_id is None and ctx.actor_id is None
    assert ctx.get()["node_id"] == ctx.node_id


def test_a_sync_actor_method_can_poll_is_canceled_and_its_caller_gets_the_cancel(tmp_path):
    started = str(tmp_path / "started")
    probe = Probe.remote()
    ref = probe.poll_cancel.remote(started)
    wait_for_path(started)
    ray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=30)
    assert ray.get(probe.pid.remote(), timeout=10), "the actor goes on"
    with pytest.raises(RuntimeError):
        ray.get_runtime_context().is_canceled()  # not in a driver


def test_a_cancelled_async_call_raises_even_if_its_body_catches_cancelled_error(tmp_path):
    started = str(tmp_path / "started")
    ref = AsyncSleeper.remote().sleep.remote(started)
    wait_for_path(started)
    ray.cancel(ref)
    with pytest.raises(TaskCancelledError) as info:
        ray.get(ref, timeout=30)
    assert isinstance(info.value, TaskError), "as in Ray: a RayTaskError(TaskCancelledError)"


def test_sys_exit_in_an_actor_method_ends_its_process_and_it_restarts():
    probe = Probe.options(max_restarts=1).remote()
    first = ray.get(probe.pid.remote(), timeout=30)
    with pytest.raises(ActorError):
        ray.get(probe.exit_with.remote(1), timeout=30)
    wait_until(lambda: ray.get(probe.pid.remote(), timeout=30) != first, timeout=30,
               message="the actor to come back in a new process")


def test_sys_exit_in_a_task_is_a_dead_worker(tmp_path):
    attempts = tmp_path / "attempts"
    assert ray.get(exits_once.remote(str(attempts)), timeout=60) == "second attempt"
    assert attempts_in(attempts) == 2
    with pytest.raises(WorkerCrashedError, match="exited with code 5"):
        ray.get(exits_for_good.remote(), timeout=60)


def test_exit_actor_ends_it_for_good_and_runs_its_atexit_handlers(tmp_path):
    marker = str(tmp_path / "atexit-ran")
    probe = Probe.options(max_restarts=3).remote()
    ref = probe.leave.remote(marker)
    with pytest.raises(ActorDiedError, match="exit_actor"):
        ray.get(ref, timeout=30)
    assert os.path.exists(marker)
    with pytest.raises(ActorDiedError, match="exit_actor"):
        ray.get(probe.pid.remote(), timeout=30)


EXITING_DRIVER = textwrap.dedent(
    """
    import zactor as ray

    a, b = ray.put(1), ray.put(2)

    @ray.remote
    def show():
        print("shown:", ray.get([a, b]))

    show.remote()  # the driver exits right after, without shutdown()
    """
)


@pytest.mark.timeout(60)
def test_output_of_a_task_started_just_before_the_driver_exits_reaches_its_terminal():
    done = subprocess.run([sys.executable, "-c", EXITING_DRIVER], capture_output=True,
                          text=True, timeout=50)
    assert done.returncode == 0, done.stderr
    assert "shown: [1, 2]" in done.stdout
