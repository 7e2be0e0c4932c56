"""Ray's ``ray.util.concurrent.futures``: ``RayExecutor`` (also ``ZactorExecutor``), a
``concurrent.futures.Executor`` whose workers are actors on the cluster.

Example::

    from zactor.util.concurrent.futures import RayExecutor

    with RayExecutor(max_workers=2) as ex:
        assert list(ex.map(abs, [-1, -2])) == [1, 2]
"""

from zactor.util.concurrent.futures.ray_executor import RayExecutor, ZactorExecutor

__all__ = ["RayExecutor", "ZactorExecutor"]
