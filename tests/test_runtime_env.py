"""Runtime environments of tasks and actors on a two-node cluster (zactor.testing.Cluster,
this process its driver): env_vars, working_dir, py_modules and pip, Ray's inheritance
rules, worker pools per environment, and setup failures that end the work with
RuntimeEnvSetupError (pip's output included), never a hang.

Every package pip installs here is built in the test (tests/wheels.py) and pip runs with
--no-index: no test asks a package registry."""

from __future__ import annotations

import hashlib
import os
import sys
import time

import pytest
from remote_helpers import wait_until
from wheels import OFFLINE, build_wheel

import zactor
import zactor.testing
from zactor import config
from zactor.exceptions import RuntimeEnvSetupError
from zactor.runtime_env import RuntimeEnv
from zactor.runtime_env._upload import zip_directory
from zactor.testing import Cluster

pytestmark = [pytest.mark.usefixtures("cluster"), pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        c.add_node(num_cpus=1)
        c.connect()
        yield c
    finally:
        zactor.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("wheels"))
    return {v: build_wheel(root, "zq_versioned", v, f"WHO = 'zq_versioned {v}'\n")
            for v in ("1.0", "2.0")}


@pytest.fixture(scope="module")
def default_pool():
    wait_until(lambda: len(zactor.testing.worker_pids()) >= 2, timeout=30,
               message="the warm pool")
    return set(zactor.testing.worker_pids())


def pip_env(*packages: str) -> dict:
    return {"pip": {"packages": list(packages), "pip_install_options": OFFLINE}}


@zactor.remote
def environ(name: str):
    return os.environ.get(name)


@zactor.remote
def where() -> tuple[int, str]:
    return os.getpid(), sys.executable


@zactor.remote
def can_import(module: str) -> bool:
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def test_env_vars_reach_only_the_tasks_that_ask(default_pool):
    env = {"env_vars": {"ZQ_FOO": "bar", "ZQ_HOME": "${HOME}/x"}}
    assert zactor.get(environ.options(runtime_env=env).remote("ZQ_FOO")) == "bar"
    assert zactor.get(environ.options(runtime_env=env).remote("ZQ_HOME")) == \
        os.environ["HOME"] + "/x"  # ${VAR} is the existing variable, as in Ray
    assert zactor.get(environ.remote("ZQ_FOO")) is None
    with_env = zactor.get(where.options(runtime_env=env).remote())[0]
    assert with_env not in default_pool


@zactor.remote(runtime_env={"env_vars": {"ZQ_A": "outer", "ZQ_B": "outer"}})
def outer():
    inherited = environ.remote("ZQ_B")  # no runtime_env of its own: the parent's
    merged = environ.options(runtime_env={"env_vars": {"ZQ_B": "inner"}}).remote("ZQ_B")
    kept = environ.options(runtime_env={"env_vars": {"ZQ_B": "inner"}}).remote("ZQ_A")
    return zactor.get([inherited, merged, kept])


def test_children_inherit_the_parents_environment_and_env_vars_merge():
    assert zactor.get(outer.remote()) == ["outer", "inner", "outer"]


def test_working_dir_is_uploaded_unpacked_and_the_current_directory(tmp_path):
    wd = tmp_path / "project"
    (wd / "data").mkdir(parents=True)
    (wd / "only_in_working_dir.py").write_text("ANSWER = 42\n")
    (wd / "data" / "small.txt").write_text("kept")
    (wd / "data" / "huge.bin").write_bytes(b"x" * 1000)
    (wd / "debug.log").write_text("ignored by .gitignore")
    (wd / ".gitignore").write_text("*.log\n")

    @zactor.remote(runtime_env={"working_dir": str(wd), "excludes": ["data/huge.bin"]})
    def inside():
        import only_in_working_dir

        files = sorted(os.path.relpath(os.path.join(r, f)) for r, _, fs in os.walk(".")
                       for f in fs)
        return only_in_working_dir.ANSWER, open("data/small.txt").read(), files, os.getcwd()

    answer, small, files, cwd = zactor.get(inside.remote())
    assert (answer, small) == (42, "kept")
    assert files == [".gitignore", "data/small.txt", "only_in_working_dir.py"]
    assert cwd != str(wd) and cwd.startswith(config.RUNTIME_ENV_DIR)  # a copy, on the node
    assert not zactor.get(can_import.remote("only_in_working_dir"))


def test_a_zipped_working_dir_with_one_top_directory_is_that_directory(tmp_path):
    import zipfile

    zipped = tmp_path / "project.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("project/zipped_module.py", "WHERE = 'in the zip'\n")
        zf.writestr("project/sub/data.txt", "x")

    @zactor.remote(runtime_env={"working_dir": str(zipped)})
    def inside():
        import zipped_module

        return zipped_module.WHERE, sorted(os.listdir("."))

    assert zactor.get(inside.remote()) == ("in the zip", ["sub", "zipped_module.py"])


def test_a_working_dir_over_the_limit_is_refused_clearly(tmp_path, monkeypatch):
    (tmp_path / "big.bin").write_bytes(b"x" * 5000)
    monkeypatch.setattr(config, "RUNTIME_ENV_PACKAGE_MAX", 4096)
    with pytest.raises(ValueError, match="over the limit of .*excludes"):
        where.options(runtime_env={"working_dir": str(tmp_path)}).remote()
    with pytest.raises(ValueError, match="does not exist"):
        where.options(runtime_env={"working_dir": str(tmp_path / "nope")}).remote()


def test_py_modules_packages_and_wheels_import_remotely(tmp_path, wheels):
    pkg = tmp_path / "zq_local_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("NAME = 'local package'\n")

    @zactor.remote(runtime_env={"py_modules": [str(pkg), wheels["1.0"]]})
    def use():
        import zq_local_pkg
        import zq_versioned

        return zq_local_pkg.NAME, zq_versioned.WHO

    assert zactor.get(use.remote()) == ("local package", "zq_versioned 1.0")


def test_a_pip_environment_is_importable_only_where_asked(wheels, default_pool):
    env = pip_env(wheels["1.0"])

    @zactor.remote(runtime_env=env)
    def versioned():
        import zq_versioned

        return zq_versioned.WHO, sys.executable, os.getpid()

    who, python, pid = zactor.get(versioned.remote(), timeout=120)
    assert who == "zq_versioned 1.0"
    assert python.startswith(config.RUNTIME_ENV_DIR) and python != sys.executable
    assert pid not in default_pool
    started = time.monotonic()
    assert zactor.get(versioned.remote())[2] == pid  # the same worker: built once, reused
    assert time.monotonic() - started < 10
    assert not zactor.get(can_import.remote("zq_versioned"))
    # the default environment's warm workers are the ones it had before
    assert {zactor.get(where.remote())[0] for _ in range(6)} <= default_pool
    assert default_pool <= set(zactor.testing.worker_pids())


def test_two_environments_at_once(wheels, tmp_path):
    @zactor.remote
    def meet(me: str, other: str, folder: str):
        import zq_versioned

        open(os.path.join(folder, me), "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(folder, other)):  # both run at the same time
            if time.monotonic() > deadline:
                return "alone"
            time.sleep(0.02)
        return zq_versioned.WHO

    one = meet.options(runtime_env=pip_env(wheels["1.0"])).remote("a", "b", str(tmp_path))
    two = meet.options(runtime_env=pip_env(wheels["2.0"])).remote("b", "a", str(tmp_path))
    assert zactor.get([one, two], timeout=150) == ["zq_versioned 1.0", "zq_versioned 2.0"]


def test_an_actor_runs_in_its_environment(wheels):
    @zactor.remote(runtime_env={**pip_env(wheels["2.0"]), "env_vars": {"ZQ_ROLE": "actor"}})
    class Holder:
        def who(self):
            import zq_versioned

            return zq_versioned.WHO, os.environ["ZQ_ROLE"]

        def env(self):
            return dict(zactor.get_runtime_context().runtime_env)

    holder = Holder.remote()
    assert zactor.get(holder.who.remote(), timeout=120) == ("zq_versioned 2.0", "actor")
    assert zactor.get(holder.env.remote())["env_vars"] == {"ZQ_ROLE": "actor"}


def test_a_broken_requirement_fails_with_pips_output():
    broken = pip_env("zq-no-such-package==9.9")
    started = time.monotonic()
    with pytest.raises(RuntimeEnvSetupError) as info:
        zactor.get(where.options(runtime_env=broken).remote(), timeout=120)
    assert "zq-no-such-package" in str(info.value) and "pip install failed" in str(info.value)
    assert "No matching distribution" in str(info.value)  # pip's own words

    @zactor.remote(runtime_env=broken)
    class Never:
        def ping(self):
            return "pong"

    never = Never.remote()
    with pytest.raises(RuntimeEnvSetupError, match="zq-no-such-package"):
        zactor.get(never.ping.remote(), timeout=120)
    assert time.monotonic() - started < 120
    assert zactor.get(where.remote())[1] == sys.executable  # the cluster goes on


def test_bad_runtime_envs_are_refused_when_given():
    with pytest.raises(ValueError, match="Unknown runtime_env field"):
        where.options(runtime_env={"env_var": {}})
    with pytest.raises(NotImplementedError, match="conda"):
        where.options(runtime_env={"conda": "env"})
    with pytest.raises(TypeError, match="env_vars"):
        where.options(runtime_env={"env_vars": {"A": 1}})
    with pytest.raises(TypeError, match="pip"):
        RuntimeEnv(pip=42)
    with pytest.raises(NotImplementedError, match="remote URIs"):
        where.options(runtime_env={"working_dir": "s3://bucket/x.zip"})


def test_runtime_env_objects_and_the_runtime_context():
    env = RuntimeEnv(env_vars={"ZQ_CTX": "1"})

    @zactor.remote(runtime_env=env)
    def seen():
        return dict(zactor.get_runtime_context().runtime_env)

    assert zactor.get(seen.remote()) == {"env_vars": {"ZQ_CTX": "1"}}


def test_packages_are_named_by_their_content(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("x = 1\n")
    first, second = str(tmp_path / "1.zip"), str(tmp_path / "2.zip")
    zip_directory(str(src), first, [], False, 1 << 20)
    os.utime(src / "a.py", (1, 1))  # another mtime, the same content: the same package
    zip_directory(str(src), second, [], False, 1 << 20)
    digest = [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in (first, second)]
    assert digest[0] == digest[1]


def test_a_jobs_environment_and_its_drivers_init_merge_without_conflict():
    from zactor.runtime_env._spec import merge_job

    job = {"env_vars": {"A": "1"}, "working_dir": "zactor://" + "0" * 64 + ".zip"}
    assert merge_job(job, {"env_vars": {"B": "2"}}) == {**job, "env_vars": {"A": "1", "B": "2"}}
    with pytest.raises(ValueError, match="set differently"):
        merge_job(job, {"env_vars": {"A": "other"}})
    with pytest.raises(ValueError, match="working_dir"):
        merge_job(job, {"working_dir": "/elsewhere"})


UNPACK = """
import sys
from zactor.runtime_env import _setup
_setup._unpacked(sys.argv[1], sys.argv[2], lambda line: None)
"""


def test_the_cache_keeps_what_is_in_use_and_lets_the_rest_go(tmp_path, monkeypatch):
    import subprocess

    from zactor.runtime_env import _setup, _spec

    root = str(tmp_path / "cache")
    os.makedirs(os.path.join(root, "packages"))
    uris = []
    for i in range(3):
        src = tmp_path / f"src{i}"
        src.mkdir()
        (src / "blob.bin").write_bytes(os.urandom(4096))
        zipped = str(tmp_path / f"{i}.zip")
        zip_directory(str(src), zipped, [], False, 1 << 20)
        uri = f"{_spec.SCHEME}{_spec.file_digest(zipped)}.zip"
        os.replace(zipped, _setup.package_path(root, uri))
        uris.append(uri)
    env = {**os.environ, "ZACTOR_RUNTIME_ENV_CACHE_MAX": "6000"}  # room for one entry
    monkeypatch.setattr(config, "RUNTIME_ENV_CACHE_MAX", 6000)

    def unpacked(i):
        return os.path.isdir(os.path.join(root, "pkgs", _spec.digest_of(uris[i])))

    # a process that used package 0 and exited: nobody holds it
    subprocess.run([sys.executable, "-c", UNPACK, root, uris[0]], check=True, env=env)
    assert unpacked(0)
    _setup._unpacked(root, uris[1], lambda line: None)  # this process holds package 1
    assert unpacked(1) and not unpacked(0)  # over the limit: the unused one went
    subprocess.run([sys.executable, "-c", UNPACK, root, uris[2]], check=True, env=env)
    assert unpacked(1) and unpacked(2)  # still over, but 1 is in use and 2 was just made
    _setup.collect(root)  # 2's process is gone now: it goes, 1 stays
    assert unpacked(1) and not unpacked(2)


GATED_SETUP = """
import os, time
from setuptools import setup

deadline = time.monotonic() + 90
while not os.path.exists({gate!r}) and time.monotonic() < deadline:  # the test opens it
    time.sleep(0.05)
setup(name="zq-gated-task", version="1.0", py_modules=["zq_gated_task"])
"""


def test_a_worker_killed_while_setting_up_leaves_no_pip_and_loses_no_task(tmp_path):
    import signal

    import psutil

    wd = tmp_path / "wd"
    (wd / "gated").mkdir(parents=True)
    gate = tmp_path / "open"
    (wd / "gated" / "setup.py").write_text(GATED_SETUP.format(gate=str(gate)))
    (wd / "gated" / "zq_gated_task.py").write_text("OK = 'installed'\n")

    @zactor.remote(runtime_env={"working_dir": str(wd), "pip": {
        "packages": ["./gated"], "pip_install_options": OFFLINE}})
    def gated():
        import zq_gated_task

        return zq_gated_task.OK

    ref = gated.remote()

    def pip_processes():
        found = []
        for p in psutil.process_iter(["cmdline"]):
            line = " ".join(p.info["cmdline"] or [])
            if " -m pip " in line and " install " in line and config.RUNTIME_ENV_DIR in line:
                found.append(p)
        return found

    pip = wait_until(pip_processes, timeout=60, message="pip to start")[0]
    setting_up = pip.parent()  # the worker-to-be, forked by its node's zygote
    setting_up.send_signal(signal.SIGKILL)
    wait_until(lambda: not pip.is_running() or pip.status() == psutil.STATUS_ZOMBIE,
               timeout=30, message="pip to die with the worker")
    gate.touch()  # the next worker's setup may finish now
    assert zactor.get(ref, timeout=120) == "installed"
