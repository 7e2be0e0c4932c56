"""Inside a trial: ``tune.report`` and ``tune.get_checkpoint`` (function trainables).

The function runs in a thread of the trial's actor. ``report`` saves the checkpoint into
the trial's directory (under a staging name, then renamed: never half written), hands the
result to the tuner through the actor, and goes on while the tuner has decided on all but
``AHEAD`` of its results (so that the function and the tuner work at the same time, and
results travel in batches); a trial the tuner stops is unwound at its next report by
``_StopTrial``, which the actor catches.
"""

from __future__ import annotations

import os
import shutil
import threading
from typing import Any

from zactor.train.checkpoint import Checkpoint


class _StopTrial(BaseException):  # noqa: N818 - a signal, not an error
    """Raised in the trial's function by ``report`` when the tuner stops the trial."""


#: How many results a function may make before the tuner has decided on them (so that
#: the function goes on while results travel); a trial stopped after result k may have
#: made up to this many more, which are dropped.
AHEAD = 4


class _TrialSession:
    def __init__(self, trial_id: str, trial_dir: str, checkpoint: Checkpoint | None,
                 iteration: int) -> None:
        self.trial_id, self.trial_dir = trial_id, trial_dir
        self.checkpoint = checkpoint
        self.iteration = iteration  # results reported so far, restarts included
        self.cond = threading.Condition()
        self.buffer: list[tuple] = []  # ("result", metrics, path) / ("done"|"error", ...)
        self.produced = 0  # results made
        self.delivered = 0  # results handed to the tuner
        self.decided = 0  # results the tuner has decided on (all: go on)
        self.stopped = False

    def put(self, item: tuple) -> None:
        with self.cond:
            self.buffer.append(item)
            self.cond.notify_all()

    def take(self, decided: bool) -> list[tuple]:
        """For the tuner: the items made since the last take (waiting for one); with
        ``decided``, the results handed out before were all let go on."""
        with self.cond:
            if decided:
                self.decided = self.delivered
                self.cond.notify_all()
            while not self.buffer:
                self.cond.wait()
            batch, self.buffer = self.buffer, []
            self.delivered += sum(1 for item in batch if item[0] == "result")
            return batch

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()

    def save(self, local_dir: str) -> str:
        """``local_dir``'s files as the trial's checkpoint for this iteration."""
        final = os.path.join(self.trial_dir, f"checkpoint_{self.iteration:06d}")
        staging = os.path.join(self.trial_dir, f".staging_{self.iteration:06d}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(local_dir, staging)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(staging, final)
        return final


_session: _TrialSession | None = None


def _set_session(session: _TrialSession | None) -> None:
    global _session
    _session = session


def report(metrics: dict[str, Any], *, checkpoint: Checkpoint | None = None) -> None:
    """Report one iteration's ``metrics`` (and a checkpoint to resume from) to the tuner.

    Example::

        for step in range(100):
            tune.report({"loss": loss(step)})
    """
    session = _session
    if session is None:
        raise RuntimeError("tune.report() is only available inside a trial run by a Tuner")
    if not isinstance(metrics, dict):
        raise TypeError(f"report() takes a dict of metrics, got {type(metrics).__name__}")
    path = None
    session.iteration += 1
    if checkpoint is not None:
        with checkpoint.as_directory() as local:
            path = session.save(local)
        session.checkpoint = Checkpoint(path)
    with session.cond:
        if session.stopped:
            raise _StopTrial()
        session.buffer.append(("result", dict(metrics), path))
        session.produced += 1
        session.cond.notify_all()
        # A result with a checkpoint waits until the tuner has it, so a trial that dies
        # later resumes from that checkpoint: only results after it can be lost, and those
        # are made again from it anyway.
        ahead = 0 if path is not None else AHEAD
        while not session.stopped and session.produced - session.decided > ahead:
            session.cond.wait()
        if session.stopped:
            raise _StopTrial()


def get_checkpoint() -> Checkpoint | None:
    """The checkpoint this trial resumes from (after a restart, a PBT exploit, or
    ``Tuner.restore``); None at a fresh start."""
    session = _session
    if session is None:
        raise RuntimeError("tune.get_checkpoint() is only available inside a trial")
    return session.checkpoint


def get_trial_id() -> str:
    session = _session
    return session.trial_id if session is not None else ""


def get_trial_dir() -> str:
    session = _session
    return session.trial_dir if session is not None else ""
