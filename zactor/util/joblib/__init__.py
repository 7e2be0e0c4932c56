"""Ray's ``ray.util.joblib``: a joblib parallel backend that runs joblib's (and so
scikit-learn's) parallel work on the cluster.

Example::

    import joblib
    from zactor.util.joblib import register_ray

    register_ray()
    with joblib.parallel_backend("ray"):
        squares = joblib.Parallel(n_jobs=2)(joblib.delayed(pow)(i, 2) for i in range(10))
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

__all__ = ["register_ray", "register_zactor"]


def _register(name: str) -> None:
    try:
        from joblib.parallel import register_parallel_backend

        from zactor.util.joblib.ray_backend import RayBackend
    except ImportError as exc:  # joblib is an optional dependency, as in Ray
        raise ImportError(f"the {name!r} joblib backend needs joblib: "
                          "pip install joblib") from exc
    register_parallel_backend(name, RayBackend)
    log.debug("registered the joblib backend %r", name)


def register_ray() -> None:
    """Register the joblib backend ``"ray"`` (Ray's name for it): use it with
    ``joblib.parallel_backend("ray")`` or ``joblib.parallel_config(backend="ray")``."""
    _register("ray")


def register_zactor() -> None:
    """Register the same backend under the name ``"zactor"``."""
    _register("zactor")
