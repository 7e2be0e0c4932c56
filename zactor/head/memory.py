"""What ``zactor memory`` shows: every object of the cluster, where it is and who needs it.

Built on request from the head's own tables (it costs a pass over the objects and what each
client holds); nothing here is kept up to date on the hot paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zactor.protocol import S

if TYPE_CHECKING:
    from zactor.head.broker import Broker
    from zactor.head.records import Client


def describe(client: Client | None, key: bytes | None = None) -> str:
    """A process in words: ``driver pid 12``, ``actor Counter pid 13``, ``worker pid 14``."""
    if client is None:
        return "(exited)" if key else "-"
    if client.kind != "worker":
        return f"{client.kind} pid {client.pid}"
    worker = client.worker
    if worker is not None and worker.actor is not None:
        return f"actor {worker.actor.class_name} pid {client.pid}"
    if worker is not None and worker.task is not None:
        return f"worker pid {client.pid} ({worker.task.spec[S.NAME]})"
    return f"worker pid {client.pid}"


def report(head: Broker) -> dict[str, Any]:
    clients = head.clients
    holders: dict[bytes, list[str]] = {}
    for client in clients.values():
        who = describe(client)
        for oid in client.holds:
            holders.setdefault(oid, []).append(who)
    task_pins: dict[bytes, int] = {}
    for task in head.tasks.tasks.values():
        for oid in (*task.spec[S.DEPS], *task.spec[S.CONTAINED]):
            task_pins[oid] = task_pins.get(oid, 0) + 1
    for actor in head.actors.actors.values():
        if actor.args_pinned and actor.state != "dead":
            for oid in (*actor.create.spec[S.DEPS], *actor.create.spec[S.CONTAINED]):
                task_pins[oid] = task_pins.get(oid, 0) + 1
    inside: dict[bytes, list[str]] = {}
    entries = head.objects.entries
    for oid, entry in entries.items():
        for inner in entry.contained:
            inside.setdefault(inner, []).append(oid.hex())
    head_node = next(iter(head.scheduler.nodes.values()), None)
    objects = []
    for oid, entry in entries.items():
        node = entry.node or head_node
        store = node.agent.store if node is not None else None
        loc = entry.loc
        if entry.status is None:
            where, size, read = "pending", 0, False
        elif loc is None:
            where, size, read = "inline", len(entry.blob or b""), False
        else:
            where = "shared memory" if len(loc) > 2 else "spilled to disk"
            size = int(loc[1])
            read = store is not None and store.being_read(loc)
        refs = list(holders.get(oid, ()))
        pins = task_pins.get(oid, 0)
        if pins:
            refs.append(f"argument of {pins} task(s)")
        refs.extend(f"inside {outer}" for outer in inside.get(oid, ()))
        objects.append({
            "object_id": oid.hex(), "size": size, "where": where, "references": refs,
            "pinned": read, "owner": describe(clients.get(entry.creator), entry.creator),
            "node": node.node_id.hex() if node is not None else "",
            "status": "error" if entry.status == 1 else "ok" if entry.ready else "pending",
        })
    objects.sort(key=lambda o: o["size"], reverse=True)
    nodes = []
    for node in head.scheduler.nodes.values():
        mine = [o for o in objects if o["node"] == node.node_id.hex()]
        by_where: dict[str, list[int]] = {}
        for o in mine:
            count_bytes = by_where.setdefault(o["where"], [0, 0])
            count_bytes[0] += 1
            count_bytes[1] += o["size"]
        stats = node.agent.store.stats()
        nodes.append({"node": node.node_id.hex(), "objects": len(mine), "by_where": by_where,
                      "store_capacity": stats["capacity"], "store_used": stats["used"]})
    return {"objects": objects, "nodes": nodes}
