"""The operators of a dataset's logical plan. A dataset is a source and a chain of these;
nothing runs until it is consumed (zactor.data._executor runs them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

#: A block transform: one block in, blocks out.
BlockFn = Callable[[pa.Table], list]


@dataclass
class ReadTask:
    """Makes some blocks (a file, a range of rows) when called, in a task."""

    read: Callable[[], list]
    rows: int | None = None  # an estimate, when the source knows it
    name: str = "Read"


@dataclass
class Source:
    name: str
    tasks: list[ReadTask] | None = None  # to read
    blocks: list | None = None  # or (block ref, metadata) pairs already made


@dataclass
class Map:
    """A row or batch transform. ``fn`` is a block transform, or (for a callable class run in
    an actor pool) a factory of one, built once per actor."""

    name: str
    fn: BlockFn | None = None
    make_fn: Callable[[], BlockFn] | None = None
    num_cpus: float | None = None
    num_gpus: float | None = None
    pool: tuple[int, int] | None = None  # actors (min, max) for a callable class
    extra: dict = field(default_factory=dict)  # other options for the tasks or actors

    def fuses_with(self, other: Map) -> bool:
        return self.pool is None and other.pool is None and \
            (self.num_cpus, self.num_gpus) == (other.num_cpus, other.num_gpus)


@dataclass
class Limit:
    n: int
    name: str = "Limit"


@dataclass
class AllToAll:
    """An operator that needs every block of its input first (sort, shuffle, groupby...):
    ``run(pairs) -> pairs`` on (block ref, metadata) pairs."""

    name: str
    run: Callable[[list], list]


@dataclass
class Combine:
    """Several datasets' blocks one after the other (union)."""

    name: str
    others: list[Any]  # their plans
