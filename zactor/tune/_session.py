"""Inside a trial: ``tune.report`` and ``tune.get_checkpoint`` (function trainables).

The function runs in a thread of the trial's actor. ``report`` saves the checkpoint into
the trial's directory (under a staging name, then renamed: never half written), hands the
result to the tuner through the actor, and waits for the tuner's decision: go on, or stop
(the function is then unwound by ``_StopTrial``, which the actor catches).
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
from typing import Any

from zactor.train.checkpoint import Checkpoint


class _StopTrial(BaseException):  # noqa: N818 - a signal, not an error
    """Raised in the trial's function by ``report`` when the tuner stops the trial."""


class _TrialSession:
    def __init__(self, trial_id: str, trial_dir: str, checkpoint: Checkpoint | None,
                 iteration: int) -> None:
        self.trial_id, self.trial_dir = trial_id, trial_dir
        self.checkpoint = checkpoint
        self.iteration = iteration  # results reported so far, restarts included
        self.results: queue.Queue = queue.Queue()  # to the tuner
        self.decisions: queue.Queue = queue.Queue()  # from the tuner
        self.lock = threading.Lock()

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
    session.results.put(("result", dict(metrics), path))
    if session.decisions.get() == "STOP":
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
