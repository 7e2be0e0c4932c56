"""The training workers: one actor per worker, placed by a placement group (a bundle each)
and supervised ``one_for_all``, so that when one dies every worker is restarted, in place,
and the controller starts them again from the latest checkpoint.

    controller (in fit()) ── start(fn) / poll() ──► rank 0 … rank n-1   (_TrainWorker actors)
                                                      ▲ supervisor: one_for_all
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from typing import Any

import zactor
from zactor import supervision
from zactor.exceptions import ActorError
from zactor.train import context
from zactor.train.exceptions import ControllerError
from zactor.util.placement_group import placement_group, remove_placement_group
from zactor.util.scheduling_strategies import PlacementGroupSchedulingStrategy

log = logging.getLogger(__name__)

#: How long the workers may take to be placed (or restarted) before the run fails (an
#: autoscaler may be adding the nodes they need meanwhile).
PLACEMENT_TIMEOUT_S = float(os.environ.get("ZACTOR_TRAIN_PLACEMENT_TIMEOUT_S", "120"))


class Backend:
    """What a framework adds around the training function (torch: its process group)."""

    def on_start(self, group: WorkerGroup) -> Any:
        """Run by the controller once the workers are up; what it returns goes to every
        worker's ``on_worker_start``."""
        return None

    def on_worker_start(self, session: context._Session, info: Any) -> None:
        pass

    def on_worker_end(self, session: context._Session) -> None:
        pass

    def on_shutdown(self) -> None:
        """Run by the controller once the run is over."""


@zactor.remote
class _TrainWorker:
    """Runs the training function in a thread of its own; ``poll`` hands the reports it
    queued to the controller."""

    def __init__(self) -> None:
        self.session: context._Session | None = None
        self.done = False
        self.error: tuple[Any, str] | None = None

    def node(self) -> dict:
        ctx = zactor.get_runtime_context()
        node_id = ctx.get_node_id()
        address = next((n["NodeManagerAddress"] for n in zactor.nodes()
                        if n["NodeID"] == node_id), "127.0.0.1")
        return {"node_id": node_id, "address": address, "gpu_ids": zactor.get_gpu_ids()}

    def free_port(self) -> int:
        with socket.socket() as s:
            s.bind(("", 0))
            return s.getsockname()[1]

    def start(self, fn, config: Any, session: context._Session, backend: Backend,
              info: Any) -> None:
        self.session, self.done, self.error = session, False, None

        def main() -> None:
            context._set_session(session)
            try:
                backend.on_worker_start(session, info)
                try:
                    if _takes_config(fn):
                        fn(config if config is not None else {})
                    else:
                        fn()
                finally:
                    backend.on_worker_end(session)
            except BaseException as exc:  # noqa: BLE001 - it goes to the controller
                self.error = (_picklable(exc), traceback.format_exc())
            finally:
                with session.cond:
                    self.done = True
                    session.cond.notify_all()

        threading.Thread(target=main, daemon=True, name="zactor-train-loop").start()

    def exit(self) -> None:
        """End this process, so that the supervisor restarts every worker."""
        os._exit(1)

    def poll(self, timeout: float) -> tuple[list, bool, tuple | None]:
        """The reports queued since the last poll, whether the function has ended, and its
        error (exception, traceback text); waits up to ``timeout`` for something new."""
        session = self.session
        with session.cond:
            if not session.reports and not self.done:
                session.cond.wait(timeout)
            reports, session.reports = session.reports, []
            return reports, self.done, self.error


def _takes_config(fn) -> bool:
    try:
        return len(inspect.signature(fn).parameters) > 0
    except (TypeError, ValueError):
        return True


def _picklable(exc: BaseException) -> BaseException:
    import cloudpickle

    try:
        cloudpickle.loads(cloudpickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - an exception that cannot travel travels as text
        return RuntimeError(f"{type(exc).__name__}: {exc}")


class WorkerGroup:
    """``n`` supervised training workers, a placement-group bundle each."""

    def __init__(self, scaling, name: str) -> None:
        self.n = scaling.num_workers
        res = scaling.worker_resources
        if not any(all(node["Resources"].get(k, 0.0) >= v for k, v in res.items())
                   for node in zactor.nodes() if node["Alive"]):
            log.warning("no node of the cluster has the resources of one training worker "
                        "(%s); waiting %.0f s for one to join", res, PLACEMENT_TIMEOUT_S)
        self.pg = placement_group([res] * self.n, strategy=scaling.placement_strategy)
        if not self.pg.wait(PLACEMENT_TIMEOUT_S):
            remove_placement_group(self.pg)
            raise ControllerError(
                f"the {self.n} training workers ({res} each) could not be placed within "
                f"{PLACEMENT_TIMEOUT_S:.0f} s: the cluster has {zactor.cluster_resources()}")
        # Threaded (max_concurrency): a worker's main thread reads its socket for the
        # training function's thread only while it is not itself blocked in a method (poll
        # waits for reports), so methods run on threads of their own.
        options = {"num_cpus": res.get("CPU", 0.0), "num_gpus": res.get("GPU", 0.0),
                   "max_concurrency": 4,
                   "resources": {k: v for k, v in res.items() if k not in ("CPU", "GPU")}}
        children = [supervision.ChildSpec(
            f"rank-{i}", _TrainWorker, options={
                **options, "scheduling_strategy": PlacementGroupSchedulingStrategy(
                    self.pg, placement_group_bundle_index=i)})
            for i in range(self.n)]
        # The controller counts failures against FailureConfig: the supervisor restarts
        # whenever asked, however often.
        try:
            self.supervisor = supervision.start(
                children, name=f"train-{name}-{uuid.uuid4().hex[:8]}",
                strategy="one_for_all", max_restarts=1_000_000, period=1.0,
                backoff_initial=0.0)
        except BaseException:
            remove_placement_group(self.pg)
            raise
        self.workers = [self.supervisor.child(f"rank-{i}") for i in range(self.n)]
        self.placement = self._places()

    def _places(self) -> list[dict]:
        """Each worker's node, and its local rank and node rank (workers numbered in the
        order their nodes first appear)."""
        nodes = zactor.get([w.node.remote() for w in self.workers])
        order: list[str] = []
        for n in nodes:
            if n["node_id"] not in order:
                order.append(n["node_id"])
        out = []
        for n in nodes:
            same = [m for m in nodes if m["node_id"] == n["node_id"]]
            out.append({**n, "node_rank": order.index(n["node_id"]),
                        "local_rank": sum(1 for m in nodes[:len(out)]
                                          if m["node_id"] == n["node_id"]),
                        "local_world_size": len(same)})
        return out

    def wait_restarted(self, before: list[int]) -> None:
        """Block until the supervisor has rebuilt every worker (restart counts past
        ``before``)."""
        deadline = time.monotonic() + PLACEMENT_TIMEOUT_S
        while time.monotonic() < deadline:
            children = self.supervisor.which_children()
            if all(c["state"] == "alive" and c["restarts"] > b
                   for c, b in zip(children, before, strict=True)):
                self.placement = self._places()
                return
            time.sleep(0.05)
        raise ControllerError(f"the training workers were not restarted within "
                              f"{PLACEMENT_TIMEOUT_S:.0f} s")

    def restarts(self) -> list[int]:
        return [c["restarts"] for c in self.supervisor.which_children()]

    def shutdown(self) -> None:
        try:
            self.supervisor.stop()
        except (ActorError, zactor.exceptions.GetTimeoutError) as exc:  # already gone
            log.debug("stopping the training workers' supervisor: %s", exc)
        remove_placement_group(self.pg)
