"""Where tasks and actors run, beyond their resources (Ray's ``ray.util.scheduling_strategies``).

Besides these classes, ``scheduling_strategy`` takes ``"DEFAULT"`` (pack onto as few nodes as
fit, preferring the node that holds most of the task's large arguments) and ``"SPREAD"`` (over
as many nodes as have room).

Example::

    from zactor.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node_id = zactor.get_runtime_context().get_node_id()
    f.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()
"""

from __future__ import annotations

__all__ = ["NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy"]


class PlacementGroupSchedulingStrategy:
    """Run in ``placement_group``'s bundle ``placement_group_bundle_index`` (-1: any of its
    bundles), taking resources only from it. ``placement_group_capture_child_tasks=True``:
    the tasks and actors it starts run in the group too, unless they say otherwise."""

    def __init__(self, placement_group, placement_group_bundle_index: int = -1,
                 placement_group_capture_child_tasks: bool | None = None) -> None:
        from zactor.util.placement_group import PlacementGroup

        if not isinstance(placement_group, PlacementGroup):
            raise TypeError(f"placement_group must be a PlacementGroup, got "
                            f"{placement_group!r}")
        if isinstance(placement_group_bundle_index, bool) or \
                not isinstance(placement_group_bundle_index, int):
            raise TypeError("placement_group_bundle_index must be an int")
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def __repr__(self) -> str:
        return (f"PlacementGroupSchedulingStrategy({self.placement_group!r}, "
                f"placement_group_bundle_index={self.placement_group_bundle_index})")


class NodeAffinitySchedulingStrategy:
    """Run on the node ``node_id`` (hex, as ``zactor.nodes()`` and the runtime context give
    it), waiting while it is busy. ``soft=True``: elsewhere if that node is dead, unknown or
    lacks the resources altogether; ``soft=False``: never elsewhere — the task fails with
    ``TaskUnschedulableError`` (an actor with ``ActorUnschedulableError``) rather than wait
    for ever. ``_spill_on_unavailable=True``: elsewhere also while it is busy (Ray's rules)."""

    def __init__(self, node_id: str, soft: bool, _spill_on_unavailable: bool = False,
                 _fail_on_unavailable: bool = False) -> None:
        if not isinstance(node_id, str):
            raise TypeError(f"node_id must be a hex string, got {node_id!r}")
        try:
            bytes.fromhex(node_id)
        except ValueError:
            raise ValueError(f"node_id must be a hex string, got {node_id!r}") from None
        self.node_id = node_id
        self.soft = bool(soft)
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    def __repr__(self) -> str:
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"

