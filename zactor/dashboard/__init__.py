"""The dashboard: a web page of the cluster, live, and its Prometheus ``/metrics``.

The head serves it on ``dashboard_host:dashboard_port`` (127.0.0.1:8265 by default, Ray's);
``zactor.init()`` returns its address as ``dashboard_url`` and ``zactor status`` prints it.
The head binds the port (``_launcher``); a process of its own, started on the first
connection, serves the page (``_app``, on uvicorn and starlette) from what the head's state
API answers. Nothing here is public API: the page and ``/metrics`` are.

This module stays light (drivers import it at ``init``): it decides whether and where.
"""

from __future__ import annotations

import importlib.util

from zactor import config


def available() -> bool:
    """Whether this Python has what the dashboard's process imports (the ``dashboard``
    extra), found without importing it."""
    return all(importlib.util.find_spec(name) is not None
               for name in ("starlette", "uvicorn", "prometheus_client"))


def spec(include: bool | None, host: str | None, port: int | None) -> dict | None:
    """Where a head should serve its dashboard, if it should, from Ray's keywords
    (``include_dashboard``, ``dashboard_host``, ``dashboard_port``). ``include=None`` means
    "when the ``dashboard`` extra is installed"."""
    if include is False:
        return None
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or
                             not 0 <= port < 65536):
        raise ValueError(f"dashboard_port must be a port number, got {port!r}")
    if not available():
        if include:
            raise ValueError("include_dashboard=True needs the dashboard's packages: "
                             "pip install 'zactor[dashboard]'")
        return None
    return {"host": host or config.DASHBOARD_HOST,
            "port": config.DASHBOARD_PORT if port is None else port,
            "explicit": port is not None}
