"""Ray's ``ray.experimental``: ``tqdm_ray``, progress bars from tasks and actors drawn on the
driver (``from zactor.experimental.tqdm_ray import tqdm``). Submodules load on first use."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["tqdm_ray"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'zactor.experimental' has no attribute {name!r}")
    return importlib.import_module(f"zactor.experimental.{name}")
