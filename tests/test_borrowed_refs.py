"""Refs received nested in arguments (borrowed), again and again: never a hang.

A process that drops its last reference to an object and then receives the same ref once more
(the next call's argument) used to report that as a release *and* a new reference in one batch,
forget the value it was about to read, and wait for ever. These run the same ref through the
same process many times, from tasks, actors and both at once.
"""

from __future__ import annotations

import pytest

import zactor
from zactor._refs import BORROW, DROP, OWN, RefTracker

pytestmark = pytest.mark.usefixtures("cluster")

ROUNDS = 25


@zactor.remote
def first_of(boxed):
    return zactor.get(boxed[0])


@zactor.remote
def from_dict(d):
    return zactor.get(d["ref"]) + 1


@zactor.remote
def hand_on(boxed, depth):
    """Pass the borrowed ref on to a child task, ``depth`` levels down."""
    if depth == 0:
        return zactor.get(boxed[0])
    return zactor.get(hand_on.remote(boxed, depth - 1))


@zactor.remote
class Reader:
    def use(self, boxed):
        return zactor.get(boxed[0])

    def keep(self, boxed):
        self.kept = boxed[0]
        return True

    def read_kept(self):
        return zactor.get(self.kept)


def test_the_same_nested_ref_reaches_an_actor_again_and_again():
    reader = Reader.remote()
    ref = zactor.put(7)
    assert [zactor.get(reader.use.remote([ref]), timeout=10) for _ in range(ROUNDS)] == \
        [7] * ROUNDS


def test_the_same_nested_ref_reaches_tasks_again_and_again():
    ref = zactor.put(11)
    for i in range(ROUNDS):
        assert zactor.get(first_of.remote([ref]), timeout=10) == 11, f"round {i}"


def test_tasks_and_an_actor_read_the_same_nested_ref_at_once():
    reader = Reader.remote()
    ref = zactor.put(3)
    for i in range(ROUNDS):
        got = zactor.get([first_of.remote([ref]), first_of.remote([ref]),
                          from_dict.remote({"ref": ref}), reader.use.remote([ref])], timeout=10)
        assert got == [3, 3, 4, 3], f"round {i}"


def test_a_nested_ref_handed_on_three_levels_down():
    ref = zactor.put("deep")
    for _ in range(5):
        assert zactor.get(hand_on.remote([ref], 3), timeout=30) == "deep"


def test_an_actor_keeps_a_borrowed_ref_the_driver_dropped():
    reader = Reader.remote()
    ref = zactor.put([1, 2, 3])
    assert zactor.get(reader.keep.remote([ref]), timeout=10)
    del ref
    # The driver's release and the actor's hold both reach the head; the object stays.
    for _ in range(5):
        assert zactor.get(reader.read_kept.remote(), timeout=10) == [1, 2, 3]


# -- the fold itself ------------------------------------------------------------------------


def fold(events, counts=None):
    tracker = RefTracker()
    if counts:
        tracker.object_counts.update(counts)
    tracker.object_events.extend(events)
    adds, dels, _, _, _ = tracker.drain()
    return adds, dels, tracker.object_counts


def test_fold_drop_then_borrow_again_in_one_batch_says_nothing():
    adds, dels, counts = fold([(DROP, b"k"), (BORROW, b"k")], {b"k": 1})
    assert (adds, dels) == ([], []) and counts == {b"k": 1}


def test_fold_reports_first_borrow_and_last_drop():
    assert fold([(BORROW, b"k")])[:2] == ([b"k"], [])
    assert fold([(DROP, b"k")], {b"k": 1})[:2] == ([], [b"k"])
    assert fold([(BORROW, b"k"), (BORROW, b"k"), (DROP, b"k")])[:2] == ([b"k"], [])


def test_fold_owned_keys_are_never_added_but_are_released():
    assert fold([(OWN, b"k")])[:2] == ([], [])
    assert fold([(OWN, b"k"), (DROP, b"k")])[:2] == ([], [b"k"])
    # borrowed and dropped within one batch: the head never heard of it
    assert fold([(BORROW, b"k"), (DROP, b"k")])[:2] == ([], [])
