"""The head's records of clients, workers, tasks and actors (plain data, no behaviour)."""

from __future__ import annotations

import collections
import time

from zactor.protocol import S

_now = time.time


class Client:
    """A connected driver or worker (both sockets of it)."""

    __slots__ = ("key", "kind", "pid", "inbox", "holds", "actor_holds", "worker", "info",
                 "namespace", "owned_actors", "pidfd", "node", "remote", "last_ping")

    def __init__(self, key: bytes, kind: str, pid: int, info: dict) -> None:
        self.key = key
        self.kind = kind
        self.pid = pid
        self.inbox = key + b"<"
        # What this process holds a reference to (a process holds a key or not: the count
        # of its references is its own business, see zactor._refs).
        self.holds: set[bytes] = set()
        self.actor_holds: set[bytes] = set()
        self.worker: Worker | None = None
        self.info = info
        # Work this client submits runs in this namespace (a worker takes its task's).
        self.namespace: str = info.get("namespace", "")
        # Non-detached actors this process created: they share its fate, as in Ray.
        self.owned_actors: set[bytes] = set()
        self.pidfd: int | None = None  # a joined driver's process, watched for its exit
        # The node whose store this process maps (None: a driver on a machine without one).
        self.node = None
        self.remote = key[:1].islower()  # connected over TCP (zactor._client.CoreClient)
        self.last_ping = time.monotonic()  # a remote driver's sign of life (its pings)


class Worker:
    __slots__ = ("client", "node", "pid", "task", "actor", "known_fns", "blocked", "idle_since",
                 "calls", "exiting", "resumed_busy", "env", "last_end")

    def __init__(self, client: Client, node, pid: int) -> None:
        self.client = client
        self.node = node
        self.pid = pid
        self.task: TaskRecord | None = None  # the normal task it runs
        self.actor: ActorRecord | None = None  # the actor it hosts
        self.calls: dict[bytes, TaskRecord] = {}  # actor calls sent to it, not yet done
        self.known_fns: set[bytes] = set()
        self.blocked = False
        self.idle_since = 0.0
        self.exiting = False
        self.resumed_busy = False  # ran a task of the previous head's when it reconnected
        self.env: str | None = None  # the key of its runtime environment (None: default)
        # When its last call ended (zactor.head.state): a call queued behind it in a one-at-a-
        # time actor starts then, not when the head forwarded it.
        self.last_end = 0.0


class TaskRecord:
    __slots__ = ("spec", "task_id", "frames", "owner", "return_ids", "place", "hold", "shape",
                 "waiting", "worker", "node", "assigned", "retries_left", "parent", "state",
                 "acquired", "cancelled", "caller", "direct", "lineage_users",
                 "lineage_inline", "lineage_upstream", "stream", "strategy", "prefer", "env",
                 "pool", "created", "started", "error", "attempt")

    def __init__(self, spec: list, frames: list, owner: bytes, return_ids: list[bytes],
                 place: dict, hold: dict) -> None:
        self.spec = spec
        self.task_id: bytes = spec[S.TASK_ID]
        self.frames = frames  # [args blob] (+ function blob, kept by the function table)
        self.owner = owner
        self.return_ids = return_ids
        self.place = place  # resources that must be free to start it
        self.hold = hold  # resources it keeps while running (an actor may hold none)
        # SPREAD, or ("node", node id, soft): placement beyond resources (zactor.util.
        # scheduling_strategies); tasks of one strategy queue together.
        options = spec[S.OPTIONS]
        strategy = options.get("strategy") if options else None
        if isinstance(strategy, list):
            strategy = tuple(strategy)
        self.strategy = strategy
        self.prefer = None  # the node holding most of its large arguments
        # Its runtime environment's key: it runs only in a worker made for that environment.
        self.env = options.get("env") if options else None
        # What it takes its resources from while it runs: its node (None), or the
        # placement group bundle it runs in (zactor.head.placement_groups).
        self.pool = None
        self.shape = (tuple(sorted(place.items())), strategy, self.env)
        self.waiting = 0  # dependencies not ready yet
        self.worker: Worker | None = None
        self.node = None
        self.assigned: dict | None = None
        retries = spec[S.MAX_RETRIES]
        self.retries_left = retries if retries is not None else 0
        self.parent = spec[S.PARENT_TASK_ID]
        self.state = "waiting"
        self.acquired = False
        self.cancelled = False
        self.caller: CallerState | None = None  # an actor call's caller, as its actor sees it
        self.direct = False  # an actor call that went straight to the actor's worker
        # Kept in zactor.head.lineage: records that need this one to rebuild their objects,
        # the inline argument values to run it again with, and the records it needs.
        self.stream = None  # a generator task's Stream (zactor.head.streams)
        self.lineage_users = 0
        self.lineage_inline: dict = {}
        self.lineage_upstream: list = []
        # For the task history (zactor.head.state): when it was submitted and handed to a
        # worker (epoch seconds), why it failed (None, or (error type, message or error
        # blob)), and how many times it was retried.
        self.created = _now()
        self.started = 0.0
        self.error: tuple | None = None
        self.attempt = 0


class ActorRecord:
    __slots__ = ("actor_id", "create", "name", "namespace", "detached", "worker", "state",
                 "pending", "refs", "death_blob", "options", "class_name", "args_pinned",
                 "max_restarts", "max_task_retries", "restarts", "checkpoint", "supervisor",
                 "exit_watchers", "restart_at", "address", "callers", "owner", "owner_key",
                 "doomed")

    def __init__(self, actor_id: bytes, create: TaskRecord, options: dict) -> None:
        self.actor_id = actor_id
        self.create = create
        self.options = options
        self.name = options.get("name")
        self.namespace = options.get("namespace")
        self.detached = options.get("lifetime") == "detached"
        # Why it is to end once placed: its handles went while calls waited for its process.
        self.doomed: str | None = None
        self.class_name = options.get("class_name", "Actor")
        self.worker: Worker | None = None
        # pending -> alive -> (restarting -> alive)* -> dead; "stopped" is a supervised actor
        # whose process died, held until its supervisor restarts or ends it.
        self.state = "pending"
        self.pending: collections.deque = collections.deque()  # calls before (re)placement
        self.refs = 0
        self.death_blob: bytes | None = None
        self.args_pinned = True  # the constructor's arguments, kept for restarts
        self.max_restarts: int = options.get("max_restarts") or 0
        self.max_task_retries: int = options.get("max_task_retries") or 0
        self.restarts = 0
        self.checkpoint: bytes | None = None  # last state from __zactor_checkpoint__
        self.supervisor: bytes | None = options.get("supervisor")
        self.exit_watchers: list | None = None  # (client key, request id) told of a death
        self.restart_at = 0.0
        self.address: str | None = None  # the live incarnation's socket for direct calls
        self.callers: dict[bytes, CallerState] = {}  # client key -> its calls to this actor
        self.owner: str = ""  # who created it, in words, for the error when its owner dies
        self.owner_key: bytes | None = None  # that client (non-detached actors only)


class CallerState:
    """One client's calls to one actor, as the head counts them to grant direct routes
    (see zactor._direct)."""

    __slots__ = ("key", "seen", "inflight", "direct_inflight", "granted", "connected", "held")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.seen = 0  # calls received from the client (SUBMIT or CALLED)
        self.inflight = 0  # of those, not finished
        self.direct_inflight = 0  # of those, direct ones on the live incarnation
        self.granted: str | None = None  # the address of the route the client may hold now
        # The address the client may still have sockets to (a route it gave up keeps them):
        # told when that process dies, so the client stops reconnecting to it.
        self.connected: str | None = None
        #: Brokered calls waiting for the direct calls before them to finish.
        self.held: collections.deque = collections.deque()
