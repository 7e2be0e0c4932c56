"""``DataParallelTrainer``: a training function run by ``num_workers`` workers at once, each
with its shard of the datasets, restarted from the latest checkpoint when one fails.

``fit()`` is the controller: it places the workers (a placement group, a supervisor), starts
the function on every one, and polls their reports. A report every worker has made is one
step of the run; if any worker passed a checkpoint with it, the staged checkpoint is
committed under its final name and ranked by ``CheckpointConfig``. When a worker raises or
its process dies, its supervisor restarts every worker (``one_for_all``) and the function
starts again, from the latest checkpoint, until ``FailureConfig.max_failures`` is spent.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import zactor
from zactor.exceptions import ActorError
from zactor.train import context
from zactor.train._storage import CheckpointManager, RunStorage
from zactor.train._worker_group import Backend, WorkerGroup
from zactor.train.checkpoint import Checkpoint
from zactor.train.config import RunConfig, ScalingConfig, default_storage_path
from zactor.train.exceptions import WorkerGroupError
from zactor.train.result import Result

log = logging.getLogger(__name__)


class _WorkersFailed(Exception):
    def __init__(self, failures: dict[int, tuple[BaseException, str]]) -> None:
        super().__init__(failures)
        self.failures = failures

    def message(self) -> str:
        lines = []
        for rank, (exc, text) in sorted(self.failures.items()):
            lines.append(f"[rank {rank}] {type(exc).__name__}: {exc}\n{text}".rstrip())
        return "\n".join(lines)


class DataParallelTrainer:
    """Runs ``train_loop_per_worker(config)`` on ``scaling_config.num_workers`` workers.

    Example::

        def loop(config):
            for epoch in range(config["epochs"]):
                zactor.train.report({"epoch": epoch})

        result = DataParallelTrainer(loop, train_loop_config={"epochs": 3},
                                     scaling_config=ScalingConfig(num_workers=2)).fit()
    """

    _backend_class: type[Backend] = Backend

    def __init__(self, train_loop_per_worker, *, train_loop_config: dict | None = None,
                 scaling_config: ScalingConfig | None = None,
                 run_config: RunConfig | None = None, datasets: dict | None = None,
                 resume_from_checkpoint: Checkpoint | None = None,
                 backend_config: Any = None, dataset_config: Any = None,
                 metadata: dict | None = None) -> None:
        if not callable(train_loop_per_worker):
            raise TypeError("train_loop_per_worker must be a function")
        self.train_loop_per_worker = train_loop_per_worker
        self.train_loop_config = train_loop_config
        self.scaling_config = scaling_config or ScalingConfig()
        self.run_config = run_config or RunConfig()
        self.datasets = dict(datasets or {})
        for name, ds in self.datasets.items():
            if not hasattr(ds, "streaming_split"):
                raise TypeError(f"datasets[{name!r}] must be a zactor.data Dataset, got "
                                f"{type(ds).__name__}")
        self.resume_from_checkpoint = resume_from_checkpoint
        self.backend_config = backend_config

    def _backend(self) -> Backend:
        return self._backend_class()

    def fit(self) -> Result:
        """Train; return the ``Result``, or raise ``TrainingFailedError`` (a
        ``WorkerGroupError`` when workers failed) once no restart is left."""
        result = self._run()
        if result.error is not None:
            raise result.error
        return result

    def _run(self) -> Result:
        if not zactor.is_initialized():
            zactor.init()
        run = self.run_config
        name = run.name or f"{type(self).__name__}_{time.strftime('%Y-%m-%d_%H-%M-%S')}"
        storage = RunStorage(run.storage_path or default_storage_path(), name,
                             run.storage_filesystem)
        storage.prepare()
        manager = CheckpointManager(run.checkpoint_config, storage)
        failures, attempt = 0, 0
        state: dict[str, Any] = {"metrics": None, "checkpointed": None}
        backend = self._backend()
        group = WorkerGroup(self.scaling_config, name)
        error: BaseException | None = None
        try:
            while True:
                before = group.restarts()
                try:
                    self._attempt(group, backend, storage, manager, attempt, name, state)
                    break
                except _WorkersFailed as failed:
                    failures += 1
                    if not run.failure_config.allows(failures):
                        error = WorkerGroupError(
                            f"Training failed after {failures - 1} restart(s):\n"
                            f"{failed.message()}",
                            {rank: exc for rank, (exc, _) in failed.failures.items()})
                        break
                    log.warning("training worker(s) failed (%d of %s restarts); restarting "
                                "all workers from the latest checkpoint:\n%s", failures,
                                run.failure_config.max_failures, failed.message())
                    self._restart(group, before, failed)
                    storage.clean_staging()  # what the failed attempt's workers left
                    attempt += 1
        finally:
            group.shutdown()
            backend.on_shutdown()
            storage.clean_staging()
        latest = manager.latest
        metrics = state["checkpointed"] if state["checkpointed"] is not None else \
            (latest[1] if latest else state["metrics"])
        return Result(metrics=metrics, checkpoint=latest[0] if latest else None,
                      path=storage.run_dir, error=error,
                      best_checkpoints=manager.best_checkpoints(), num_failures=failures,
                      filesystem=storage.fs)

    @staticmethod
    def _restart(group: WorkerGroup, before: list[int], failed: _WorkersFailed) -> None:
        # A worker that raised is still alive: ending its process makes the supervisor
        # restart every worker, as it does when a process dies. (When one died, that
        # restart is under way already, and another exit would hit a new worker.)
        if not any(isinstance(exc, ActorError) for exc, _ in failed.failures.values()):
            group.workers[min(failed.failures)].exit.remote()
        group.wait_restarted(before)

    def _attempt(self, group: WorkerGroup, backend: Backend, storage: RunStorage,
                 manager: CheckpointManager, attempt: int, name: str, state: dict) -> None:
        n = group.n
        info = backend.on_start(group)
        shards = {ds_name: ds.streaming_split(n, equal=True)
                  for ds_name, ds in self.datasets.items()}
        latest = manager.latest
        checkpoint = latest[0] if latest else self.resume_from_checkpoint
        starts = []
        for rank, (worker, place) in enumerate(zip(group.workers, group.placement,
                                                   strict=True)):
            session = context._Session(
                world_rank=rank, world_size=n, local_rank=place["local_rank"],
                local_world_size=place["local_world_size"], node_rank=place["node_rank"],
                experiment_name=name, storage=storage, attempt=attempt,
                checkpoint=checkpoint,
                datasets={k: v[rank] for k, v in shards.items()},
                extra={"gpu_ids": place["gpu_ids"]})
            starts.append(worker.start.remote(self.train_loop_per_worker,
                                              self.train_loop_config, session, backend, info))
        self._started(starts)
        self._follow(group, manager, attempt, state, self.run_config.callbacks or [])

    @staticmethod
    def _started(refs: list) -> None:
        """Wait for every worker's ``start``; the ranks whose process died fail the run."""
        failures = {}
        for rank, ref in enumerate(refs):
            try:
                zactor.get(ref)
            except ActorError as exc:
                failures[rank] = (exc, "")
        if failures:
            raise _WorkersFailed(failures)

    @staticmethod
    def _follow(group: WorkerGroup, manager: CheckpointManager, attempt: int,
                state: dict, callbacks: list) -> None:
        """Poll the workers until every one has finished; commit each step's checkpoint and
        tell the callbacks (``after_report``, as Ray's ``UserCallback``s)."""
        n = group.n
        polls = {group.workers[r].poll.remote(1.0): r for r in range(n)}
        done = [False] * n
        steps: dict[int, dict[int, dict]] = {}
        while polls:
            ready, _ = zactor.wait(list(polls), num_returns=1)
            failures = {}
            for ref in ready:
                rank = polls.pop(ref)
                try:
                    reports, finished, error = zactor.get(ref)
                except ActorError as exc:
                    failures[rank] = (exc, "")
                    continue
                if error is not None:
                    failures[rank] = error
                for r in reports:
                    steps.setdefault(r["index"], {})[rank] = r
                done[rank] = finished
                if not finished:
                    polls[group.workers[rank].poll.remote(1.0)] = rank
            for index in sorted(steps):
                step = steps[index]
                if len(step) < n:
                    break
                del steps[index]
                metrics = step[0]["metrics"]
                state["metrics"] = metrics
                ckpt = None
                if any(r["checkpoint"] for r in step.values()):
                    ckpt = manager.register(attempt, index, metrics)
                    state["checkpointed"] = metrics
                for callback in callbacks:
                    if hasattr(callback, "after_report"):
                        callback.after_report(None, [step[r]["metrics"] for r in range(n)],
                                              ckpt)
            if failures:
                raise _WorkersFailed(failures)
        if steps:
            log.warning("workers reported different numbers of times; %d step(s) that not "
                        "every worker reported were dropped", len(steps))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_workers={self.scaling_config.num_workers})"


