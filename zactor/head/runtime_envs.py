"""The head's part in runtime environments: the uploaded packages, the environments that
name worker pools, and what their setup reports.

Packages arrive in chunks (``package_put`` requests) into ``<RUNTIME_ENV_DIR>/packages`` —
the directory this machine's workers unpack them from — and are kept only if their bytes
hash to their name. A node on another machine fetches what it lacks (PACKAGE messages).
An environment is registered once by each process that submits work with it, by its key.
A worker setting one up sends ENV_EVENTs: its output goes to the drivers (as a worker's
output does), and a failure fails every task and actor creation queued for that
environment with RuntimeEnvSetupError, instead of starting workers for it again and again.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from zactor import config
from zactor.exceptions import RuntimeEnvSetupError
from zactor.protocol import Msg, ProtocolError, encode
from zactor.runtime_env import _setup, _spec

if TYPE_CHECKING:
    from zactor.head.broker import Broker

log = logging.getLogger(__name__)


class PackageStore:
    def __init__(self, root: str) -> None:
        self.dir = os.path.join(root, "packages")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)

    def path(self, uri: str) -> str:
        if not _spec._URI.match(uri):
            raise ValueError(f"malformed package URI {uri!r}")
        return os.path.join(self.dir, uri[len(_spec.SCHEME):])

    def has(self, uri: str) -> bool:
        return os.path.isfile(self.path(uri))

    def put(self, who: bytes, uri: str, offset: int, data: bytes, last: bool) -> bool:
        """Write one chunk of an upload; on the last, keep the package if it is intact."""
        path = self.path(uri)
        part = f"{path}.part-{who.hex()}"
        if offset == 0:
            with open(part, "wb"):
                pass
        elif not os.path.exists(part) or os.path.getsize(part) != offset:
            raise ValueError(f"upload of {uri}: chunk at {offset} out of order")
        if offset + len(data) > config.RUNTIME_ENV_PACKAGE_MAX:
            os.unlink(part)
            raise ValueError(f"upload of {uri}: over RUNTIME_ENV_PACKAGE_MAX")
        with open(part, "ab") as f:
            f.write(data)
        if not last:
            return True
        if _spec.file_digest(part) != _spec.digest_of(uri):
            os.unlink(part)
            raise ValueError(f"upload of {uri}: the bytes do not match their hash")
        os.replace(part, path)
        return True

    def read(self, uri: str, offset: int, length: int) -> tuple[int, bytes]:
        path = self.path(uri)
        with open(path, "rb") as f:
            total = os.fstat(f.fileno()).st_size
            f.seek(offset)
            return total, f.read(length)


class RuntimeEnvs:
    def __init__(self, head: Broker) -> None:
        self.head = head
        self.packages = PackageStore(_setup.root_dir())
        self.envs: dict[str, dict] = {}  # key -> resolved environment

    def register(self, key: str, env: dict) -> bool:
        if not isinstance(key, str) or not isinstance(env, dict):
            raise TypeError("env_register takes a key and an environment")
        if key in self.envs:
            return True
        try:
            env = _spec.validate(env)
        except NotImplementedError as exc:
            raise ValueError(str(exc)) from None
        if not _spec.is_resolved(env) or _spec.key_of(env) != key:
            raise ValueError("env_register: not a resolved environment of that key")
        for uri in _spec.packages_of(env):
            if not self.packages.has(uri):
                raise ValueError(f"runtime_env package {uri} was never uploaded")
        self.envs[key] = env
        if self.head.control is not None:
            self.head.control.append("env", key, env)
        return True

    def restore(self, records: list) -> None:
        for record in records:
            if record[0] == "env":
                self.envs[record[1]] = record[2]

    def snapshot(self) -> list[list]:
        return [["env", key, env] for key, env in self.envs.items()]

    def on_package(self, agent, fields: list) -> None:
        """A node on another machine asks for a chunk of a package."""
        uri, offset = fields[0], fields[1]
        try:
            total, data = self.packages.read(uri, int(offset), config.RUNTIME_ENV_UPLOAD_CHUNK)
        except (OSError, ValueError) as exc:
            agent.send(encode(Msg.PACKAGE, uri, offset, 0, f"the head has no package {uri}: "
                              f"{exc}"))
            return
        self.head.send(agent.identity, encode(Msg.PACKAGE, uri, offset, total, None), (data,))

    def on_event(self, identity: bytes, fields: list) -> None:
        node_id, key, event, text = fields
        if not isinstance(text, str) or not isinstance(key, str):
            raise ProtocolError("bad ENV_EVENT")
        node = self.head.scheduler.nodes.get(node_id)
        where = node.info.get("ip", "?") if node is not None else "?"
        if event == "log":
            header = encode(Msg.LOG, "stderr", f"(runtime_env setup, ip={where})", text)
            for client_key in self.head.drivers:
                self.head.send(client_key + b"<", header)
        elif event == "failed":
            self.head.send(identity, encode(Msg.ENV_EVENT, node_id, key, "ack", ""))
            self.failed(key, f"Failed to set up the runtime environment on node "
                        f"{node_id.hex()[:12]} ({where}): {text}")
        else:
            raise ProtocolError(f"unknown ENV_EVENT {event!r}")

    def failed(self, key: str, text: str) -> None:
        """Everything queued for environment ``key`` fails with ``text``."""
        # INFO: the error reaches the user through the work that fails with it.
        log.info("%s", text.splitlines()[0] if text else "runtime env setup failed")
        scheduler = self.head.scheduler
        tasks = self.head.tasks
        for shape in [s for s in scheduler.queues if s[2] == key]:
            queue = scheduler.queues.pop(shape)
            scheduler.queued -= len(queue)
            for task in queue:
                task.state = "unschedulable"
                tasks.cannot_run(task, RuntimeEnvSetupError(text))
