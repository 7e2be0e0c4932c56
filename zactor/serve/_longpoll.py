"""Each process's one long poll on the controller: routing tables (replicas of a deployment,
the proxy's routes) arrive here the moment they change, not on a timer."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

import zactor
from zactor.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError
from zactor.serve import config

log = logging.getLogger(__name__)


def controller() -> Any:
    """The running Serve controller's handle; RayServeException when Serve is not running."""
    from zactor.serve.exceptions import RayServeException

    try:
        return zactor.get_actor(config.CONTROLLER_NAME, namespace=config.NAMESPACE)
    except ValueError:
        raise RayServeException("Serve is not running on this cluster: call serve.run() or "
                                "serve.start() first") from None


class LongPoll:
    def __init__(self, handle: Any) -> None:
        self.controller = handle
        self.client_id = uuid.uuid4().hex
        self.lock = threading.Lock()
        self.callbacks: dict[tuple, list[Callable[[Any], None]]] = {}
        self.versions: dict[tuple, int] = {}
        self.closed = False
        self.thread: threading.Thread | None = None

    def watch(self, key: tuple, callback: Callable[[Any], None]) -> None:
        """Call ``callback(value)`` now with the key's current value, then on every change
        (``None``: the key is gone)."""
        version, value = zactor.get(self.controller.snapshot.remote(key))
        with self.lock:
            self.callbacks.setdefault(key, []).append(callback)
            self.versions[key] = max(self.versions.get(key, -1), version)
            start = self.thread is None
            if start:
                self.thread = threading.Thread(target=self._run, daemon=True,
                                               name="zactor-serve-longpoll")
        callback(value)
        if start:
            self.thread.start()
        else:  # the poll in flight does not ask about the new key: have it come back
            self.controller.kick.remote(self.client_id)

    def close(self) -> None:
        self.closed = True

    def _run(self) -> None:
        # Never call the API once the driver has shut down: a call would start a new cluster.
        while not self.closed and zactor.is_initialized():
            with self.lock:
                known = dict(self.versions)
            try:
                changes = zactor.get(self.controller.listen.remote(
                    known, config.LISTEN_TIMEOUT_S, self.client_id),
                    timeout=config.LISTEN_TIMEOUT_S + 60)
            except (ActorDiedError, ActorUnavailableError):
                self._gone()
                return
            except GetTimeoutError:
                continue
            except Exception:  # noqa: BLE001 - the process is shutting down
                if self.closed or not zactor.is_initialized():
                    return
                log.exception("serve: long poll on the controller failed")
                continue
            for key, (version, value) in changes.items():
                with self.lock:
                    self.versions[key] = version
                    callbacks = list(self.callbacks.get(key, ()))
                for callback in callbacks:
                    try:
                        callback(value)
                    except Exception:  # noqa: BLE001 - one bad watcher must not stop the rest
                        log.exception("serve: routing update for %s failed", key)

    def _gone(self) -> None:
        """The controller is gone (serve.shutdown): every table is empty for good."""
        self.closed = True
        with self.lock:
            callbacks = [c for cs in self.callbacks.values() for c in cs]
        for callback in callbacks:
            try:
                callback(None)
            except Exception:  # noqa: BLE001
                log.exception("serve: routing shutdown failed")


_poll: LongPoll | None = None
_poll_lock = threading.Lock()


def get() -> LongPoll:
    """This process's long poll, on the controller that runs now."""
    global _poll
    with _poll_lock:
        handle = controller()
        if _poll is None or _poll.closed or \
                _poll.controller._actor_id != handle._actor_id:
            if _poll is not None:
                _poll.close()
            _poll = LongPoll(handle)
        return _poll


def reset() -> None:
    global _poll
    with _poll_lock:
        if _poll is not None:
            _poll.close()
        _poll = None
