"""Resource-based placement of tasks and actors onto nodes and their warm workers (DESIGN §5).

Ready tasks wait in one FIFO per resource shape, so a task that does not fit never holds up
tasks of another shape behind it. A task is placed on a node whose free resources cover it and
that has an idle worker; if resources are free but no worker is idle, the node's agent is asked
to fork more (up to a cap per CPU), which is how nested tasks and zero-CPU tasks never deadlock
a busy pool.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable

from zactor import config

EPS = 1e-9


class Node:
    __slots__ = ("node_id", "agent", "total", "available", "idle", "workers", "starting",
                 "gpu_free", "shm_dir", "alive", "warm_target", "info", "max_workers",
                 "busy_actors")

    def __init__(self, node_id: bytes, agent, resources: dict, info: dict) -> None:
        self.node_id = node_id
        self.agent = agent  # spawns and kills the node's workers, frees its object files
        self.total = dict(resources)
        self.available = dict(resources)
        self.idle: collections.deque = collections.deque()
        self.workers: dict[int, object] = {}
        self.starting = 0
        self.gpu_free = [1.0] * int(resources.get("GPU", 0))
        self.shm_dir = info.get("shm_dir")
        self.alive = True
        cpus = max(1, int(resources.get("CPU", 1)))
        self.warm_target = int(resources.get("CPU", 1))
        self.max_workers = cpus * config.MAX_WORKERS_PER_CPU
        self.info = info
        self.busy_actors = 0

    def fits(self, req: dict) -> bool:
        avail = self.available
        for k, v in req.items():
            if avail.get(k, 0.0) + EPS < v:
                return False
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
        free = self.gpu_free
        if amount >= 1:
            whole = [i for i, f in enumerate(free) if f >= 1 - EPS][: math.ceil(amount)]
            for i in whole:
                free[i] = 0.0
            return whole
        for i, f in enumerate(free):
            if f + EPS >= amount:
                free[i] = f - amount
                return [i]
        return []

    def _give_gpus(self, amount: float, ids: list[int]) -> None:
        for i in ids:
            if i < len(self.gpu_free):
                self.gpu_free[i] = min(1.0, self.gpu_free[i] + (1.0 if amount >= 1 else amount))

    def worker_count(self) -> int:
        """Workers that count against the cap: actors own theirs and are not capped."""
        return len(self.workers) - self.busy_actors + self.starting


class Scheduler:
    """Queues of placeable work and the nodes they may go to."""

    def __init__(self, dispatch: Callable, spawn: Callable[[Node, int], None]) -> None:
        self.nodes: dict[bytes, Node] = {}
        self.queues: dict[tuple, collections.deque] = {}
        self._dispatch = dispatch
        self._spawn = spawn
        self.queued = 0

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
        wanted: dict[bytes, int] = {}
        for shape, q in list(self.queues.items()):
            while q:
                task = q[0]
                req = task.place
                placed = False
                short = None
                for node in nodes:
                    if not node.fits(req):
                        continue
                    if node.idle:
                        worker = node.idle.popleft()
                        q.popleft()
                        self.queued -= 1
                        self._dispatch(task, node, worker)
                        placed = True
                        break
                    short = node
                if not placed:
                    if short is not None:
                        # Resources are free but every worker is busy or blocked: ask for as
                        # many workers as the free resources can keep busy.
                        n = min(len(q), _how_many_fit(short.available, req))
                        wanted[short.node_id] = wanted.get(short.node_id, 0) + n
                    break
            if not q:
                del self.queues[shape]
        for node_id, n in wanted.items():
            node = self.nodes[node_id]
            room = node.max_workers - node.worker_count()
            want = min(n, room) - node.starting
            if want > 0:
                node.starting += want
                self._spawn(node, want)

    def top_up(self, node: Node) -> None:
        """Keep ``warm_target`` idle-or-starting task workers on the node."""
        missing = node.warm_target - (len(node.idle) + node.starting)
        room = node.max_workers - node.worker_count()
        n = min(missing, room)
        if n > 0:
            node.starting += n
            self._spawn(node, n)

    def reap_idle(self, now: float, retire: Callable) -> None:
        """Let idle workers beyond the warm pool go after a while."""
        for node in self.nodes.values():
            while len(node.idle) > node.warm_target:
                worker = node.idle[0]
                if now - worker.idle_since < config.IDLE_WORKER_TIMEOUT_S:
                    break
                node.idle.popleft()
                retire(worker)


def _how_many_fit(available: dict, req: dict) -> int:
    n = 1 << 30
    for k, v in req.items():
        if v > EPS:
            n = min(n, int((available.get(k, 0.0) + EPS) // v))
    return n
