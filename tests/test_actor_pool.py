"""zactor.util.ActorPool: Ray's helper for spreading work over a fixed set of actors."""

from __future__ import annotations

import pytest

import zactor
from zactor.util import ActorPool

pytestmark = pytest.mark.usefixtures("cluster")


@zactor.remote
class Doubler:
    def __init__(self, tag):
        self.tag = tag
        self.calls = 0

    def double(self, x):
        self.calls += 1
        return 2 * x

    def tagged(self, x):
        return self.tag, x

    def call_count(self):
        return self.calls


@pytest.fixture
def actors():
    return [Doubler.remote(i) for i in range(2)]


def test_map_returns_results_in_input_order(actors):
    pool = ActorPool(actors)
    results = list(pool.map(lambda a, v: a.double.remote(v), range(10)))
    assert results == [2 * v for v in range(10)]


def test_map_spreads_work_over_all_actors(actors):
    pool = ActorPool(actors)
    tags = [tag for tag, _ in pool.map(lambda a, v: a.tagged.remote(v), range(20))]
    assert set(tags) == {0, 1}
    counts = zactor.get([a.call_count.remote() for a in actors])
    assert counts == [0, 0]  # tagged() does not count; double() does
    list(pool.map(lambda a, v: a.double.remote(v), range(6)))
    assert sum(zactor.get([a.call_count.remote() for a in actors])) == 6


def test_map_unordered_returns_every_result(actors):
    pool = ActorPool(actors)
    results = list(pool.map_unordered(lambda a, v: a.double.remote(v), range(10)))
    assert sorted(results) == [2 * v for v in range(10)]


def test_submit_and_get_next_return_results_in_submission_order(actors):
    pool = ActorPool(actors)
    for v in (5, 6, 7):
        pool.submit(lambda a, v: a.double.remote(v), v)
    assert pool.has_next()
    assert [pool.get_next(), pool.get_next(), pool.get_next()] == [10, 12, 14]
    assert not pool.has_next()


def test_get_next_unordered_returns_each_result_once(actors):
    pool = ActorPool(actors)
    for v in range(4):
        pool.submit(lambda a, v: a.double.remote(v), v)
    results = []
    while pool.has_next():
        results.append(pool.get_next_unordered())
    assert sorted(results) == [0, 2, 4, 6]


def test_get_next_without_pending_work_raises_stop_iteration(actors):
    pool = ActorPool(actors)
    assert not pool.has_next()
    with pytest.raises(StopIteration):
        pool.get_next()


def test_submitting_more_work_than_actors_queues_it(actors):
    pool = ActorPool(actors[:1])
    for v in range(5):
        pool.submit(lambda a, v: a.double.remote(v), v)
    assert [pool.get_next() for _ in range(5)] == [0, 2, 4, 6, 8]
