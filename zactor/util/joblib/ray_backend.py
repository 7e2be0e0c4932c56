"""``RayBackend``: joblib's multiprocessing backend with a ``zactor.util.multiprocessing.Pool``
in place of its process pool (Ray's ``ray.util.joblib.ray_backend.RayBackend``).

joblib's ``PoolManagerMixin`` does the rest: it sends each batch of calls with the pool's
``apply_async`` and collects results through its callbacks, and ``AutoBatchingMixin`` sizes
the batches.
"""

from __future__ import annotations

import logging
from typing import Any

from joblib._parallel_backends import MultiprocessingBackend

import zactor
from zactor.util.multiprocessing import Pool

log = logging.getLogger(__name__)

__all__ = ["RayBackend"]


class RayBackend(MultiprocessingBackend):
    """The joblib backend registered by ``register_ray()`` / ``register_zactor()``.

    ``n_jobs=-1`` means every CPU of the cluster (``-2`` all but one, and so on), not of this
    machine; a larger ``n_jobs`` than the cluster has CPUs is cut to its CPUs. The pool's
    actors take ``ray_remote_args`` as options.

    Example::

        with joblib.parallel_backend("ray", ray_remote_args={"num_cpus": 1}):
            joblib.Parallel(n_jobs=-1)(joblib.delayed(abs)(-i) for i in range(4))
    """

    supports_timeout = True

    def __init__(self, nesting_level: int | None = None,
                 inner_max_num_threads: int | None = None,
                 ray_remote_args: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.ray_remote_args = ray_remote_args
        super().__init__(nesting_level=nesting_level,
                         inner_max_num_threads=inner_max_num_threads, **kwargs)

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        # Not MultiprocessingBackend's: its checks (daemonic process, not the main thread)
        # guard against forking, and this backend forks nothing.
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if not zactor.is_initialized():
            zactor.init()
        cpus = max(int(zactor.cluster_resources().get("CPU", 1)), 1)
        if n_jobs < 0:
            return max(cpus + 1 + n_jobs, 1)
        if n_jobs > cpus:
            log.debug("n_jobs=%d is more than the cluster's %d CPUs: using %d", n_jobs, cpus,
                      cpus)
        return min(n_jobs, cpus)

    def configure(self, n_jobs: int = 1, parallel: Any = None, prefer: str | None = None,
                  require: str | None = None, ray_remote_args: dict[str, Any] | None = None,
                  **memmapping_pool_kwargs: Any) -> int:
        """Start the pool of ``n_jobs`` actors (joblib calls this once per ``Parallel``
        call, or once for a ``with Parallel(...)`` block)."""
        n_jobs = self.effective_n_jobs(n_jobs)
        # Even for n_jobs=1 the work runs on the cluster (MultiprocessingBackend would fall
        # back to running it here): who picks this backend asks for that.
        self._pool = Pool(processes=n_jobs,
                          ray_remote_args=ray_remote_args or self.ray_remote_args)
        self.parallel = parallel
        return n_jobs
