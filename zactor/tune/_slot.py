"""A trial slot: a warm, supervised actor that runs one trial after another.

The tuner keeps one slot per trial that may run at once, under a ``one_for_one``
supervisor; a new trial on a slot costs one actor call, not a process start. ``begin``
starts a trial; each ``next(decision)`` gives the tuner the trial's results made since the
last call, then ``("done", None, None)`` when it has ended, or ``("error", exc,
traceback)``.
"""

from __future__ import annotations

import os
import tempfile
import threading
import traceback
from typing import Any

import zactor
from zactor.train._worker_group import _picklable
from zactor.train.checkpoint import Checkpoint
from zactor.tune import _session
from zactor.tune.trainable import Trainable, is_class_trainable


@zactor.remote
class _TrialSlot:
    def __init__(self) -> None:
        self.session: _session._TrialSession | None = None
        self.thread: threading.Thread | None = None
        self.instance: Trainable | None = None
        self.started = False
        self.checkpoint_frequency = 0

    def start(self, trainable: Any, config: dict, trial_id: str, trial_dir: str,
              checkpoint_path: str | None, iteration: int, checkpoint_frequency: int) -> bool:
        self.stop()
        os.makedirs(trial_dir, exist_ok=True)
        ckpt = Checkpoint(checkpoint_path) if checkpoint_path else None
        session = _session._TrialSession(trial_id, trial_dir, ckpt, iteration)
        self.session, self.started = session, False
        self.checkpoint_frequency = checkpoint_frequency
        if is_class_trainable(trainable):
            self.instance = trainable(config)
            self.instance.iteration = iteration
            if ckpt is not None:
                self.instance.load_checkpoint(ckpt.path)
            return True
        self.instance = None

        def main() -> None:
            _session._set_session(session)
            try:
                out = trainable(config)
                if isinstance(out, dict):  # a function may return its last result
                    session.iteration += 1
                    session.put(("result", out, None))
                session.put(("done", None, None))
            except _session._StopTrial:
                session.put(("done", None, None))
            except BaseException as exc:  # noqa: BLE001 - it goes to the tuner
                session.put(("error", _picklable(exc), traceback.format_exc()))

        self.thread = threading.Thread(target=main, daemon=True, name="zactor-trial")
        self.thread.start()
        return True

    def begin(self, *args) -> list[tuple]:
        """``start`` a trial, and its first answer (one call: a threaded actor would run
        two calls at once)."""
        self.start(*args)
        return self.next(None)

    def next(self, decision: str | None) -> list[tuple]:
        """The trial's items since the last call: ``("result", metrics, checkpoint
        path)``, then ``("done", None, None)`` or ``("error", exc, traceback)`` at the end;
        ``decision`` ("CONTINUE") lets the function go on past the results handed out."""
        if self.instance is not None:
            return [self._step(decision)]
        decided, self.started = self.started, True
        return self.session.take(decided)

    def _step(self, decision: str | None) -> tuple:
        instance, session = self.instance, self.session
        if decision == "STOP":
            return ("done", None, None)
        try:
            metrics = instance.step()
            instance.iteration += 1
            session.iteration = instance.iteration
            path = None
            if not isinstance(metrics, dict):
                raise TypeError(f"{type(instance).__name__}.step() must return a dict, got "
                                f"{type(metrics).__name__}")
            freq = self.checkpoint_frequency
            if freq and instance.iteration % freq == 0 or metrics.get("done"):
                path = self._save_class()
            return ("result", metrics, path)
        except BaseException as exc:  # noqa: BLE001
            return ("error", _picklable(exc), traceback.format_exc())

    def _save_class(self) -> str:
        with tempfile.TemporaryDirectory() as d:
            self.instance.save_checkpoint(d)
            path = self.session.save(d)
        self.session.checkpoint = Checkpoint(path)
        return path

    def save(self) -> str | None:
        """A checkpoint of the trial now (class trainables; functions: their latest)."""
        if self.instance is not None:
            return self._save_class()
        ckpt = self.session.checkpoint if self.session else None
        return ckpt.path if ckpt else None

    def stop(self, grace_s: float = 10.0) -> bool:
        """End the current trial: its function is unwound at its next report. False if it
        did not get there within ``grace_s`` (the tuner then ends this process, so that no
        old trial runs beside the next one)."""
        if self.instance is not None:
            try:
                self.instance.cleanup()
            finally:
                self.instance = None
        ended = True
        if self.thread is not None and self.thread.is_alive() and self.session is not None:
            self.session.stop()
            self.thread.join(timeout=grace_s)
            ended = not self.thread.is_alive()
        self.thread = None
        _session._set_session(None)
        return ended

    def exit(self) -> None:
        os._exit(1)

