"""Placement groups, at Ray's path (``ray.util.placement_group``): bundles of resources
reserved together on the cluster's nodes, for tasks and actors that must run side by side
(PACK, STRICT_PACK) or apart (SPREAD, STRICT_SPREAD).

Example::

    from zactor.util.placement_group import placement_group, remove_placement_group
    from zactor.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    zactor.get(pg.ready())              # both bundles are reserved, on two nodes
    actor = Worker.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
        pg, placement_group_bundle_index=0)).remote()
    remove_placement_group(pg)          # its actors end, its resources go back
"""

from __future__ import annotations

from typing import Any

from zactor._runtime_context import BaseID

__all__ = ["PlacementGroup", "PlacementGroupID", "get_current_placement_group",
           "get_placement_group", "placement_group", "placement_group_table",
           "remove_placement_group"]


class PlacementGroupID(BaseID):
    __slots__ = ()


def _core():
    from zactor._api import core

    return core()


class PlacementGroup:
    """A handle to a placement group; it can be passed to tasks and actors."""

    def __init__(self, id: PlacementGroupID, bundle_cache: list[dict] | None = None,
                 strategy: str | None = None) -> None:  # noqa: A002 - Ray's name
        self.id = id
        self._bundles = bundle_cache
        self._strategy = strategy

    def __reduce__(self):
        return PlacementGroup, (self.id, self._bundles, self._strategy)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"PlacementGroup(id={self.id.hex()})"

    def _fill(self) -> None:
        if self._bundles is None:
            self._bundles, self._strategy = _core().request("pg_specs", self.id.binary())

    @property
    def bundle_specs(self) -> list[dict]:
        """The resources of each bundle, in order."""
        self._fill()
        return [dict(b) for b in self._bundles]

    @property
    def bundle_count(self) -> int:
        self._fill()
        return len(self._bundles)

    @property
    def is_empty(self) -> bool:
        return self.id.is_nil()

    def ready(self):
        """An ObjectRef that resolves (to this group) once every bundle is reserved."""
        from zactor._remote import remote
        from zactor.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        global _ready_check
        if _ready_check is None:
            _ready_check = remote(_bundle_reservation_check)
        return _ready_check.options(num_cpus=0, scheduling_strategy=(
            PlacementGroupSchedulingStrategy(self, placement_group_bundle_index=0))
        ).remote(self)

    def wait(self, timeout_seconds: float | None = 30) -> bool:
        """Whether the group is placed within ``timeout_seconds``."""
        from zactor._api import wait

        ready, _ = wait([self.ready()], timeout=timeout_seconds)
        return bool(ready)


_ready_check = None


def _bundle_reservation_check(group: PlacementGroup) -> PlacementGroup:
    return group


def placement_group(bundles: list[dict[str, float]], strategy: str = "PACK", name: str = "",
                    lifetime: str | None = None, _max_cpu_fraction_per_node: Any = None,
                    _soft_target_node_id: Any = None,
                    bundle_label_selector: Any = None) -> PlacementGroup:
    """Reserve ``bundles`` (dicts of resources) by ``strategy``: PACK (as few nodes as
    possible), SPREAD (as many as possible), STRICT_PACK (one node), STRICT_SPREAD (one
    node each). Returns at once; ``ready()`` tells when the group is placed. ``lifetime=
    "detached"``: the group outlives the driver that made it."""
    if _max_cpu_fraction_per_node is not None or _soft_target_node_id is not None or \
            bundle_label_selector is not None:
        raise NotImplementedError("_max_cpu_fraction_per_node, _soft_target_node_id and "
                                  "bundle_label_selector are not supported by zactor")
    if not isinstance(name, str):
        raise TypeError(f"placement_group name must be a string, got {name!r}")
    pg_id = _core().request("pg_create", {"bundles": bundles, "strategy": strategy,
                                           "name": name, "lifetime": lifetime})
    return PlacementGroup(PlacementGroupID(pg_id), [dict(b) for b in bundles], strategy)


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Remove the group: its actors are killed, its tasks fail with
    TaskPlacementGroupRemoved, its resources go back to the nodes."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"expected a PlacementGroup, got {placement_group!r}")
    _core().request("pg_remove", placement_group.id.binary())


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The group of that name in this namespace; ValueError if there is none."""
    found = _core().request("pg_get", [placement_group_name, None])
    if found is None:
        raise ValueError(f"Failed to look up placement group with name: "
                         f"{placement_group_name}")
    pg_id, bundles, strategy = found
    return PlacementGroup(PlacementGroupID(pg_id), bundles, strategy)


def placement_group_table(placement_group: PlacementGroup | None = None) -> dict:
    """Ray's table: one group's state, bundles and their nodes, or every group's by id."""
    return _core().request("pg_table", placement_group.id.binary()
                           if placement_group is not None else None)


def get_current_placement_group() -> PlacementGroup | None:
    """The group the calling task or actor runs in (None in a driver, or outside any)."""
    from zactor import _state

    worker = _state.worker
    group = worker.group() if worker is not None else None
    return PlacementGroup(PlacementGroupID(group[1])) if group else None
