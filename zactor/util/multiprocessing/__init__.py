"""Ray's ``ray.util.multiprocessing``: a ``multiprocessing.Pool`` whose workers are actors.

Example::

    from zactor.util.multiprocessing import Pool

    with Pool() as pool:              # one actor per CPU of the cluster
        squares = pool.map(lambda x: x * x, range(100))
"""

from multiprocessing import JoinableQueue, TimeoutError

from zactor.util.multiprocessing.pool import AsyncResult, IMapIterator, Pool

__all__ = ["AsyncResult", "IMapIterator", "JoinableQueue", "Pool", "TimeoutError"]
