"""``zactor.data.DataContext``: the few knobs Ray Data users set, per process."""

from __future__ import annotations

import sys
import threading


class DataContext:
    """Settings of dataset execution in this process (Ray's ``DataContext``).

    Example::

        ctx = zactor.data.DataContext.get_current()
        ctx.enable_progress_bars = False
    """

    _current: DataContext | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        #: One progress bar per operator while a dataset runs (only on a terminal).
        self.enable_progress_bars = sys.stderr.isatty()
        #: Tasks (blocks) in flight per stage; 0: twice the cluster's CPUs.
        self.max_tasks_in_flight = 0
        #: Share of the cluster's object store the blocks in flight of one stage may take.
        self.op_memory_fraction = 0.1
        #: Rows per block when a source splits by count (range, from_items).
        self.target_max_block_size = 128 * 1024 * 1024
        #: How long a split of ``streaming_split`` that begins an epoch waits for the
        #: others (when they are late, it goes on without them).
        self.streaming_split_wait_s = 5.0
        #: Output blocks keep the input's order (zactor always does; Ray's default is False).
        self.execution_options = _ExecutionOptions()

    @classmethod
    def get_current(cls) -> DataContext:
        with cls._lock:
            if cls._current is None:
                cls._current = DataContext()
            return cls._current

    @classmethod
    def _set_current(cls, context: DataContext) -> None:
        """Make ``context`` this process's (Ray's name: a split coordinator takes its
        driver's settings so)."""
        with cls._lock:
            cls._current = context


class _ExecutionOptions:
    def __init__(self) -> None:
        self.preserve_order = True
        self.verbose_progress = False
