"""A run's directory under ``storage_path``: checkpoints written atomically, and the ones
kept by ``CheckpointConfig``.

    <storage_path>/<name>/
        .staging_<attempt>_<report>/   workers copy a report's checkpoint here (every rank)
        checkpoint_000003/             ... and it is renamed so once every rank reported
        checkpoints.json               the kept checkpoints and their metrics, rewritten
                                       (atomically) after every change

A checkpoint is only ever seen under its final name, so a crash while saving leaves a
staging directory, never a checkpoint that looks complete but is not; staging directories
are removed when the run starts again.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from typing import Any

import fsspec

from zactor.train.checkpoint import Checkpoint, _protocols
from zactor.train.config import CheckpointConfig

STATE_FILE = "checkpoints.json"


class RunStorage:
    """Paths of one run; picklable, so workers write into it too."""

    def __init__(self, storage_path: str, name: str, filesystem: Any = None) -> None:
        if filesystem is None:
            filesystem, root = fsspec.core.url_to_fs(os.path.expanduser(storage_path))
        else:
            root = storage_path
        self.fs = filesystem
        self.run_dir = f"{root.rstrip('/')}/{name}"
        self.local = "file" in _protocols(filesystem)

    def prepare(self) -> None:
        self.fs.makedirs(self.run_dir, exist_ok=True)
        self.clean_staging()

    def clean_staging(self) -> None:
        """Remove the staging directories (no worker of theirs runs any more)."""
        for path in self.fs.ls(self.run_dir, detail=False):
            if os.path.basename(path.rstrip("/")).startswith(".staging_"):
                self.fs.rm(path, recursive=True)

    def staging(self, attempt: int, report: int) -> str:
        return f"{self.run_dir}/.staging_{attempt}_{report}"

    def upload(self, local_dir: str, attempt: int, report: int) -> None:
        """Copy a worker's checkpoint directory into the report's staging directory (the
        ranks' files merge there, as in Ray)."""
        target = self.staging(attempt, report)
        if self.local:
            shutil.copytree(local_dir, target, dirs_exist_ok=True)
        else:
            self.fs.makedirs(target, exist_ok=True)
            self.fs.put(local_dir.rstrip("/") + "/", target, recursive=True)

    def commit(self, attempt: int, report: int, index: int) -> Checkpoint:
        """The staged checkpoint under its final name (a rename: atomic on a local disk)."""
        final = f"{self.run_dir}/checkpoint_{index:06d}"
        staged = self.staging(attempt, report)
        if self.local:
            os.rename(staged, final)
        else:
            self.fs.mv(staged, final, recursive=True)
        return Checkpoint(final, self.fs)

    def remove(self, ckpt: Checkpoint) -> None:
        self.fs.rm(ckpt.path, recursive=True)

    def save_state(self, state: dict) -> None:
        path = f"{self.run_dir}/{STATE_FILE}"
        text = json.dumps(state, default=_jsonable)
        if self.local:
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        else:
            with self.fs.open(path, "w") as f:
                f.write(text)

    def load_state(self) -> dict | None:
        path = f"{self.run_dir}/{STATE_FILE}"
        if not self.fs.exists(path):
            return None
        with self.fs.open(path, "r") as f:
            return json.load(f)


def _jsonable(value: Any) -> Any:
    try:
        return float(value)  # numpy scalars, torch scalars
    except (TypeError, ValueError):
        return repr(value)


class CheckpointManager:
    """The checkpoints a run keeps, with the metrics reported with each."""

    def __init__(self, config: CheckpointConfig, storage: RunStorage) -> None:
        self.config, self.storage = config, storage
        self.kept: list[tuple[Checkpoint, dict, int]] = []  # (checkpoint, metrics, index)
        self.next_index = 0
        state = storage.load_state()
        if state:  # a run of this name ran here before: resume from what it kept
            for entry in state["checkpoints"]:
                path = f"{storage.run_dir}/{entry['dir']}"
                if storage.fs.exists(path):
                    self.kept.append((Checkpoint(path, storage.fs), entry["metrics"],
                                      entry["index"]))
            self.next_index = state.get("next_index", len(self.kept))

    @property
    def latest(self) -> tuple[Checkpoint, dict] | None:
        if not self.kept:
            return None
        ckpt, metrics, _ = self.kept[-1]
        return ckpt, metrics

    def register(self, attempt: int, report: int, metrics: dict) -> Checkpoint:
        ckpt = self.storage.commit(attempt, report, self.next_index)
        self.kept.append((ckpt, metrics, self.next_index))
        self.next_index += 1
        self._prune()
        self.storage.save_state({
            "next_index": self.next_index,
            "checkpoints": [{"dir": os.path.basename(c.path), "metrics": m, "index": i}
                            for c, m, i in self.kept]})
        return ckpt

    def _score(self, entry: tuple) -> float:
        attr = self.config.checkpoint_score_attribute
        if attr is None:
            return entry[2]  # the most recent is the best
        value = entry[1].get(attr)
        if not isinstance(value, (int, float)) or math.isnan(value):
            return -math.inf
        return value if self.config.checkpoint_score_order == "max" else -value

    def _prune(self) -> None:
        keep = self.config.num_to_keep
        if keep is None or len(self.kept) <= keep:
            return
        latest = self.kept[-1]
        ranked = sorted(self.kept, key=self._score, reverse=True)
        chosen = {id(e) for e in ranked[:keep]} | {id(latest)}
        for entry in self.kept:
            if id(entry) not in chosen:
                self.storage.remove(entry[0])
        self.kept = [e for e in self.kept if id(e) in chosen]

    def best_checkpoints(self) -> list[tuple[Checkpoint, dict]]:
        return [(c, m) for c, m, _ in self.kept]
