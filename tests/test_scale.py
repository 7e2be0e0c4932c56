"""Scale: many tasks in flight, many actors."""

from __future__ import annotations

import pytest

import zactor

pytestmark = pytest.mark.usefixtures("cluster")


@zactor.remote
def inc(x):
    return x + 1


@zactor.remote
class Cell:
    def __init__(self, i):
        self.i = i

    def value(self):
        return self.i


@pytest.mark.timeout(120)
def test_a_thousand_tasks_in_flight_then_get_all():
    refs = [inc.remote(i) for i in range(1000)]
    assert len(set(refs)) == 1000
    assert zactor.get(refs, timeout=100) == list(range(1, 1001))


@pytest.mark.timeout(120)
def test_a_thousand_chained_object_refs_resolve():
    refs = [zactor.put(i) for i in range(1000)]
    assert zactor.get([inc.remote(r) for r in refs], timeout=100) == list(range(1, 1001))


@pytest.mark.timeout(150)
def test_fifty_actors_created_and_each_called():
    cells = [Cell.remote(i) for i in range(50)]
    assert zactor.get([c.value.remote() for c in cells], timeout=120) == list(range(50))
    for c in cells:
        zactor.kill(c)
