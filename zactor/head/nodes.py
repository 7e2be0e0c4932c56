"""The head's side of node agents that run as processes of their own (zactor.node.daemon).

A :class:`RemoteAgent` stands in the scheduler's Node where the embedded NodeAgent stands for
the head's own machine, with the same methods: ``spawn``, ``kill``, ``available_memory`` and
a ``store`` (:class:`StoreProxy`) that turns the ObjectStore calls the head makes into STORE
messages, and the agent's answers (NODE_EVENT) back into the callbacks the head gave.

Liveness: every message from an agent counts as a sign of life; its heartbeats, every
``HEARTBEAT_S``, carry its free memory and its store's numbers. An agent silent for
``NODE_TIMEOUT_S`` is declared dead (zactor.head.broker.Broker.node_died).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from zactor import config
from zactor.protocol import Msg, encode

if TYPE_CHECKING:
    from zactor.head.broker import Broker


class RemoteAgent:
    def __init__(self, head: Broker, identity: bytes, node_id: bytes, resources: dict,
                 info: dict) -> None:
        self.head = head
        self.identity = identity
        self.node_id = node_id
        self.resources = resources
        self.info = info
        self.total_memory = float(info.get("total_memory") or 0.0)
        self.memory_available = self.total_memory
        self.last_heard = time.monotonic()
        self.last_heartbeat = self.last_heard  # and heartbeats had: zactor.head.metrics
        self.heartbeats = 0
        self.stats: dict = {}
        self.store = StoreProxy(self, info.get("arena") or [None, 0])
        self.transfer_address: str = info.get("transfer", "")
        # Log requests sent to the agent (LOG_READ), by request number, until it answers.
        self._log_answers: dict[int, Callable] = {}
        self._log_reqs = itertools.count(1)

    def send(self, header: bytes) -> None:
        self.head.send(self.identity, header)  # a lower-case identity: the TCP socket

    def spawn(self, count: int, env_key: str | None = None, env: dict | None = None) -> None:
        self.send(encode(Msg.SPAWN, count, env_key, env))

    def kill(self, pid: int, sig: int) -> None:
        self.send(encode(Msg.KILL_WORKER, pid, sig))

    def available_memory(self) -> float:
        return self.memory_available

    def load(self) -> float:
        """The machine's 1-minute load average, as its last heartbeat said."""
        return float(self.stats.get("load", 0.0))

    def read_logs(self, op: str, args, respond: Callable) -> None:
        """Ask the agent for its log files (zactor.node.logs); ``respond(ok, value)`` once
        it answers, or with an error if it does not in ``LOG_REQUEST_TIMEOUT_S`` or its
        node dies first (logs_failed): a request on a node never hangs."""
        req = next(self._log_reqs)
        self._log_answers[req] = respond
        self.send(encode(Msg.LOG_READ, req, op, args))
        self.head.later(config.LOG_REQUEST_TIMEOUT_S, lambda: self._log_answered(
            req, False, ["ValueError", f"node {self.node_id.hex()[:12]} did not answer a "
                         f"log request in {config.LOG_REQUEST_TIMEOUT_S:.0f} s"]))

    def _log_answered(self, req, ok, value) -> None:
        respond = self._log_answers.pop(req, None)
        if respond is not None:
            respond(bool(ok), value)

    def on_log_data(self, fields: list) -> None:
        """LOG_DATA: the agent's answer to one of read_logs' requests."""
        self._log_answered(*fields)

    def logs_failed(self, why: str) -> None:
        """The node died: every log request still waiting for it is answered with why."""
        answers, self._log_answers = self._log_answers, {}
        for respond in answers.values():
            respond(False, ["ValueError", f"node {self.node_id.hex()[:12]} died before it "
                            f"answered: {why}"])

    def heard(self, stats: dict | None = None) -> None:
        self.last_heard = time.monotonic()
        if stats:
            self.stats = stats
            self.memory_available = float(stats.get("memory_available", 0.0))


class StoreProxy:
    """The ObjectStore interface the head uses, for a store in another process."""

    def __init__(self, agent: RemoteAgent, arena: list) -> None:
        self.agent = agent
        self.arena_path, self.capacity = arena[0], int(arena[1] or 0)
        self.on_spilled: Callable[[bytes, list], None] = lambda oid, loc: None
        self._answers: dict[int, Callable] = {}
        self._req_ids = itertools.count(1)
        self.alive = True

    def _op(self, op: str, *args) -> None:
        if self.alive:
            self.agent.send(encode(Msg.STORE, op, list(args)))

    def allocate(self, client: bytes, oid: bytes, size: int, respond: Callable) -> None:
        req = next(self._req_ids)
        self._answers[req] = respond
        self._op("alloc", req, client, oid, size)

    def preallocate(self, client: bytes, length: int, respond: Callable) -> None:
        req = next(self._req_ids)
        self._answers[req] = respond
        self._op("prealloc", req, client, length)

    def answered(self, req: int, answer: list) -> None:
        respond = self._answers.pop(req, None)
        if respond is not None:
            respond(answer)

    def sealed(self, loc: list, oid: bytes) -> None:
        self._op("sealed", loc, oid)

    def free_object(self, loc: list) -> None:
        self._op("free", loc)

    def touch(self, loc: list) -> None:
        self._op("touch", loc)

    def abandon(self, client: bytes, key) -> None:
        self._op("abandon", client, key)

    def client_gone(self, client: bytes) -> None:
        self._op("client_gone", client)

    def lose(self, loc: list) -> bool:
        self._op("lose", loc)
        return self.alive

    def holds(self, loc: list) -> bool:
        # The agent reports what it spills (relocate) and the head frees what it frees: while
        # the node lives, the head's location is the store's.
        return self.alive

    def pull(self, oid: bytes, size: int, source: str, loc: list) -> None:
        self._op("pull", oid, size, source, loc)

    def source_gone(self, address: str, why: str) -> None:
        self._op("source_gone", address, why)

    def stats(self) -> dict:
        return dict(self.agent.stats.get("store") or {"capacity": self.capacity})

    def housekeeping(self, now: float) -> None:
        pass  # the agent keeps its own store

    def died(self) -> None:
        """The node is dead: allocations it owed are answered as full, nothing more is sent."""
        self.alive = False
        answers, self._answers = self._answers, {}
        for respond in answers.values():
            respond(["full", "the node holding the object store died"])
