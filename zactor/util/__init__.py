"""Utilities at Ray's paths: ``zactor.util.ActorPool`` and placement groups
(``zactor.util.placement_group`` and friends, also in ``zactor.util.placement_group``)."""

from zactor.util.actor_pool import ActorPool
from zactor.util.placement_group import (
    PlacementGroup,
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)

__all__ = ["ActorPool", "PlacementGroup", "get_current_placement_group",
           "get_placement_group", "placement_group", "placement_group_table",
           "remove_placement_group"]
