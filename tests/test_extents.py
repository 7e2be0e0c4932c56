"""The arena's free-space map, driven by random allocate/free sequences (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from zactor._store_layout import PAGE
from zactor.node.extents import FreeExtents

CAPACITY = 64 * PAGE

ops = st.lists(st.one_of(
    st.tuples(st.just("alloc"), st.integers(1, 24).map(lambda n: n * PAGE)),
    st.tuples(st.just("free"), st.integers(0, 1000), st.booleans()),
    st.tuples(st.just("trim"), st.just(0)),
), max_size=80)


def check(free: FreeExtents, taken: dict[int, int]) -> None:
    extents = list(free)
    assert [e.offset for e in extents] == sorted(e.offset for e in extents)
    for a, b in zip(extents, extents[1:], strict=False):
        assert a.offset + a.size <= b.offset, "free extents overlap"
        if a.offset + a.size == b.offset:
            assert (a.hot, a.clean) != (b.hot, b.clean), "neighbours of one kind not merged"
    assert free.free_bytes == sum(e.size for e in extents)
    spans = sorted([(e.offset, e.size) for e in extents] + list(taken.items()))
    pos = 0
    for offset, size in spans:
        assert offset == pos, "free and allocated spans must tile the arena exactly"
        pos += size
    assert pos == CAPACITY


@settings(max_examples=300, deadline=None)
@given(ops)
def test_free_and_allocated_spans_always_tile_the_arena(sequence):
    free = FreeExtents(CAPACITY)
    taken: dict[int, int] = {}
    hot: dict[int, bool] = {}
    written: set[int] = set()
    now = 0.0
    for op in sequence:
        now += 1.0
        if op[0] == "alloc":
            got = free.allocate(op[1])
            if got is None:
                assert all(e.size < op[1] for e in free) and \
                    not _run_exists(free, op[1]), "a fitting run was refused"
                continue
            offset, is_hot = got
            if is_hot:
                assert all(p in written for p in range(offset, offset + op[1], PAGE)), \
                    "a hot extent must have every page written"
            taken[offset] = op[1]
            hot[offset] = is_hot
        elif op[0] == "free" and taken:
            offset = sorted(taken)[op[1] % len(taken)]
            size = taken.pop(offset)
            if op[2]:  # its writer filled it
                written.update(range(offset, offset + size, PAGE))
            free.free(offset, size, hot=op[2], clean=False, now=now)
        elif op[0] == "trim":
            for extent in free.idle_unclean(now):
                written.difference_update(range(extent.offset, extent.offset + extent.size,
                                                PAGE))
                free.mark_trimmed(extent)
        check(free, taken)


def _run_exists(free: FreeExtents, size: int) -> bool:
    total, end = 0, None
    for e in free:
        total = total + e.size if end == e.offset else e.size
        end = e.offset + e.size
        if total >= size:
            return True
    return False


def test_a_hot_region_freed_next_to_cold_space_stays_hot():
    free = FreeExtents(CAPACITY)
    offset, hot = free.allocate(4 * PAGE)
    assert not hot
    free.free(offset, 4 * PAGE, hot=True, clean=False, now=1.0)
    assert free.allocate(4 * PAGE) == (offset, True)
