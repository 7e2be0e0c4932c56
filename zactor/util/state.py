"""The state of a running cluster, at Ray's path (``ray.util.state``): its objects.

Works from any process on the machine: inside a driver it asks that driver's cluster; from
elsewhere (``address="auto"``, the default) it finds this user's newest running cluster and
asks it over a short-lived connection that submits nothing.

Example::

    from zactor.util.state import list_objects, memory_summary
    print(memory_summary())                     # what `zactor memory` prints
    big = [o for o in list_objects() if o["size"] > 10 << 20]
"""

from __future__ import annotations

from typing import Any

from zactor import _state
from zactor._tables import human_bytes, table

__all__ = ["list_objects", "memory_summary", "summarize_objects"]

GROUPS = ("node", "owner")


def _ask(what: str, address: str | None) -> Any:
    core = _state.core
    driver = _state.driver
    if core is not None and (address in (None, "auto") or
                             (driver is not None and address == driver.address)):
        return core.request(what)
    from zactor._client import CoreClient
    from zactor._session import find_local_head

    target = find_local_head() if address in (None, "auto") else address
    client = CoreClient(target, "observer", connect_timeout=10.0)
    try:
        return client.request(what)
    finally:
        client.close(goodbye=(False,))


def list_objects(address: str | None = "auto", *, limit: int | None = None) -> list[dict]:
    """Every object of the cluster, largest first: ``object_id``, ``size`` (bytes),
    ``where`` ("inline" in the head, "shared memory", "spilled to disk", "pending"),
    ``references`` (the processes holding it, the pending tasks it is an argument of, the
    objects it is nested in), ``pinned`` (a process is reading it, so it cannot be spilled),
    ``owner`` (who made it) and ``node``."""
    objects = _ask("memory", address)["objects"]
    return objects if limit is None else objects[:limit]


def summarize_objects(address: str | None = "auto") -> list[dict]:
    """Totals per node: objects, and count and bytes by where they are; the store's use."""
    return _ask("memory", address)["nodes"]


def memory_summary(address: str | None = "auto", *, group_by: str = "node",
                   limit: int | None = None) -> str:
    """``zactor memory`` as a string: a table of the objects, grouped by node or by owner,
    largest first, then totals per node."""
    if group_by not in GROUPS:
        raise ValueError(f"group_by must be one of {GROUPS}, got {group_by!r}")
    report = _ask("memory", address)
    objects = report["objects"]
    out = []
    groups: dict[str, list[dict]] = {}
    for obj in objects:
        groups.setdefault(obj[group_by], []).append(obj)
    total = sum(o["size"] for o in objects)
    out.append(f"{len(objects)} object(s), {human_bytes(total)} in all, grouped by {group_by}")
    for key, members in sorted(groups.items(), key=lambda kv: -sum(o["size"] for o in kv[1])):
        label = f"node {key[:12]}" if group_by == "node" else f"owner: {key}"
        shown = members if limit is None else members[:limit]
        out.append("")
        out.append(f"== {label}: {len(members)} object(s), "
                   f"{human_bytes(sum(o['size'] for o in members))}")
        rows = [[o["object_id"], human_bytes(o["size"]), o["where"],
                 "yes" if o["pinned"] else "no",
                 o["owner"] if group_by != "owner" else o["node"][:12],
                 "; ".join(o["references"]) or "-"] for o in shown]
        fourth = "OWNER" if group_by != "owner" else "NODE"
        out.append(table(["OBJECT ID", "SIZE", "WHERE", "PINNED", fourth, "REFERENCED BY"],
                         rows, right={1}))
        if len(shown) < len(members):
            out.append(f"... and {len(members) - len(shown)} more")
    out.append("")
    out.append("== totals per node")
    rows = []
    for node in report["nodes"]:
        by = node["by_where"]

        def cell(where: str, by: dict = by) -> str:
            count, size = by.get(where, (0, 0))
            return f"{count} / {human_bytes(size)}"

        rows.append([node["node"][:12], node["objects"], cell("inline"), cell("shared memory"),
                     cell("spilled to disk"),
                     f"{human_bytes(node['store_used'])} / "
                     f"{human_bytes(node['store_capacity'])}"])
    out.append(table(["NODE", "OBJECTS", "INLINE", "SHARED MEMORY", "SPILLED", "STORE USED"],
                     rows, right={1, 2, 3, 4, 5}))
    return "\n".join(out)
