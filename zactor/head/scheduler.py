"""Resource-based placement of tasks and actors onto nodes and their warm workers (DESIGN §5).

Ready tasks wait in one FIFO per resource shape, so a task that does not fit never holds up
tasks of another shape behind it. A task is placed on a node whose free resources cover it and
that has an idle worker; if resources are free but no worker is idle, the node's agent is asked
to fork more, which is how nested tasks and zero-CPU tasks never deadlock a busy pool.

Workers are pooled per runtime environment: a task whose environment is not the default
one queues apart and runs only in a worker made for that environment (started on demand, as
above, and let go after IDLE_WORKER_TIMEOUT_S idle); the warm pool is the default
environment's alone, and work of other environments never takes its workers.

Two bounds apply to those extra workers. Workers that are running (not blocked in ``get``) are
capped per CPU, which only zero-CPU tasks can reach. Workers blocked in ``get`` are not capped
by count: each waits on tasks it submitted, and those need workers of their own, so a tree of
tasks as deep as the user's recursion needs that many (as in Ray). What bounds them is memory:
no worker is started when the machine's available memory would drop below a reserve. The
drivers are warned each time the node's worker count doubles past its cap, and told loudly when
the memory bound stops a start, rather than left to wait in silence.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from collections.abc import Callable

from zactor import config

EPS = 1e-9
#: Seconds between repeats of the warning that queued tasks cannot get a worker.
_STARVED_NOTICE_S = 10.0


class Resources:
    """Resources to take from and give back: a node's, or a placement group bundle's (a
    share of a node's). GPUs are assigned by device id: ``gpu_free[i]`` is the free share
    of device ``gpu_ids[i]``, at most ``gpu_cap[i]``."""

    __slots__ = ("available", "gpu_ids", "gpu_free", "gpu_cap")

    def fits(self, req: dict) -> bool:
        avail = self.available
        for k, v in req.items():
            if avail.get(k, 0.0) + EPS < v:
                return False
        gpus = req.get("GPU")
        if gpus and self.gpu_free:  # the shares must be on devices: two halves are not one
            if gpus >= 1:
                return sum(f >= 1 - EPS for f in self.gpu_free) >= math.ceil(gpus)
            return any(f + EPS >= gpus for f in self.gpu_free)
        return True

    def acquire(self, req: dict) -> dict:
        """Take ``req``; return what was assigned by index (GPUs)."""
        avail = self.available
        for k, v in req.items():
            avail[k] = avail.get(k, 0.0) - v
        gpus = req.get("GPU")
        if not gpus:
            return {}
        return {"GPU": self._take_gpus(gpus)}

    def release(self, req: dict, assigned: dict | None) -> None:
        avail = self.available
        for k, v in req.items():
            avail[k] = avail.get(k, 0.0) + v
        if assigned and "GPU" in assigned:
            self._give_gpus(req.get("GPU", 0), assigned["GPU"])

    def _take_gpus(self, amount: float) -> list[int]:
        free, ids = self.gpu_free, self.gpu_ids
        if amount >= 1:
            whole = [i for i, f in enumerate(free) if f >= 1 - EPS][: math.ceil(amount)]
            for i in whole:
                free[i] = 0.0
            return [ids[i] for i in whole]
        for i, f in enumerate(free):
            if f + EPS >= amount:
                free[i] = f - amount
                return [ids[i]]
        return []

    def _give_gpus(self, amount: float, gpu_ids: list[int]) -> None:
        ids = self.gpu_ids
        for gpu in gpu_ids:
            if gpu in ids:
                i = ids.index(gpu)
                self.gpu_free[i] = min(self.gpu_cap[i],
                                       self.gpu_free[i] + (1.0 if amount >= 1 else amount))


class Node(Resources):
    __slots__ = ("node_id", "host", "agent", "total", "idle", "workers", "starting",
                 "shm_dir", "alive", "warm_target", "info", "max_workers",
                 "busy_actors", "blocked", "warn_at", "starved_noticed", "env_idle",
                 "env_starting")

    def __init__(self, node_id: bytes, agent, resources: dict, info: dict) -> None:
        self.node_id = node_id
        self.host = self  # where work taking from these resources runs (see Bundle.host)
        self.agent = agent  # spawns and kills the node's workers, frees its object files
        self.total = dict(resources)
        self.available = dict(resources)
        self.idle: collections.deque = collections.deque()  # the default environment's
        self.env_idle: dict[str, collections.deque] = {}  # other environments', by key
        self.workers: dict[int, object] = {}
        self.starting = 0  # workers asked for and not joined yet, of every environment
        self.env_starting: dict[str, int] = {}  # of those, the other environments'
        self.gpu_ids = list(range(int(resources.get("GPU", 0))))
        self.gpu_free = [1.0] * len(self.gpu_ids)
        self.gpu_cap = [1.0] * len(self.gpu_ids)
        self.shm_dir = info.get("shm_dir")
        self.alive = True
        cpus = max(1, int(resources.get("CPU", 1)))
        self.warm_target = int(resources.get("CPU", 1))
        self.max_workers = cpus * config.MAX_WORKERS_PER_CPU
        self.info = info
        self.busy_actors = 0
        self.blocked = 0  # task workers blocked in get (their CPU is lent out)
        self.warn_at = self.max_workers  # warn when the node's workers pass this, then double it
        self.starved_noticed = 0.0

    def pool(self, env: str | None) -> collections.deque:
        """The idle workers of environment ``env``."""
        if env is None:
            return self.idle
        pool = self.env_idle.get(env)
        if pool is None:
            pool = self.env_idle[env] = collections.deque()
        return pool

    def starting_of(self, env: str | None) -> int:
        if env is None:
            return self.starting - sum(self.env_starting.values())
        return self.env_starting.get(env, 0)

    def started(self, env: str | None) -> None:
        """A worker of ``env`` joined, or failed to."""
        self.starting = max(0, self.starting - 1)
        if env is not None and env in self.env_starting:
            self.env_starting[env] -= 1
            if self.env_starting[env] <= 0:
                del self.env_starting[env]

    def worker_count(self) -> int:
        """Workers that count against the cap: actors own theirs, and a worker blocked in get
        waits for the very tasks that need new workers, so neither is capped."""
        return len(self.workers) - self.busy_actors - self.blocked + self.starting

    def mark_blocked(self, worker, blocked: bool) -> None:
        if worker.blocked != blocked:
            worker.blocked = blocked
            self.blocked += 1 if blocked else -1

    def room_in_memory(self) -> int:
        """How many more workers the machine's memory allows, keeping a reserve free."""
        agent = self.agent
        available = agent.available_memory()
        reserve = agent.total_memory * config.MEMORY_RESERVE_FRACTION
        return max(0, int((available - reserve) // config.WORKER_MEMORY_ESTIMATE))


class Scheduler:
    """Queues of placeable work and the nodes they may go to."""

    def __init__(self, dispatch: Callable, spawn: Callable[[Node, int], None],
                 notice: Callable[[int, str], None],
                 unschedulable: Callable[[object, str], None] | None = None) -> None:
        self.nodes: dict[bytes, Node] = {}
        self.queues: dict[tuple, collections.deque] = {}
        self._dispatch = dispatch
        self._spawn = spawn
        self._notice = notice  # (logging level, text): told to every driver
        # (task, why): a task that can never be placed (hard affinity to a dead node)
        self.unschedulable = unschedulable
        self.queued = 0
        self._spread = 0  # where the next SPREAD task starts looking
        # Ends an idle worker (it exits): to make room for another environment's.
        self.retire: Callable | None = None
        self.groups: dict = {}  # placement groups by id (zactor.head.placement_groups)

    # -- nodes -------------------------------------------------------------------------------

    def add_node(self, node: Node) -> None:
        self.nodes[node.node_id] = node

    def totals(self) -> dict:
        out: dict[str, float] = {}
        for n in self.nodes.values():
            if n.alive:
                for k, v in n.total.items():
                    out[k] = out.get(k, 0.0) + v
        return out

    def availability(self) -> dict:
        out: dict[str, float] = {}
        for n in self.nodes.values():
            if n.alive:
                for k, v in n.available.items():
                    out[k] = out.get(k, 0.0) + max(0.0, v)
        return out

    # -- work --------------------------------------------------------------------------------

    def enqueue(self, task, front: bool = False) -> None:
        q = self.queues.get(task.shape)
        if q is None:
            q = self.queues[task.shape] = collections.deque()
        if front:
            q.appendleft(task)
        else:
            q.append(task)
        self.queued += 1

    def remove(self, task) -> bool:
        q = self.queues.get(task.shape)
        if q is None:
            return False
        try:
            q.remove(task)
        except ValueError:
            return False
        self.queued -= 1
        return True

    def schedule(self) -> None:
        """Place every queued task that can run now; ask for workers where they are short."""
        if not self.queued:
            return
        nodes = [n for n in self.nodes.values() if n.alive]
        wanted: dict[tuple, int] = {}  # (node id, environment) -> workers to start
        for shape, q in list(self.queues.items()):
            while q:
                task = q[0]
                req = task.place
                placed = False
                short = None
                order = nodes
                if task.strategy is not None or task.prefer is not None:
                    order = self._order(task, nodes)
                    if not isinstance(order, list):  # can never run: it fails, saying why
                        q.popleft()
                        self.queued -= 1
                        task.state = "unschedulable"
                        if self.unschedulable is not None:
                            self.unschedulable(task, order)
                        continue
                env = task.env
                # A node, or a placement group's bundle on its node (``host``): what the
                # task takes its resources from.
                for pool in order:
                    if not pool.fits(req):
                        continue
                    node = pool.host
                    idle = node.idle if env is None else node.env_idle.get(env)
                    if idle:
                        worker = idle.popleft()
                        q.popleft()
                        self.queued -= 1
                        task.pool = None if pool is node else pool
                        self._dispatch(task, node, worker)
                        placed = True
                        break
                    short = pool
                if not placed:
                    if short is not None:
                        # Resources are free but every worker is busy or blocked: ask for as
                        # many workers as the free resources can keep busy.
                        n = min(len(q), _how_many_fit(short.available, req))
                        where = (short.host.node_id, env)
                        wanted[where] = wanted.get(where, 0) + n
                    break
            if not q:
                del self.queues[shape]
        for (node_id, env), n in wanted.items():
            node = self.nodes[node_id]
            room = node.max_workers - node.worker_count()
            if env is not None and room < n:
                room += self._make_room(node, n - room, env)
            want = min(n, room) - node.starting_of(env)
            if want > 0:
                self._start_extra(node, want, env)

    def _make_room(self, node: Node, need: int, env: str) -> int:
        """Let go of up to ``need`` idle workers of other environments than ``env`` (never
        the default warm pool); returns how many."""
        freed = 0
        if self.retire is None:
            return 0
        for key, pool in node.env_idle.items():
            while pool and key != env and freed < need:
                self.retire(pool.popleft())
                freed += 1
        return freed

    def _start_extra(self, node: Node, want: int, env: str | None = None) -> None:
        """Start ``want`` workers beyond the warm pool, as far as memory allows."""
        total = len(node.workers) + node.starting
        if total + want > node.max_workers:
            allowed = min(want, node.room_in_memory())
            if allowed < want:
                self._starved(node, want - allowed, total)
            want = allowed
            if want <= 0:
                return
        node.starting += want
        if env is None:
            self._spawn(node, want)
        else:
            node.env_starting[env] = node.env_starting.get(env, 0) + want
            self._spawn(node, want, env)
        total += want
        if total > node.warn_at:
            while node.warn_at < total:
                node.warn_at *= 2
            self._notice(logging.WARNING, (
                f"{total} worker processes have been started on node "
                f"{node.node_id.hex()[:12]} ({node.blocked} of them blocked in get() on tasks "
                f"they submitted). Nested tasks get workers of their own so that they never "
                f"deadlock, but each worker costs memory: deep or wide trees of tasks that "
                f"block in get() are better written to return ObjectRefs, or to wait() on "
                f"fewer children at a time."))

    def _starved(self, node: Node, short: int, running: int) -> None:
        now = time.monotonic()
        if now - node.starved_noticed < _STARVED_NOTICE_S:
            return
        node.starved_noticed = now
        self._notice(logging.ERROR, (
            f"Cannot start {short} more worker process(es) on node "
            f"{node.node_id.hex()[:12]}: the machine's available memory is at its reserve "
            f"({config.MEMORY_RESERVE_FRACTION:.0%} of total; about "
            f"{config.WORKER_MEMORY_ESTIMATE / 2**20:.0f} MiB per worker is needed). "
            f"{running} workers are running, {node.blocked} of them blocked in get(), and "
            f"{self.queued} task(s) are queued: they start only as running tasks finish. If "
            f"every worker is blocked waiting on queued tasks, this cannot progress."))

    def top_up(self, node: Node) -> None:
        """Keep ``warm_target`` idle-or-starting task workers on the node."""
        missing = node.warm_target - (len(node.idle) + node.starting_of(None))
        room = node.max_workers - node.worker_count()
        n = min(missing, room)
        if n > 0:
            node.starting += n
            self._spawn(node, n)

    def reap_idle(self, now: float, retire: Callable, keep: Callable) -> None:
        """Let idle workers beyond the warm pool go after a while (but none that ``keep``
        says must stay)."""
        for node in self.nodes.values():
            _reap(node.idle, len(node.idle) - node.warm_target, now, retire, keep)
            for env, pool in list(node.env_idle.items()):
                _reap(pool, len(pool), now, retire, keep)
                if not pool:
                    del node.env_idle[env]


    def _order(self, task, nodes: list[Node]) -> list | str | Exception:
        """The nodes (or bundles) to try for ``task``, best first; why not, if it can never
        be placed."""
        strategy = task.strategy
        if strategy is None:  # prefer the node holding most of its large arguments
            prefer = task.prefer
            if prefer is None or not prefer.alive:
                return nodes
            return [prefer] + [n for n in nodes if n is not prefer]
        if strategy == "SPREAD":
            if not nodes:
                return nodes
            start = self._spread % len(nodes)
            self._spread += 1
            return nodes[start:] + nodes[:start]
        if strategy[0] == "pg":  # the group's bundles (or the one it names), once placed
            from zactor.exceptions import TaskPlacementGroupRemoved

            group = self.groups.get(strategy[1])
            if group is None or group.state == "REMOVED":
                return TaskPlacementGroupRemoved(
                    f"the placement group {strategy[1].hex()} it must run in was removed")
            index = strategy[2]
            bundles = group.bundles if index < 0 else group.bundles[index:index + 1]
            return [b for b in bundles if b.node is not None and b.node.alive]
        # Ray's rules: the node, waiting while it is busy; elsewhere only if it is dead,
        # unknown or too small for the task (soft), or busy (_spill_on_unavailable).
        _, node_id, soft, spill = strategy
        node = self.nodes.get(node_id)
        if node is not None and node.alive and all(
                node.total.get(k, 0.0) + EPS >= v for k, v in task.place.items()):
            return [node] + [n for n in nodes if n is not node] if spill else [node]
        if soft:
            return nodes
        state = "not in this cluster" if node is None else "dead" if not node.alive else \
            "too small for it"
        return (f"the node {node_id.hex()} it must run on (NodeAffinitySchedulingStrategy, "
                f"soft=False) is {state}")


def _reap(pool: collections.deque, excess: int, now: float, retire: Callable,
          keep: Callable) -> None:
    for worker in list(pool):  # longest idle first
        if excess <= 0 or now - worker.idle_since < config.IDLE_WORKER_TIMEOUT_S:
            break
        if keep(worker):
            continue
        pool.remove(worker)
        retire(worker)
        excess -= 1


def _how_many_fit(available: dict, req: dict) -> int:
    n = 1 << 30
    for k, v in req.items():
        if v > EPS:
            n = min(n, int((available.get(k, 0.0) + EPS) // v))
    return n
