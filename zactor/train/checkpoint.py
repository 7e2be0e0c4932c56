"""``Checkpoint``: a directory of files, local or on any fsspec filesystem (Ray's
``ray.train.Checkpoint``).

A worker makes one from a local directory (``Checkpoint.from_directory``) and passes it to
``report``; the run copies it under its ``storage_path``, and from then on the checkpoint is
that persisted directory. Metadata is a JSON file inside it, so it travels with the files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import fsspec

METADATA_FILE = ".metadata.json"


class Checkpoint:
    """A directory at ``path`` on ``filesystem`` (an fsspec filesystem; local by default,
    or taken from the path's scheme, e.g. ``s3://``).

    Example::

        with tempfile.TemporaryDirectory() as d:
            torch.save(model.state_dict(), os.path.join(d, "model.pt"))
            zactor.train.report({"loss": loss}, checkpoint=Checkpoint.from_directory(d))
    """

    def __init__(self, path: str | os.PathLike, filesystem: Any = None) -> None:
        path = os.fspath(path)
        if filesystem is None:
            filesystem, path = fsspec.core.url_to_fs(path)
        self.path: str = path
        self.filesystem = filesystem

    @classmethod
    def from_directory(cls, path: str | os.PathLike) -> Checkpoint:
        """The checkpoint that is the directory at ``path`` (it must exist)."""
        ckpt = cls(path)
        if not ckpt.filesystem.isdir(ckpt.path):
            raise FileNotFoundError(f"checkpoint directory {os.fspath(path)} does not exist")
        return ckpt

    @property
    def _local(self) -> bool:
        return "file" in _protocols(self.filesystem)

    def to_directory(self, path: str | os.PathLike | None = None) -> str:
        """Copy the checkpoint's files into the local directory ``path`` (a new temporary
        one by default) and return it."""
        target = os.fspath(path) if path is not None else os.path.join(
            tempfile.gettempdir(), f"checkpoint_tmp_{uuid.uuid4().hex}")
        os.makedirs(target, exist_ok=True)
        if self._local:
            shutil.copytree(self.path, target, dirs_exist_ok=True)
        else:
            self.filesystem.get(self.path.rstrip("/") + "/", target, recursive=True)
        return target

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        """A local directory with the checkpoint's files for the ``with`` block: the
        checkpoint itself when it is local (do not write to it), else a temporary copy."""
        if self._local:
            yield self.path
            return
        target = self.to_directory()
        try:
            yield target
        finally:
            shutil.rmtree(target, ignore_errors=True)

    def get_metadata(self) -> dict[str, Any]:
        """The metadata stored with the checkpoint ({} if none)."""
        meta = f"{self.path.rstrip('/')}/{METADATA_FILE}"
        if not self.filesystem.exists(meta):
            return {}
        with self.filesystem.open(meta, "r") as f:
            return json.load(f)

    def set_metadata(self, metadata: dict[str, Any]) -> None:
        """Replace the checkpoint's metadata (a JSON-serialisable dict)."""
        text = json.dumps(metadata)
        with self.filesystem.open(f"{self.path.rstrip('/')}/{METADATA_FILE}", "w") as f:
            f.write(text)

    def update_metadata(self, metadata: dict[str, Any]) -> None:
        """Add ``metadata``'s keys to the checkpoint's metadata."""
        self.set_metadata({**self.get_metadata(), **metadata})

    def __fspath__(self) -> str:
        return self.path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Checkpoint) and (self.path, _protocols(self.filesystem)) == \
            (other.path, _protocols(other.filesystem))

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"Checkpoint(filesystem={_protocols(self.filesystem)[0]}, path={self.path})"


def _protocols(fs) -> tuple:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)
