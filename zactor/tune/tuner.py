"""``Tuner``: runs trials of a trainable over a search space (Ray Tune 2.60's API).

    Tuner.fit() ─ the controller loop, in this process:
        searcher.suggest ─► trial ─► a free slot (a warm, supervised actor): begin(trial)
        slot.next(decision) ─► a result ─► stop criteria, scheduler ─► decision ─► ...
        experiment_state.json rewritten after every change (Tuner.restore reads it)

Each slot runs one trial at a time and then the next, so a trial starts in milliseconds on
a process that is already up. A trial that raises, or whose process dies (the slot's
supervisor then rebuilds the slot), is restarted from its latest checkpoint while
``FailureConfig.max_failures`` allows, and ends in ERROR otherwise; the other trials go on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

import zactor
from zactor import supervision
from zactor.exceptions import ActorError
from zactor.train.checkpoint import Checkpoint
from zactor.train.config import CheckpointConfig, FailureConfig, RunConfig, default_storage_path
from zactor.tune import _status
from zactor.tune._slot import _TrialSlot
from zactor.tune.result_grid import Result, ResultGrid
from zactor.tune.schedulers import FIFOScheduler, TrialScheduler
from zactor.tune.search import BasicVariantGenerator, Searcher
from zactor.tune.trainable import is_class_trainable, trial_resources

log = logging.getLogger(__name__)

STATE_FILE = "experiment_state.json"
TUNER_FILE = "tuner.pkl"
SEARCHER_FILE = "searcher.pkl"
#: Results are saved to the experiment state at most this often (status changes and
#: checkpoints at once).
STATE_SAVE_INTERVAL_S = 0.5
#: How long a stopped trial's function may take to reach its next report; past that, its
#: slot's process is ended and restarted, so that it never runs beside the next trial.
STOP_GRACE_S = 2.0


@dataclass
class TuneConfig:
    """How trials are chosen and run: ``metric``/``mode`` to rank them, ``num_samples``
    passes over the space, ``search_alg``, ``scheduler``, ``max_concurrent_trials``,
    ``time_budget_s``, ``reuse_actors`` (zactor always runs trials on warm slots)."""

    metric: str | None = None
    mode: str | None = None
    search_alg: Searcher | None = None
    scheduler: TrialScheduler | None = None
    num_samples: int = 1
    max_concurrent_trials: int | None = None
    time_budget_s: float | None = None
    reuse_actors: bool | None = None
    trial_name_creator: Any = None
    trial_dirname_creator: Any = None

    def __post_init__(self) -> None:
        if self.mode not in (None, "min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {self.mode!r}")
        if not isinstance(self.num_samples, int) or self.num_samples == 0 or \
                self.num_samples < -1:
            raise ValueError(f"num_samples must be a positive integer (or -1), got "
                             f"{self.num_samples!r}")
        if self.max_concurrent_trials is not None and self.max_concurrent_trials < 1:
            raise ValueError("max_concurrent_trials must be positive")


@dataclass
class _Trial:
    trial_id: str
    config: dict
    trial_dir: str
    status: str = "PENDING"  # RUNNING, PAUSED, TERMINATED, ERROR
    last_result: dict | None = None
    history: list = field(default_factory=list)
    checkpoint: str | None = None  # the latest checkpoint's path
    checkpoints: list = field(default_factory=list)  # [path, result] kept
    iteration: int = 0
    checkpoint_iteration: int = 0
    num_failures: int = 0
    error: BaseException | None = None
    error_text: str = ""
    time_total: float = 0.0

    def state(self) -> dict:
        """What the experiment state keeps of the trial (its results are in its
        result.json)."""
        out = {name: getattr(self, name) for name in _SAVED}
        out["error"] = self.error_text or (repr(self.error) if self.error else "")
        return out

    @classmethod
    def from_state(cls, state: dict) -> _Trial:
        error = state.pop("error", "")
        trial = cls(**{k: v for k, v in state.items() if k in _SAVED})
        if error:
            trial.error = RuntimeError(error)
        results = os.path.join(trial.trial_dir, "result.json")
        if os.path.exists(results):
            with open(results) as f:
                trial.history = [json.loads(line) for line in f if line.strip()]
        return trial


_SAVED = ("trial_id", "config", "trial_dir", "status", "last_result", "checkpoint",
          "checkpoints", "iteration", "checkpoint_iteration", "num_failures", "error_text",
          "time_total")


class Tuner:
    """Example::

        def objective(config):
            for step in range(10):
                tune.report({"loss": (config["x"] - 3) ** 2 / (step + 1)})

        grid = tune.Tuner(objective, param_space={"x": tune.uniform(0, 10)},
                          tune_config=tune.TuneConfig(metric="loss", mode="min",
                                                      num_samples=20)).fit()
        print(grid.get_best_result().config)
    """

    def __init__(self, trainable: Any = None, *, param_space: dict | None = None,
                 tune_config: TuneConfig | None = None,
                 run_config: RunConfig | None = None) -> None:
        if trainable is None or not callable(trainable):
            raise TypeError("Tuner needs a trainable: a function or a tune.Trainable class")
        self.trainable = trainable
        self.param_space = dict(param_space or {})
        self.tune_config = tune_config or TuneConfig()
        self.run_config = run_config or RunConfig()
        self._restored: list[_Trial] | None = None
        self._searcher_state: Any = None
        self._results: ResultGrid | None = None
        name = self.run_config.name or f"{_name(trainable)}_{time.strftime('%Y-%m-%d_%H-%M-%S')}"
        self._path = os.path.join(os.path.expanduser(
            self.run_config.storage_path or default_storage_path()), name)

    # -- restoring --------------------------------------------------------------------------

    @classmethod
    def can_restore(cls, path: str | os.PathLike) -> bool:
        """Whether ``path`` holds an experiment that ``Tuner.restore`` can resume."""
        path = os.path.expanduser(os.fspath(path))
        return os.path.exists(os.path.join(path, STATE_FILE)) and \
            os.path.exists(os.path.join(path, TUNER_FILE))

    @classmethod
    def restore(cls, path: str | os.PathLike, trainable: Any, *,
                resume_unfinished: bool = True, resume_errored: bool = False,
                restart_errored: bool = False, param_space: dict | None = None) -> Tuner:
        """The experiment at ``path``, to ``fit()`` again: finished trials stay finished,
        the others resume from their latest checkpoints; errored ones resume
        (``resume_errored``), start over (``restart_errored``) or stay errored."""
        path = os.path.expanduser(os.fspath(path))
        if not cls.can_restore(path):
            raise FileNotFoundError(f"{path} holds no Tuner experiment to restore")
        with open(os.path.join(path, TUNER_FILE), "rb") as f:
            saved = cloudpickle.load(f)
        tuner = cls(trainable, param_space=param_space or saved["param_space"],
                    tune_config=saved["tune_config"], run_config=saved["run_config"])
        tuner._path = path
        with open(os.path.join(path, STATE_FILE)) as f:
            state = json.load(f)
        trials = []
        for entry in state["trials"]:
            trial = _Trial.from_state(entry)
            if trial.status == "ERROR" and (resume_errored or restart_errored):
                trial.status, trial.error, trial.error_text = "PENDING", None, ""
                trial.num_failures = 0
                if restart_errored:
                    trial.checkpoint, trial.checkpoints, trial.iteration = None, [], 0
                    trial.checkpoint_iteration, trial.last_result = 0, None
                    _keep_results(trial)
            elif trial.status in ("RUNNING", "PENDING", "PAUSED"):
                trial.status = "PENDING" if resume_unfinished else "TERMINATED"
                trial.iteration = trial.checkpoint_iteration if trial.checkpoint else 0
                _keep_results(trial)
            trials.append(trial)
        tuner._restored = trials
        searcher_file = os.path.join(path, SEARCHER_FILE)
        if os.path.exists(searcher_file):
            with open(searcher_file, "rb") as f:
                tuner._searcher_state = cloudpickle.load(f)
        return tuner

    # -- running ----------------------------------------------------------------------------

    def fit(self) -> ResultGrid:
        """Run the trials; the ``ResultGrid`` of all of them (errored trials included:
        see ``errors``)."""
        if not zactor.is_initialized():
            zactor.init()
        self._results = _Experiment(self).run()
        return self._results

    def get_results(self) -> ResultGrid:
        if self._results is None:
            raise RuntimeError("fit() has not run yet")
        return self._results


def _name(trainable: Any) -> str:
    return getattr(trainable, "__name__", type(trainable).__name__)


class _Experiment:
    """One ``fit()``: the controller loop."""

    def __init__(self, tuner: Tuner) -> None:
        self.tuner = tuner
        self.tc, self.rc = tuner.tune_config, tuner.run_config
        self.path = tuner._path
        os.makedirs(self.path, exist_ok=True)
        self.metric, self.mode = self.tc.metric, self.tc.mode
        self.ckpt_config: CheckpointConfig = self.rc.checkpoint_config or CheckpointConfig()
        self.failure: FailureConfig = self.rc.failure_config or FailureConfig()
        self.scheduler = self.tc.scheduler or FIFOScheduler()
        self.scheduler.set_search_properties(self.metric, self.mode)
        self.searcher = self.tc.search_alg or BasicVariantGenerator()
        num = self.tc.num_samples if self.tc.num_samples > 0 else 10**9
        self.searcher.set_search_properties(self.metric, self.mode, tuner.param_space,
                                            num_samples=num)
        if tuner._searcher_state is not None:
            self.searcher = tuner._searcher_state
        self.trials: list[_Trial] = list(tuner._restored or [])
        self.suggested = len(self.trials)
        self.max_trials = None if isinstance(self.searcher, BasicVariantGenerator) else num
        self.searcher_done = False
        self.exp_id = uuid.uuid4().hex[:5]
        self.started = time.monotonic()
        self.last_save = 0.0
        self.dirty = self.urgent = False
        self.status = _status.Reporter(self.metric, self.rc.verbose)
        self._save_tuner()

    def _save_tuner(self) -> None:
        _atomic_write(os.path.join(self.path, TUNER_FILE), cloudpickle.dumps({
            "param_space": self.tuner.param_space, "tune_config": self.tc,
            "run_config": self.rc}))

    def save_state(self, force: bool = False) -> None:
        """Mark the state changed (``force``: a trial's status or checkpoint, saved at the
        end of this pass of the loop); results alone are saved every
        STATE_SAVE_INTERVAL_S."""
        self.dirty = True
        self.urgent = self.urgent or force

    def flush_state(self, always: bool = False) -> None:
        now = time.monotonic()
        if not always and not self.urgent and (
                not self.dirty or now - self.last_save < STATE_SAVE_INTERVAL_S):
            return
        self.last_save, self.dirty, self.urgent = now, False, False
        state = {"trials": [t.state() for t in self.trials], "name": os.path.basename(
            self.path), "timestamp": time.time()}
        _atomic_write(os.path.join(self.path, STATE_FILE),
                      json.dumps(state, default=_jsonable).encode())
        try:
            blob = cloudpickle.dumps(self.searcher)
        except Exception:  # noqa: BLE001 - a searcher that cannot be saved is not restored
            return
        _atomic_write(os.path.join(self.path, SEARCHER_FILE), blob)

    # -- trials ---------------------------------------------------------------------------

    def _next_trial(self) -> _Trial | None:
        for trial in self.trials:
            if trial.status == "PENDING" and not getattr(trial, "_queued", False):
                trial._queued = True
                return trial
        if self.searcher_done or (self.max_trials is not None and
                                  self.suggested >= self.max_trials):
            return None
        trial_id = f"{self.exp_id}_{self.suggested:05d}"
        config = self.searcher.suggest(trial_id)
        if config == Searcher.FINISHED:
            self.searcher_done = True
            return None
        if config is None:
            return None  # the searcher is waiting for results
        self.suggested += 1
        name = f"{_name(self.tuner.trainable)}_{trial_id}"
        if self.tc.trial_dirname_creator is not None:
            name = self.tc.trial_dirname_creator(_Named(trial_id, config))
        trial = _Trial(trial_id, config, os.path.join(self.path, name))
        trial._queued = True
        self.trials.append(trial)
        self.scheduler.on_trial_add(trial)
        self.save_state(force=True)
        return trial

    def _slot_count(self) -> tuple[int, dict]:
        limit = self.tc.max_concurrent_trials
        sample_config = self.trials[0].config if self.trials else {}
        res = trial_resources(self.tuner.trainable, sample_config)
        cluster = zactor.cluster_resources()
        fits = math.inf
        for name, amount in res.items():
            if amount > 0:
                fits = min(fits, math.floor(cluster.get(name, 0.0) / amount + 1e-9))
        if fits == 0:
            raise ValueError(f"one trial needs {res}, more than the cluster has "
                             f"({cluster})")
        total = None
        if isinstance(self.searcher, BasicVariantGenerator) and self.tuner._restored is None:
            total = self.searcher.total()
        elif self.tuner._restored is not None:
            total = max(1, sum(1 for t in self.trials if t.status == "PENDING"))
        n = min(x for x in (limit, fits if fits != math.inf else 64, total, 64) if x)
        return max(1, int(n)), res

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> ResultGrid:
        n, res = self._slot_count()
        options = {"num_cpus": res.get("CPU", 0.0), "num_gpus": res.get("GPU", 0.0),
                   "resources": {k: v for k, v in res.items() if k not in ("CPU", "GPU")},
                   "max_concurrency": 4}  # the trial's function thread needs the main one
        sup = supervision.start(
            [supervision.ChildSpec(f"slot-{i}", _TrialSlot, options=options)
             for i in range(n)],
            name=f"tune-{self.exp_id}-{uuid.uuid4().hex[:6]}", strategy="one_for_one",
            max_restarts=1_000_000, period=1.0, backoff_initial=0.0)
        slots = [sup.child(f"slot-{i}") for i in range(n)]
        self.sup, self.slots, self.slot_restarts = sup, slots, [0] * n
        free = list(range(n))
        running: dict[Any, tuple[_Trial, int]] = {}
        stop_all = False
        try:
            while True:
                budget_over = self.tc.time_budget_s is not None and \
                    time.monotonic() - self.started > self.tc.time_budget_s
                if budget_over or stop_all:
                    for ref, (trial, i) in list(running.items()):
                        del running[ref]
                        self._finish(trial, "TERMINATED")
                        free.append(i)
                    break
                while free:
                    trial = self._next_trial()
                    if trial is None:
                        break
                    i = free.pop(0)
                    running[self._begin(slots[i], trial)] = (trial, i)
                if not running:
                    break
                ready, _ = zactor.wait(list(running), num_returns=1,
                                       timeout=self.status.interval)
                for ref in ready:
                    trial, i = running.pop(ref)
                    follow, stop_all = self._handle(ref, trial, slots, sup, i, stop_all)
                    if follow is not None:
                        running[follow] = (trial, i)
                    else:
                        free.append(i)
                self.status.maybe_print(self.trials)
                self.flush_state()
        finally:
            self.flush_state(always=True)
            self.status.final(self.trials)
            sup.stop()
        return self._grid()

    def _begin(self, slot, trial: _Trial):
        trial.status = "RUNNING"
        trial._began = time.monotonic()
        trial._since_restore = 0
        self.status.changed(trial)
        self.save_state(force=True)
        return slot.begin.remote(self.tuner.trainable, trial.config, trial.trial_id,
                                 trial.trial_dir, trial.checkpoint, trial.iteration,
                                 self.ckpt_config.checkpoint_frequency)

    def _handle(self, ref, trial: _Trial, slots: list, sup, i: int, stop_all: bool):
        """What the slot's answer means; the next call to wait for on this slot, if any."""
        slot = slots[i]
        try:
            batch = zactor.get(ref)
        except ActorError as exc:  # the slot's process died: its supervisor rebuilds it
            self._wait_restart(sup, i)
            return self._failed(trial, exc, "", slot), stop_all
        except Exception as exc:  # noqa: BLE001 - the trainable failed to start
            return self._failed(trial, exc, "", slot), stop_all
        for kind, value, extra in batch:
            if kind == "done":
                self._finish(trial, "TERMINATED")
                return None, stop_all
            if kind == "error":
                follow = self._failed(trial, value, extra, slot)
                if trial.status == "ERROR" and self.failure.fail_fast:
                    stop_all = True
                return follow, stop_all
            decision = self._decide(trial, self._record(trial, value, extra))
            if decision in ("STOP_ALL", TrialScheduler.STOP):
                # the results after this one are dropped
                self._finish(trial, "TERMINATED")
                self._stop_on(i)
                return None, stop_all or decision == "STOP_ALL"
            if decision == TrialScheduler.PAUSE:
                follow = self._exploit(trial, i)
                if follow is not None:
                    return follow, stop_all
        return slot.next.remote("CONTINUE"), stop_all

    def _record(self, trial: _Trial, metrics: dict, checkpoint: str | None) -> dict:
        now = time.monotonic()
        trial.iteration += 1
        trial._since_restore += 1
        this_iter = now - getattr(trial, "_last", trial._began)
        trial._last = now
        trial.time_total += this_iter
        result = {**metrics, "training_iteration": trial.iteration,
                  "iterations_since_restore": trial._since_restore,
                  "time_this_iter_s": this_iter, "time_total_s": trial.time_total,
                  "timestamp": int(time.time()), "trial_id": trial.trial_id,
                  "done": bool(metrics.get("done", False))}
        trial.last_result = result
        trial.history.append(result)
        if checkpoint is not None:
            trial.checkpoint, trial.checkpoint_iteration = checkpoint, trial.iteration
            trial.checkpoints.append([checkpoint, result])
            self._prune(trial)
            self.save_state(force=True)
        with open(os.path.join(trial.trial_dir, "result.json"), "a") as f:
            f.write(json.dumps(result, default=_jsonable) + "\n")
        self.save_state()
        self.searcher.on_trial_result(trial.trial_id, result)
        return result

    def _prune(self, trial: _Trial) -> None:
        keep = self.ckpt_config.num_to_keep
        if keep is None or len(trial.checkpoints) <= keep:
            return
        attr, order = self.ckpt_config.checkpoint_score_attribute, \
            self.ckpt_config.checkpoint_score_order

        def score(entry):
            if attr is None:
                return entry[1]["training_iteration"]
            value = entry[1].get(attr)
            if not isinstance(value, (int, float)):
                return -math.inf
            return value if order == "max" else -value

        latest = trial.checkpoints[-1]
        chosen = {id(e) for e in sorted(trial.checkpoints, key=score, reverse=True)[:keep]}
        chosen.add(id(latest))
        for entry in trial.checkpoints:
            if id(entry) not in chosen:
                shutil.rmtree(entry[0], ignore_errors=True)
        trial.checkpoints = [e for e in trial.checkpoints if id(e) in chosen]

    def _decide(self, trial: _Trial, result: dict) -> str:
        stop = self.rc.stop
        if result.get("done"):
            return TrialScheduler.STOP
        if isinstance(stop, dict):
            if any(isinstance(result.get(k), (int, float)) and result[k] >= v
                   for k, v in stop.items()):
                return TrialScheduler.STOP
        elif stop is not None:
            if callable(getattr(stop, "stop_all", None)) and stop.stop_all():
                return "STOP_ALL"
            if stop(trial.trial_id, result):
                return TrialScheduler.STOP
        return self.scheduler.on_trial_result(trial, result)

    def _stop_on(self, i: int) -> None:
        """End the trial running on slot ``i``; a function that does not reach its next
        report within STOP_GRACE_S goes with its process (the supervisor rebuilds it)."""
        slot = self.slots[i]
        try:
            ended = zactor.get(slot.stop.remote(STOP_GRACE_S))
        except ActorError:
            ended = False
        if not ended:
            slot.exit.remote()
            self._wait_restart(self.sup, i)

    def _exploit(self, trial: _Trial, i: int):
        """PBT: restart ``trial`` from a better trial's checkpoint with a new config."""
        slot = self.slots[i]
        choice = self.scheduler.exploit(trial, self.trials)
        if choice is None:
            if trial.checkpoint is None and is_class_trainable(self.tuner.trainable):
                self._save_now(trial, slot)  # so that it can be a donor later
            return None
        donor, config = choice
        target = os.path.join(trial.trial_dir, f"checkpoint_{trial.iteration:06d}_from_"
                              f"{donor.trial_id}")
        shutil.copytree(donor.checkpoint, target, dirs_exist_ok=True)
        log.info("PBT: trial %s takes trial %s's checkpoint and config %s", trial.trial_id,
                 donor.trial_id, config)
        trial.config, trial.checkpoint = config, target
        trial.checkpoint_iteration = trial.iteration
        self.save_state(force=True)
        self._stop_on(i)
        return self._begin(self.slots[i], trial)

    def _save_now(self, trial: _Trial, slot) -> None:
        path = zactor.get(slot.save.remote())
        if path:
            trial.checkpoint, trial.checkpoint_iteration = path, trial.iteration
            trial.checkpoints.append([path, trial.last_result])

    def _failed(self, trial: _Trial, exc: BaseException, text: str, slot):
        trial.num_failures += 1
        if self.failure.allows(trial.num_failures):
            log.warning("trial %s failed (%d of %s retries); restarting it from %s: %s",
                        trial.trial_id, trial.num_failures, self.failure.max_failures,
                        trial.checkpoint or "the start", exc)
            trial.iteration = trial.checkpoint_iteration if trial.checkpoint else 0
            _keep_results(trial)
            trial._last = time.monotonic()
            return self._begin(slot, trial)
        trial.error, trial.error_text = exc, f"{type(exc).__name__}: {exc}\n{text}".rstrip()
        self._finish(trial, "ERROR")
        return None

    def _wait_restart(self, sup, i: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            child = sup.which_children()[i]
            if child["state"] == "alive" and child["restarts"] > self.slot_restarts[i]:
                self.slot_restarts[i] = child["restarts"]
                return
            time.sleep(0.02)
        raise RuntimeError("a trial slot was not restarted within 60 s")

    def _finish(self, trial: _Trial, status: str) -> None:
        trial.status = status
        if status == "ERROR":
            self.searcher.on_trial_complete(trial.trial_id, trial.last_result, error=True)
            self.scheduler.on_trial_remove(trial)
        else:
            self.searcher.on_trial_complete(trial.trial_id, trial.last_result)
            self.scheduler.on_trial_complete(trial, trial.last_result)
        self.status.changed(trial)
        self.save_state(force=True)

    def _grid(self) -> ResultGrid:
        results = []
        for trial in self.trials:
            kept = [(Checkpoint(p), m) for p, m in trial.checkpoints if os.path.exists(p)]
            results.append(Result(
                metrics=trial.last_result, checkpoint=Checkpoint(trial.checkpoint)
                if trial.checkpoint and os.path.exists(trial.checkpoint) else None,
                path=trial.trial_dir, error=trial.error, best_checkpoints=kept,
                num_failures=trial.num_failures, _metrics_history=list(trial.history),
                config=trial.config))
        return ResultGrid(results, self.path, self.metric, self.mode)


def _keep_results(trial: _Trial) -> None:
    """Forget the results after ``trial.iteration`` (a restart from a checkpoint runs those
    iterations again), in memory and in its result.json."""
    trial.history = trial.history[:trial.iteration]
    path = os.path.join(trial.trial_dir, "result.json")
    if os.path.exists(path):
        _atomic_write(path, "".join(json.dumps(r, default=_jsonable) + "\n"
                                    for r in trial.history).encode())


class _Named:
    """What ``trial_name_creator`` / ``trial_dirname_creator`` get (a trial's id and
    config)."""

    def __init__(self, trial_id: str, config: dict) -> None:
        self.trial_id, self.config = trial_id, config

    def __str__(self) -> str:
        return self.trial_id


def _atomic_write(path: str, data: bytes) -> None:
    # A rename: a driver killed mid-write leaves the previous state, never half of one.
    # (No fsync: the case is a dead process, not a dead machine, and it would cost a disk
    # flush per trial.)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return repr(value)

