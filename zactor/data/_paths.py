"""File paths of a read: files, directories (their files, recursively, hidden ones and
``_``-prefixed ones left out, as Ray does), globs; any scheme fsspec knows."""

from __future__ import annotations

import os

import fsspec


def expand(paths: str | list[str], suffixes: tuple[str, ...] | None = None) -> list[tuple]:
    """(filesystem, path) of every file to read, sorted; FileNotFoundError naming a path
    that matches nothing."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [os.fspath(paths)]
    out = []
    for path in paths:
        fs, root = fsspec.core.url_to_fs(os.fspath(path))
        if any(ch in root for ch in "*?["):
            found = [p for p in fs.glob(root) if fs.isfile(p)]
        elif fs.isdir(root):
            found = [p for p in fs.find(root) if not _hidden(p, root)]
        elif fs.exists(root):
            found = [root]
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
        if suffixes:
            found = [p for p in found if p.endswith(suffixes)] if os.path.isdir(root) or \
                any(ch in root for ch in "*?[") else found
        if not found:
            raise FileNotFoundError(f"{path} holds no file to read")
        out += [(fs, p) for p in sorted(found)]
    return out


def _hidden(path: str, root: str) -> bool:
    rel = os.path.relpath(path, root)
    return any(part.startswith((".", "_")) for part in rel.split(os.sep))
