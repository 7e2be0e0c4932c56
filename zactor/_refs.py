"""Process-local reference counting of objects and actor handles (DESIGN §4, Lifetime).

Creating and dropping ``ObjectRef``/``ActorHandle`` objects only appends to a deque: ``__del__``
can run in any thread at any moment (even inside a send), so it must never lock or send.
``RefTracker.drain`` runs where sending is safe and folds the events into what the head needs
to hear: which keys this process *started* holding (ADD) and which it *stopped* holding (DEL),
judged by its count before and after the batch.

The head counts holders, not references: a process holds a key or it does not. So only the
net change over a batch matters. A batch in which a process drops its last reference and then
receives the same key again (a borrowed ref that arrives once more nested in an argument) says
nothing to the head; reporting it as a DEL and an ADD would make this process forget a value it
is about to read, which is how such a ref used to hang.

Keys made by their owner (``remote``, ``put``, ``get_actor``) are marked as held by the head
when it handles the message or request that made them, so their first appearance adds nothing.
"""

from __future__ import annotations

import collections

OWN, BORROW, DROP = 0, 1, 2


class RefTracker:
    def __init__(self) -> None:
        self.object_events: collections.deque = collections.deque()
        self.actor_events: collections.deque = collections.deque()
        self.object_counts: dict[bytes, int] = {}
        self.actor_counts: dict[bytes, int] = {}
        self.has_borrow = False
        #: [task id, first item not taken, items known] of each ObjectRefGenerator dropped.
        self.closed_streams: collections.deque = collections.deque()

    def drain(self) -> tuple[list, list, list, list, list]:
        """Fold pending events; return (object adds, object dels, actor adds, actor dels,
        closed streams)."""
        self.has_borrow = False
        oa, od = _fold(self.object_events, self.object_counts)
        aa, ad = _fold(self.actor_events, self.actor_counts)
        streams = []
        while self.closed_streams:
            streams.append(self.closed_streams.popleft())
        return oa, od, aa, ad, streams

    def pending(self) -> int:
        return len(self.object_events) + len(self.actor_events) + len(self.closed_streams)

    def clear(self) -> None:
        self.object_events.clear()
        self.actor_events.clear()
        self.object_counts.clear()
        self.actor_counts.clear()
        self.closed_streams.clear()
        self.has_borrow = False


def _fold(events: collections.deque, counts: dict) -> tuple[list, list]:
    adds: list = []
    dels: list = []
    # key -> [count before the batch, whether the head marked it held during the batch]
    touched: dict = {}
    pop = events.popleft
    while events:
        code, key = pop()
        n = counts.get(key, 0)
        seen = touched.get(key)
        if seen is None:
            seen = touched[key] = [n, False]
        if code == DROP:
            if n <= 1:
                counts.pop(key, None)
            else:
                counts[key] = n - 1
        else:
            if code == OWN:
                seen[1] = True
            counts[key] = n + 1
    for key, (before, marked) in touched.items():
        after = key in counts
        if before == 0:
            if after:
                if not marked:
                    adds.append(key)
            elif marked:
                dels.append(key)  # made here and dropped within the batch
        elif not after:
            dels.append(key)
    return adds, dels


#: The tracker of this process; ObjectRef and ActorHandle report to it.
tracker = RefTracker()
