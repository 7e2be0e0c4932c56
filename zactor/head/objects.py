"""The object directory: where each object's value is, who holds it, who waits for it.

The head stores small values as the opaque blobs it received and large ones as their location
in the node's object store (zactor.node.store); it never unpickles either. An object is freed
when nothing refers to it: no process holds a reference, no pending task needs it and no live
object contains it.
"""

from __future__ import annotations

from collections.abc import Callable


class ObjectEntry:
    __slots__ = ("status", "loc", "blob", "refs", "subscribers", "waiting_tasks", "owner",
                 "contained", "contained_actors", "node", "freed", "creator", "copies")

    def __init__(self, owner: bytes | None) -> None:
        self.creator = owner  # the client that made it (``zactor memory`` shows it)
        self.status: int | None = None  # None while pending
        self.loc = None
        self.blob = None
        self.refs = 0
        self.subscribers: list[bytes] | None = None
        self.waiting_tasks: list | None = None
        self.owner = owner
        self.contained: list[bytes] = ()  # type: ignore[assignment]
        self.contained_actors: list[bytes] = ()  # type: ignore[assignment]
        self.node = None
        self.freed = False
        # Copies pulled to other nodes than ``node`` (zactor.head.transfers): node -> loc.
        self.copies: dict | None = None

    @property
    def ready(self) -> bool:
        return self.status is not None


class ObjectDirectory:
    """Reference counts and values of every live object in the cluster."""

    def __init__(self, on_free_copy: Callable[[object, list], None],
                 on_release_actor: Callable[[bytes], None]) -> None:
        self.entries: dict[bytes, ObjectEntry] = {}
        self._on_free_copy = on_free_copy  # (node, loc): give a stored copy's memory back
        self._on_release_actor = on_release_actor
        #: Called with the id of each freed object while any task's lineage is kept.
        self.on_freed: Callable[[bytes], None] | None = None
        self.freed_count = 0

    def create(self, object_id: bytes, owner: bytes | None, holds: set | None) -> ObjectEntry:
        """A pending object made by ``owner`` (a task return or a put), held by it."""
        entry = self.entries.get(object_id)
        if entry is None:
            entry = self.entries[object_id] = ObjectEntry(owner)
        elif entry.creator is None:
            entry.creator = owner
        if holds is None:
            entry.refs += 1
        elif object_id not in holds:
            holds.add(object_id)
            entry.refs += 1
        return entry

    def pending(self, object_id: bytes) -> ObjectEntry:
        """A pending object nobody holds yet (being rebuilt for a task that will pin it)."""
        entry = self.entries.get(object_id)
        if entry is None:
            entry = self.entries[object_id] = ObjectEntry(None)
        return entry

    def restore(self, object_id: bytes, status: int, blob) -> ObjectEntry:
        """An inline value brought back from a lineage record, held by nobody yet."""
        entry = self.pending(object_id)
        entry.status = status
        entry.blob = blob
        return entry

    def discard_unheld(self, object_id: bytes) -> None:
        """Forget an entry made by pending() or restore() that nothing came to hold."""
        entry = self.entries.get(object_id)
        if entry is None or entry.refs > 0:
            return
        if entry.ready:
            self._free(object_id, entry)
        else:
            del self.entries[object_id]

    def add_ref(self, object_id: bytes, holds: set | None = None) -> bool:
        """Count one more reference: a pin (``holds`` None) or a process that starts holding
        the object (``holds``, the set of what that process holds: holding twice is holding).
        False if the object does not exist."""
        entry = self.entries.get(object_id)
        if entry is None:
            return False
        if holds is not None:
            if object_id in holds:
                return True
            holds.add(object_id)
        entry.refs += 1
        return True

    def release(self, object_id: bytes, holds: set | None = None) -> None:
        if holds is not None:
            if object_id not in holds:
                return  # a release this client never took: ignore it
            holds.discard(object_id)
        entry = self.entries.get(object_id)
        if entry is None:
            return
        entry.refs -= 1
        if entry.refs <= 0 and entry.ready:
            self._free(object_id, entry)

    def release_all(self, holds: set) -> None:
        for object_id in list(holds):
            self.release(object_id, holds)

    def set_value(self, object_id: bytes, status: int, loc, blob, contained, contained_actors,
                  node) -> ObjectEntry | None:
        """Record a value; return the entry, or None if it was already set (a task that ran
        twice delivers its first result only) or nobody wants it any more."""
        entry = self.entries.get(object_id)
        if entry is None:
            entry = self.entries[object_id] = ObjectEntry(None)
        elif entry.ready:
            self.discard_copy(object_id, node, loc)  # a duplicate: its copy is not needed
            return None
        entry.status = status
        entry.loc = loc
        entry.blob = blob
        entry.node = node
        if contained:
            entry.contained = contained
            for inner in contained:
                self.add_ref(inner)
        if contained_actors:
            entry.contained_actors = contained_actors
        if entry.refs <= 0:
            self._free(object_id, entry)
            return entry
        return entry

    def _free(self, object_id: bytes, entry: ObjectEntry) -> None:
        if entry.freed:
            return
        entry.freed = True
        del self.entries[object_id]
        self.freed_count += 1
        if entry.loc is not None:
            self._on_free_copy(entry.node, entry.loc)
        if entry.copies:
            self._free_copies(entry)
        for inner in entry.contained:
            self.release(inner)
        for actor_id in entry.contained_actors:
            self._on_release_actor(actor_id)
        if self.on_freed is not None:
            self.on_freed(object_id)

    def _free_copies(self, entry: ObjectEntry) -> None:
        copies, entry.copies = entry.copies, None
        for node, loc in copies.items():
            self._on_free_copy(node, loc)

    def discard_copy(self, object_id: bytes, node, loc) -> None:
        """Free a stored result nobody will read, unless it is the live value's own."""
        if loc is None:
            return
        entry = self.entries.get(object_id)
        if entry is not None and entry.loc == loc:
            return
        self._on_free_copy(node, loc)

    def relocate(self, object_id: bytes, loc: list, node=None) -> None:
        """The object's stored copy on ``node`` moved (it was spilled to disk)."""
        entry = self.entries.get(object_id)
        if entry is None or entry.loc is None:
            return
        if entry.copies and node in entry.copies and node is not entry.node:
            entry.copies[node] = loc
        else:
            entry.loc = loc

    def reset(self, object_id: bytes) -> ObjectEntry | None:
        """Make a ready object pending again, to be rebuilt (its copy is lost)."""
        entry = self.entries.get(object_id)
        if entry is None or entry.status is None:
            return entry
        for inner in entry.contained:
            self.release(inner)
        if entry.loc is not None:
            self._on_free_copy(entry.node, entry.loc)  # whatever is left of it
        if entry.copies:
            self._free_copies(entry)
        entry.status = entry.loc = entry.blob = None
        entry.contained = ()
        return entry
