"""The object store at its limits: objects that fit nowhere raise ObjectStoreFullError where
they were made; spill files never outlive their session, however it ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from remote_helpers import wait_until

import zactor
import zactor.testing
from zactor.exceptions import ObjectStoreFullError

STORE = 64 << 20
ITEM = 16 << 20


@zactor.remote
def make(n_bytes: int):
    return np.ones(n_bytes // 8)


@zactor.remote
def add(a, b):
    return a + b


@pytest.mark.timeout(120)
def test_an_object_that_fits_neither_store_nor_disk_raises_where_it_was_made(fresh_driver,
                                                                            monkeypatch):
    # A disk that must keep more free than it has: nothing may spill or go to disk.
    monkeypatch.setenv("ZACTOR_SPILL_DISK_RESERVE", str(1 << 62))
    zactor.init(num_cpus=2, object_store_memory=STORE)
    kept = [zactor.put(np.full(ITEM // 8, float(i))) for i in range(STORE // ITEM - 1)]
    with pytest.raises(ObjectStoreFullError) as info:
        zactor.put(np.ones(2 * ITEM // 8))
    assert "does not fit" in str(info.value)
    with pytest.raises(ObjectStoreFullError):
        zactor.get(make.remote(2 * ITEM), timeout=60)
    # Nothing else is disturbed: what was stored is intact, small work goes on.
    assert [zactor.get(ref, timeout=30)[0] for ref in kept] == list(range(len(kept)))
    assert zactor.get(add.remote(1, 2), timeout=30) == 3
    assert zactor.get(zactor.put("small")) == "small"
    del kept
    zactor._state.core.flush_refs()
    wait_until(lambda: zactor.testing.store_stats()[0]["used"] == 0, timeout=20,
               message="the store to be empty once its objects are dropped")
    assert zactor.get(make.remote(ITEM), timeout=60).shape == (ITEM // 8,)


@pytest.mark.timeout(120)
def test_spilling_goes_to_the_directory_named_by_ray_s_system_config(fresh_driver, tmp_path):
    config = {"object_spilling_config": json.dumps(
        {"type": "filesystem", "params": {"directory_path": str(tmp_path)}})}
    zactor.init(num_cpus=1, object_store_memory=STORE, _system_config=config)
    refs = [zactor.put(np.full(ITEM // 8, float(i))) for i in range(8)]
    spill_dir = zactor.testing.store_stats()[0]["spill_dir"]
    assert spill_dir.startswith(str(tmp_path)) and os.listdir(spill_dir)
    assert [zactor.get(r)[0] for r in refs] == [float(i) for i in range(8)]
    del refs
    zactor.shutdown()
    assert not os.path.exists(spill_dir), "shutdown removes the session's spill directory"


KILLED_DRIVER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import zactor, zactor.testing

    zactor.init(num_cpus=1, object_store_memory=64 << 20)
    refs = [zactor.put(np.full(2 << 20, float(i))) for i in range(10)]
    stats = zactor.testing.store_stats()[0]
    print(json.dumps({"spill_dir": stats["spill_dir"], "on_disk": stats["objects_on_disk"],
                      "shm_dir": zactor._state.core.welcome["shm_dir"]}), flush=True)
    sys.stdin.read()
    """
)


@pytest.mark.timeout(120)
def test_a_sigkilled_driver_leaves_no_spill_files(tmp_path):
    env = {**os.environ, "ZACTOR_SPILL_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_DRIVER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        report = json.loads(proc.stdout.readline())
        assert report["on_disk"] >= 6 and os.listdir(report["spill_dir"])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wait_until(lambda: not os.path.exists(report["spill_dir"]) and
               not os.path.exists(report["shm_dir"]), timeout=20,
               message="the killed driver's spill and shm directories to be removed")
