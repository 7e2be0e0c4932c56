"""Runtime environment packages a node on another machine than the head's fetches from it.

A SPAWN for an environment whose packages this machine lacks waits here while they come,
one chunk at a time over the node's connection to the head, into the machine's package
directory (zactor.runtime_env._setup), checked against their hash; the workers start then.
A package that cannot be had is left missing: the workers' setup fails, saying so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from zactor.protocol import Msg, encode
from zactor.runtime_env import _setup, _spec

log = logging.getLogger(__name__)


class PackageFetcher:
    def __init__(self, send: Callable[[bytes], None]) -> None:
        self._send = send
        self.root = _setup.root_dir()
        self.waiting: dict[str, list[Callable[[], None]]] = {}  # uri -> who waits for it
        self.blocked: list[tuple[set[str], Callable[[], None]]] = []

    def ensure(self, env: dict, then: Callable[[], None]) -> None:
        """Call ``then`` once every package of ``env`` is on this machine (or failed)."""
        missing = {u for u in _spec.packages_of(env)
                   if not os.path.isfile(_setup.package_path(self.root, u))}
        if not missing:
            then()
            return
        self.blocked.append((missing, then))
        for uri in missing:
            if uri not in self.waiting:
                self.waiting[uri] = []
                log.info("fetching runtime_env package %s from the head", uri)
                self._part(uri, truncate=True)
                self._send(encode(Msg.PACKAGE, uri, 0, 0, None))

    def _part(self, uri: str, truncate: bool = False) -> str:
        path = _setup.package_path(self.root, uri) + f".part-{os.getpid()}"
        if truncate:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb"):
                pass
        return path

    def on_chunk(self, fields: list, data: bytes | None) -> None:
        uri, offset, total, error = fields
        if uri not in self.waiting:
            return
        part = self._part(uri)
        if error is None and data is not None:
            with open(part, "ab") as f:
                f.write(data)
            done = offset + len(data)
            if done < total and data:
                self._send(encode(Msg.PACKAGE, uri, done, 0, None))
                return
            error = self._seal(uri, part)
        if error is not None:
            log.error("could not fetch runtime_env package %s: %s", uri, error)
            try:
                os.unlink(part)
            except FileNotFoundError:
                pass
        self.waiting.pop(uri, None)
        self._release(uri)

    def _seal(self, uri: str, part: str) -> str | None:
        if _spec.file_digest(part) != _spec.digest_of(uri):
            return "its bytes do not match its hash"
        os.replace(part, _setup.package_path(self.root, uri))
        return None

    def _release(self, uri: str) -> None:
        still = []
        for missing, then in self.blocked:
            missing.discard(uri)
            if missing:
                still.append((missing, then))
            else:
                then()
        self.blocked = still
