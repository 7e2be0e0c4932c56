"""The process-wide runtime handles: set by ``init`` in a driver and at start in a worker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zactor._client import CoreClient

#: The connection to the head of the current cluster, or None before ``init``.
core: CoreClient | None = None
#: In a worker process, its ``WorkerRuntime``; None in a driver.
worker: Any = None
#: In a driver: the namespace, job id and the embedded cluster it started (if any).
driver: Any = None
#: Whether this process has shut a driver down before: from then on only the main thread
#: starts a cluster by itself (see zactor._api.core).
shut_down: bool = False
