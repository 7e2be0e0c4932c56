"""Which node has a copy of each large object, and the pulls that make new copies.

A process reads a large object only from its own node's store (a node never maps another
node's files, even where the machines share a file system). When a process on node B needs an
object stored on node A, the head asks B's agent to pull it from A (zactor.node.transfer); once
B reports the copy, the processes waiting for it get its location on B. The copy is kept (in
the entry's ``copies``) while the object lives, so later readers on B need no pull, and it is
freed with the object.

A pull that fails because A died or lost the object makes the object lost: it is rebuilt from
its lineage or its readers get ObjectLostError (zactor.head.tasks.TaskManager.object_lost).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from zactor.exceptions import ObjectLostError
from zactor.protocol import Msg, encode

if TYPE_CHECKING:
    from zactor.head.broker import Broker
    from zactor.head.objects import ObjectEntry

log = logging.getLogger(__name__)


class Transfers:
    def __init__(self, head: Broker) -> None:
        self.head = head
        # (object id, destination node id) -> keys of clients waiting for the copy there
        self.waiting: dict[tuple[bytes, bytes], list[bytes]] = {}
        self.pulls_started = 0

    def loc_on(self, entry: ObjectEntry, node) -> list | None:
        """The location of ``entry``'s value that a process on ``node`` may read; None if
        that node has no copy yet."""
        home = entry.node or self.head.head_node
        if node is None or node is home:
            return entry.loc
        copies = entry.copies
        if copies:
            return copies.get(node)
        return None

    def remote_loc(self, entry: ObjectEntry) -> list:
        """Where a process on no node, or on a node without a copy, finds ``entry``'s value:
        ``["@", its node's transfer address, its loc]`` (zactor._client reads it)."""
        return ["@", self.head.transfer_address_of(entry.node or self.head.head_node),
                entry.loc]

    def want(self, oid: bytes, entry: ObjectEntry, node, client_key: bytes | None) -> None:
        """Have ``node`` pull a copy; tell ``client_key`` (if any) its location when it is
        there."""
        key = (oid, node.node_id)
        waiting = self.waiting.get(key)
        if waiting is None:
            waiting = self.waiting[key] = []
            home = entry.node or self.head.head_node
            source = self.head.transfer_address_of(home)
            if not home.alive or source is None:
                del self.waiting[key]
                self._lost(oid, client_key, f"the node {home.node_id.hex()[:12]} holding it "
                           "is dead")
                return
            self.pulls_started += 1
            self.head.pull_to(node, oid, entry.loc[1], source, entry.loc)
        if client_key is not None and client_key not in waiting:
            waiting.append(client_key)

    def pulled(self, node, oid: bytes, loc: list | None, why: str | None) -> None:
        """``node``'s agent finished a pull: record the copy and answer who waited."""
        waiting = self.waiting.pop((oid, node.node_id), [])
        entry = self.head.objects.entries.get(oid)
        if loc is None:
            log.info("pulling object %s to node %s failed: %s", oid.hex(),
                     node.node_id.hex()[:12], why)
            for key in waiting or [None]:
                self._lost(oid, key, why or "the pull failed")
            return
        if entry is None or entry.status is None or entry.loc is None:
            self.head.store_of(node).free_object(loc)  # freed while it travelled
            return
        if entry.copies is None:
            entry.copies = {}
        old = entry.copies.get(node)
        if old is not None and old != loc:
            self.head.store_of(node).free_object(old)
        entry.copies[node] = loc
        header = encode(Msg.OBJECT, oid, entry.status, loc)
        for key in waiting:
            self.head.send(key + b"<", header)

    def _lost(self, oid: bytes, client_key: bytes | None, why: str) -> None:
        head = self.head
        entry = head.objects.entries.get(oid)
        client = head.clients.get(client_key) if client_key is not None else None
        if entry is None or entry.status is None:
            if client is not None:
                head.subscribe(client, oid)
            return
        home = entry.node or head.head_node
        if home.alive and head.holds_copy(entry):
            # The holder has it, yet it could not be copied (no room where it is needed):
            # its readers there fail rather than wait for ever.
            if client is not None:
                head.send_error_object(client, oid, ObjectLostError(
                    f"Object {oid.hex()} could not be copied to the node that needs it: "
                    f"{why}"))
            return
        head.tasks.rebuild_lost(oid, why)
        if client is not None:
            head.subscribe(client, oid)  # the rebuilt value, or the error saying why not

    def node_died(self, node) -> None:
        """Forget the copies on a dead node, and let a copy elsewhere become the home of an
        object that lived there; pulls to it are dropped, pulls from it fail."""
        for key in [k for k in self.waiting if k[1] == node.node_id]:
            del self.waiting[key]
        for entry in self.head.objects.entries.values():
            copies = entry.copies
            if not copies:
                continue
            copies.pop(node, None)
            if entry.node is node:
                alive = next(((n, loc) for n, loc in copies.items() if n.alive), None)
                if alive is not None:
                    entry.node, entry.loc = alive
                    del copies[alive[0]]
