"""Utilities at Ray's paths: ``zactor.util.ActorPool`` and placement groups
(``zactor.util.placement_group`` and friends, also in ``zactor.util.placement_group``).

The drop-ins for other libraries load on first use (PEP 562), so ``import zactor.util`` does
not import them (nor joblib): ``zactor.util.multiprocessing`` (``Pool``), ``zactor.util.queue``
(``Queue``), ``zactor.util.joblib`` (``register_ray``) and ``zactor.util.concurrent``
(``concurrent.futures.RayExecutor``), e.g. ``from zactor.util.queue import Queue``.
"""

from __future__ import annotations

import importlib
from typing import Any

from zactor.util.actor_pool import ActorPool
from zactor.util.placement_group import (
    PlacementGroup,
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)

_LAZY_SUBMODULES = ("concurrent", "joblib", "multiprocessing", "queue")

__all__ = ["ActorPool", "PlacementGroup", "concurrent", "get_current_placement_group",
           "get_placement_group", "joblib", "multiprocessing", "placement_group",
           "placement_group_table", "queue", "remove_placement_group"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY_SUBMODULES:
        raise AttributeError(f"module 'zactor.util' has no attribute {name!r}")
    module = importlib.import_module(f"zactor.util.{name}")
    globals()[name] = module
    return module
