"""Placement groups (DESIGN §5): bundles of resources reserved on nodes, all or none, that
tasks and actors of the group then run in.

A group is placed as a whole, by its strategy, on a trial copy of the nodes' free
resources; only a complete placement is taken from the nodes. Until then it is PENDING (and
counts as unmet demand); one that no set of live nodes could ever hold is announced to the
drivers, and waits still, as in Ray. Each placed bundle is a :class:`Bundle`: the resources
it took from its node, which its tasks and actors take from and give back to in turn
(zactor.head.scheduler places them). When a node dies its bundles are placed again
(RESCHEDULING), the group's other bundles kept where they are; their actors restart in
them as their max_restarts allow. Removing a group ends its actors and running tasks,
fails its queued ones, and gives its resources back. A group dies with the driver that made
it unless ``lifetime="detached"``.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from zactor.exceptions import ActorPlacementGroupRemoved, TaskPlacementGroupRemoved
from zactor.head.scheduler import EPS, Node, Resources
from zactor.protocol import S, TaskKind

if TYPE_CHECKING:
    from zactor.head.broker import Broker

log = logging.getLogger(__name__)

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
#: Removed groups the table still shows, at most (the oldest go first).
REMOVED_KEPT = 1000
PENDING, CREATED, REMOVED, RESCHEDULING = "PENDING", "CREATED", "REMOVED", "RESCHEDULING"


class Bundle(Resources):
    __slots__ = ("group", "index", "spec", "node", "assigned")

    def __init__(self, group: Group, index: int, spec: dict) -> None:
        self.group = group
        self.index = index
        self.spec = spec
        self.node: Node | None = None
        self.assigned: dict = {}  # the node's GPU ids this bundle holds
        self.available = {}
        self.gpu_ids, self.gpu_free, self.gpu_cap = [], [], []

    @property
    def host(self) -> Node | None:
        return self.node

    def reserve(self, node: Node) -> None:
        self.node = node
        self.assigned = node.acquire(self.spec)
        self.available = dict(self.spec)
        gpus = self.assigned.get("GPU", [])
        share = min(1.0, self.spec.get("GPU", 0.0))
        self.gpu_ids = list(gpus)
        self.gpu_cap = [share] * len(gpus)
        self.gpu_free = list(self.gpu_cap)

    def give_back(self) -> None:
        if self.node is not None:
            if self.node.alive:
                self.node.release(self.spec, self.assigned)
            self.node = None
        self.assigned, self.available = {}, {}
        self.gpu_ids, self.gpu_free, self.gpu_cap = [], [], []


class Group:
    __slots__ = ("pg_id", "name", "namespace", "strategy", "bundles", "state", "detached",
                 "owner", "created_at", "warned", "placed_at")

    def __init__(self, pg_id: bytes, name: str, namespace: str, strategy: str,
                 bundles: list[dict], detached: bool, owner: bytes) -> None:
        self.pg_id = pg_id
        self.name = name
        self.namespace = namespace
        self.strategy = strategy
        self.bundles = [Bundle(self, i, b) for i, b in enumerate(bundles)]
        self.state = PENDING
        self.detached = detached
        self.owner = owner
        self.created_at = time.time()
        self.warned = False
        self.placed_at: float | None = None

    def info(self) -> dict[str, Any]:
        """Ray's placement_group_table() entry."""
        return {
            "placement_group_id": self.pg_id.hex(), "name": self.name,
            "bundles": {b.index: dict(b.spec) for b in self.bundles},
            "bundles_to_node_id": {b.index: b.node.node_id.hex() for b in self.bundles
                                   if b.node is not None},
            "strategy": self.strategy, "state": self.state,
            "stats": {"scheduling_state": "FINISHED" if self.state == CREATED else
                      "REMOVED" if self.state == REMOVED else "QUEUED"},
            "detached": self.detached, "namespace": self.namespace,
        }


class PlacementGroups:
    def __init__(self, head: Broker) -> None:
        self.head = head
        self.groups: dict[bytes, Group] = {}
        self.names: dict[tuple[str, str], bytes] = {}
        self.waiting: list[Group] = []  # PENDING or RESCHEDULING, oldest first
        self.removed: collections.deque = collections.deque()  # kept for the table, a while

    # -- requests ----------------------------------------------------------------------------

    def create(self, client, args: dict) -> bytes:
        bundles = args.get("bundles")
        strategy = args.get("strategy") or "PACK"
        name = args.get("name") or ""
        lifetime = args.get("lifetime")
        if strategy not in STRATEGIES:
            raise ValueError(f"Invalid placement group strategy {strategy!r}; valid ones are "
                             f"{', '.join(STRATEGIES)}")
        if not isinstance(bundles, list) or not bundles:
            raise ValueError("The placement group `bundles` argument cannot contain an empty "
                             "list")
        for bundle in bundles:
            if not isinstance(bundle, dict) or not bundle or \
                    not any(v > 0 for v in bundle.values()):
                raise ValueError("Bundles cannot be an empty dictionary or resources with "
                                 f"only 0 values. Bundles: {bundles}")
            for key, value in bundle.items():
                if not isinstance(key, str) or isinstance(value, bool) or \
                        not isinstance(value, (int, float)) or value < 0:
                    raise ValueError(f"Bundle resource {key!r} must be a non-negative "
                                     f"number, got {value!r}")
        if lifetime not in (None, "detached"):
            raise ValueError(f"Placement group `lifetime` argument must be either `None` or "
                             f"'detached', got {lifetime!r}")
        namespace = client.namespace
        if name and (namespace, name) in self.names:
            raise ValueError(f"Failed to create placement group '{name}' because name is "
                             "already taken")
        group = Group(os.urandom(18), name, namespace, strategy,
                      [{k: float(v) for k, v in b.items() if v} for b in bundles],
                      lifetime == "detached", client.key)
        self.groups[group.pg_id] = group
        if name:
            self.names[(namespace, name)] = group.pg_id
        self.waiting.append(group)
        self.place_waiting()
        return group.pg_id

    def remove(self, pg_id: bytes) -> bool:
        group = self.groups.get(pg_id)
        if group is None:
            raise ValueError(f"Placement group {pg_id.hex()} does not exist")
        if group.state == REMOVED:
            return False
        group.state = REMOVED
        if group in self.waiting:
            self.waiting.remove(group)
        if group.name:
            self.names.pop((group.namespace, group.name), None)
        self._end_work(group)
        for bundle in group.bundles:
            bundle.give_back()
        self.removed.append(pg_id)
        if len(self.removed) > REMOVED_KEPT:
            self.groups.pop(self.removed.popleft(), None)
        return True

    def get_by_name(self, name: str, namespace: str) -> list | None:
        pg_id = self.names.get((namespace, name))
        if pg_id is None:
            return None
        group = self.groups[pg_id]
        return [pg_id, [b.spec for b in group.bundles], group.strategy]

    def table(self, pg_id: bytes | None) -> Any:
        if pg_id is not None:
            group = self.groups.get(pg_id)
            return group.info() if group is not None else {}
        return {g.pg_id.hex(): g.info() for g in self.groups.values()}

    def bundle_specs(self, pg_id: bytes) -> list:
        group = self.groups.get(pg_id)
        if group is None:
            raise ValueError(f"Placement group {pg_id.hex()} does not exist")
        return [[b.spec for b in group.bundles], group.strategy]

    # -- life --------------------------------------------------------------------------------

    def _end_work(self, group: Group) -> None:
        """What runs in the group ends: its actors die, its tasks fail."""
        head = self.head
        pg_id = group.pg_id
        for actor in list(head.actors.actors.values()):
            strategy = actor.create.strategy
            if strategy and strategy[0] == "pg" and strategy[1] == pg_id and \
                    actor.state != "dead":
                head.actors.remove_with_group(actor, ActorPlacementGroupRemoved(
                    f"The actor {actor.class_name} died because its placement group "
                    f"{pg_id.hex()} was removed"))
        for task in list(head.tasks.tasks.values()):
            strategy = task.strategy
            if not strategy or strategy[0] != "pg" or strategy[1] != pg_id or \
                    task.spec[S.KIND] != TaskKind.TASK:
                continue
            error = TaskPlacementGroupRemoved(
                f"Task {task.spec[S.NAME]} cannot run: its placement group {pg_id.hex()} "
                "was removed")
            if task.state == "queued":
                head.scheduler.remove(task)
                task.state = "unschedulable"
                head.tasks.fail(task, error)
            elif task.state == "running":
                head.tasks.fail_running(task, error)

    def owner_gone(self, key: bytes) -> None:
        for group in [g for g in self.groups.values() if g.owner == key]:
            if not group.detached and group.state != REMOVED:
                log.info("placement group %s goes with the driver that made it",
                         group.pg_id.hex())
                self.remove(group.pg_id)

    def node_died(self, node: Node) -> None:
        for group in self.groups.values():
            if group.state == REMOVED:
                continue
            lost = [b for b in group.bundles if b.node is node]
            if not lost:
                continue
            for bundle in lost:
                bundle.node = None
                bundle.give_back()
            if group.strategy == "STRICT_PACK":  # all or none on one node: place anew
                for bundle in group.bundles:
                    bundle.give_back()
            group.state = RESCHEDULING
            if group not in self.waiting:
                self.waiting.append(group)
            log.info("placement group %s lost %d bundle(s) with node %s: placing them again",
                     group.pg_id.hex(), len(lost), node.node_id.hex()[:12])

    def place_waiting(self) -> None:
        """Place the groups that wait, oldest first, as far as the nodes' free resources
        allow (called after each batch of messages)."""
        if not self.waiting:
            return
        nodes = [n for n in self.head.scheduler.nodes.values() if n.alive]
        for group in list(self.waiting):
            plan = self._plan(group, nodes)
            if plan is None:
                self._warn_if_never(group, nodes)
                continue
            for bundle, node in plan:
                bundle.reserve(node)
            group.state = CREATED
            group.placed_at = time.time()
            self.waiting.remove(group)

    def _warn_if_never(self, group: Group, nodes: list[Node]) -> None:
        if group.warned:
            return
        why = never_reason(group, nodes)
        if why is not None:
            group.warned = True
            self.head.notify_drivers(logging.WARNING, (
                f"Placement group {group.pg_id.hex()} cannot be placed on the current "
                f"nodes ({why}); it stays pending until nodes that can hold it join."))

    # -- placing -----------------------------------------------------------------------------

    def _plan(self, group: Group, nodes: list[Node]) -> list[tuple[Bundle, Node]] | None:
        """Where each unplaced bundle of ``group`` goes, by its strategy; None if they do
        not all fit now."""
        todo = [b for b in group.bundles if b.node is None]
        if not todo:
            return []
        free = {n.node_id: dict(n.available) for n in nodes}
        used = {b.node.node_id for b in group.bundles if b.node is not None}
        strategy = group.strategy
        if strategy in ("STRICT_PACK", "PACK"):
            whole = _sum(b.spec for b in todo)
            # the node the group's other bundles are on first, then the others
            for node in sorted(nodes, key=lambda n: n.node_id not in used):
                if strategy == "STRICT_PACK" and used and node.node_id not in used:
                    continue
                if _covers(free[node.node_id], whole):
                    return [(b, node) for b in todo]
            if strategy == "STRICT_PACK":
                return None
            return self._greedy(todo, nodes, free, used, spread=False)
        return self._greedy(todo, nodes, free, used, spread=True,
                            strict=strategy == "STRICT_SPREAD")

    @staticmethod
    def _greedy(todo: list[Bundle], nodes: list[Node], free: dict, used: set, spread: bool,
                strict: bool = False) -> list[tuple[Bundle, Node]] | None:
        plan = []
        counts = {n.node_id: 0 for n in nodes}
        for node_id in used:
            if node_id in counts:
                counts[node_id] += 1
        # largest bundles first: they have the fewest places to go
        for bundle in sorted(todo, key=lambda b: -sum(b.spec.values())):
            candidates = [n for n in nodes if _covers(free[n.node_id], bundle.spec)]
            if strict:
                candidates = [n for n in candidates if counts[n.node_id] == 0]
            if not candidates:
                return None
            # SPREAD: the node with fewest of the group's bundles; PACK: the most
            node = min(candidates, key=lambda n: counts[n.node_id] if spread
                       else -counts[n.node_id])
            counts[node.node_id] += 1
            for k, v in bundle.spec.items():
                free[node.node_id][k] = free[node.node_id].get(k, 0.0) - v
            plan.append((bundle, node))
        return plan

    # -- status ------------------------------------------------------------------------------

    def demand(self) -> list[tuple[dict, bool]]:
        """The bundles of groups that wait to be placed (unmet demand), each with whether
        its group can never be placed on the nodes there are."""
        nodes = [n for n in self.head.scheduler.nodes.values() if n.alive]
        out = []
        for group in self.waiting:
            never = never_reason(group, nodes) is not None
            out += [(b.spec, never) for b in group.bundles if b.node is None]
        return out


def never_reason(group: Group, nodes: list[Node]) -> str | None:
    """Why no set of free resources on ``nodes`` could ever hold ``group`` (None: some
    could, once work ends)."""
    totals = [n.total for n in nodes]
    for bundle in group.bundles:
        if not any(_covers(t, bundle.spec) for t in totals):
            return f"bundle {bundle.spec} fits no node"
    if group.strategy == "STRICT_SPREAD" and len(group.bundles) > len(nodes):
        return f"STRICT_SPREAD needs {len(group.bundles)} nodes, the cluster has {len(nodes)}"
    if group.strategy == "STRICT_PACK" and not any(
            _covers(t, _sum(b.spec for b in group.bundles)) for t in totals):
        return "STRICT_PACK needs one node for all its bundles, and none is that large"
    return None


def _covers(have: dict, req: dict) -> bool:
    return all(have.get(k, 0.0) + EPS >= v for k, v in req.items())


def _sum(specs) -> dict:
    out: dict[str, float] = {}
    for spec in specs:
        for k, v in spec.items():
            out[k] = out.get(k, 0.0) + v
    return out
