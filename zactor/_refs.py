"""Process-local reference counting of objects and actor handles (DESIGN §4, Lifetime).

Creating and dropping ``ObjectRef``/``ActorHandle`` objects only appends to a deque: ``__del__``
can run in any thread at any moment (even inside a send), so it must never lock or send.
``RefTracker.drain`` runs where sending is safe and turns the events into the transitions the
head needs: a borrowed reference's first appearance (ADD) and any reference's last drop (DEL).
References made by their owner (``remote``, ``put``) are already counted by the head when it
receives the message that made them, so they add nothing.
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

    def drain(self) -> tuple[list, list, list, list]:
        """Fold pending events; return (object adds, object dels, actor adds, actor dels)."""
        oa, od = self._fold(self.object_events, self.object_counts)
        aa, ad = self._fold(self.actor_events, self.actor_counts)
        self.has_borrow = False
        return oa, od, aa, ad

    @staticmethod
    def _fold(events: collections.deque, counts: dict) -> tuple[list, list]:
        adds: list = []
        dels: list = []
        pop = events.popleft
        while events:
            code, key = pop()
            n = counts.get(key, 0)
            if code == DROP:
                if n <= 1:
                    counts.pop(key, None)
                    dels.append(key)
                else:
                    counts[key] = n - 1
            else:
                if n == 0 and code == BORROW:
                    adds.append(key)
                counts[key] = n + 1
        return adds, dels

    def pending(self) -> int:
        return len(self.object_events) + len(self.actor_events)


#: The tracker of this process; ObjectRef and ActorHandle report to it.
tracker = RefTracker()
