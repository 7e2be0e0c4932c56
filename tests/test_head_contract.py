"""Two promises of DESIGN §2: the head never unpickles user payloads, and a function is
shipped to the head once per driver, however often it is called."""

from __future__ import annotations

import pytest
from unpickle_probe import Witness

import zactor
import zactor.testing

pytestmark = pytest.mark.usefixtures("cluster")


@zactor.remote
def echo(x):
    return x


@pytest.mark.timeout(60)
def test_the_head_never_unpickles_arguments_or_results(tmp_path):
    path = str(tmp_path / "unpicklers")
    out = zactor.get(echo.remote(Witness(path)), timeout=30)  # argument and result
    assert isinstance(out, Witness)
    zactor.get(echo.remote(zactor.put(Witness(path))), timeout=30)  # a put object too
    with open(path) as f:
        pids = {int(p) for p in f.read().split()}
    assert pids, "somebody unpickled the witness"
    assert zactor.testing.head_pid() not in pids


@zactor.remote
def shipped_once(i):
    return i


@pytest.mark.timeout(60)
def test_a_function_is_registered_once_however_often_it_is_called():
    before = zactor.testing.head_stats()
    assert zactor.get([shipped_once.remote(i) for i in range(200)], timeout=30) == \
        list(range(200))
    assert zactor.get(shipped_once.options(num_cpus=0.5).remote(1), timeout=30) == 1
    after = zactor.testing.head_stats()
    assert after["functions"] == before["functions"] + 1
    assert after["functions_received"] == before["functions_received"] + 1, \
        "201 calls shipped the function once"
