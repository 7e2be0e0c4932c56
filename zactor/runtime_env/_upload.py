"""The driver's half of runtime environments: local directories, zips and wheels become
packages uploaded once to the head (named by the SHA-256 of their bytes), requirements
files become lists, and the environment that results is registered with the head.

Zips are written deterministically (sorted names, fixed timestamps), so the same files give
the same package, the same hash and the same cached copy on every node, whoever uploads
them. ``excludes`` are gitignore-style patterns, matched with pathspec (the library git's
own pattern rules are implemented in, and the one Ray uses), together with the directory's
top-level ``.gitignore``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import zipfile
from typing import TYPE_CHECKING, Any

from zactor import config
from zactor.runtime_env import _spec

if TYPE_CHECKING:
    from zactor._client import CoreClient

log = logging.getLogger(__name__)

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def resolve(core: CoreClient, env: dict) -> dict:
    """``env`` (validated) with its local paths uploaded: the form that travels."""
    if _spec.is_resolved(env):
        return env
    out = dict(env)
    excludes = env.get("excludes") or []
    if env.get("working_dir") and not env["working_dir"].startswith(_spec.SCHEME):
        out["working_dir"] = _upload_path(core, env["working_dir"], excludes, "working_dir",
                                          top=False)
    if env.get("py_modules"):
        out["py_modules"] = [
            m if m.startswith(_spec.SCHEME) else
            _upload_path(core, m, excludes, "py_modules", top=True)
            for m in env["py_modules"]]
    pip = env.get("pip")
    if pip is not None and isinstance(pip["packages"], str):
        out["pip"] = {**pip, "packages": _read_requirements(pip["packages"])}
    out.pop("excludes", None)
    return out


def _read_requirements(path: str) -> list[str]:
    try:
        with open(path) as f:
            lines = [line.split(" #")[0].strip() for line in f]
    except OSError as exc:
        raise ValueError(f"runtime_env['pip']: cannot read requirements file {path!r}: "
                         f"{exc.strerror}") from None
    return [line for line in lines if line and not line.startswith("#")]


def _upload_path(core: CoreClient, path: str, excludes: list[str], what: str,
                 top: bool) -> str:
    path = os.path.abspath(os.path.expanduser(path))
    limit = config.RUNTIME_ENV_PACKAGE_MAX
    if os.path.isdir(path):
        fd, tmp = tempfile.mkstemp(prefix="zactor-pkg-", suffix=".zip")
        os.close(fd)
        try:
            size = zip_directory(path, tmp, excludes, top, limit, what)
            return _upload_file(core, tmp, ".zip", f"{what} {path!r} ({size / 2**20:.1f} MiB)")
        finally:
            os.unlink(tmp)
    if os.path.isfile(path) and path.endswith((".zip", ".whl")):
        size = os.path.getsize(path)
        if size > limit:
            raise ValueError(_too_big(what, path, size, limit))
        if what == "working_dir":
            fd, tmp = tempfile.mkstemp(prefix="zactor-pkg-", suffix=".zip")
            os.close(fd)
            try:
                if _without_top_directory(path, tmp):
                    return _upload_file(core, tmp, ".zip", f"{what} {path!r}")
            finally:
                os.unlink(tmp)
        return _upload_file(core, path, path[-4:], f"{what} {path!r}")
    if os.path.exists(path):
        raise ValueError(f"runtime_env['{what}'] = {path!r} must be a directory, a .zip or "
                         "(py_modules) a .whl file")
    raise ValueError(f"runtime_env['{what}'] = {path!r} does not exist")


def _too_big(what: str, path: str, size: int, limit: int) -> str:
    return (f"runtime_env['{what}'] {path!r} is {size / 2**20:.1f} MiB, over the limit of "
            f"{limit / 2**20:.0f} MiB (ZACTOR_RUNTIME_ENV_PACKAGE_MAX). Leave large files out "
            "with runtime_env['excludes'] (gitignore-style patterns) or a .gitignore, and "
            "read large data from shared storage instead.")


def zip_directory(path: str, dest: str, excludes: list[str], top: bool, limit: int,
                  what: str = "working_dir") -> int:
    """Zip the files under ``path`` into ``dest`` (below a directory of ``path``'s name if
    ``top``, for a package in py_modules), leaving out what ``excludes`` and the top-level
    .gitignore match; returns the bytes zipped. Raises ValueError past ``limit``."""
    import pathspec

    patterns = list(excludes)
    gitignore = os.path.join(path, ".gitignore")
    if os.path.isfile(gitignore):
        with open(gitignore) as f:
            patterns += f.read().splitlines()
    spec = pathspec.GitIgnoreSpec.from_lines(patterns)
    prefix = os.path.basename(path.rstrip("/")) + "/" if top else ""
    files: list[tuple[str, str]] = []
    total = 0
    for root, dirs, names in os.walk(path):
        rel_root = os.path.relpath(root, path)
        rel_root = "" if rel_root == "." else rel_root + "/"
        dirs[:] = sorted(d for d in dirs if not spec.match_file(rel_root + d + "/"))
        for name in sorted(names):
            rel = rel_root + name
            full = os.path.join(root, name)
            if spec.match_file(rel) or not os.path.isfile(full):
                continue
            total += os.path.getsize(full)
            if total > limit:
                raise ValueError(_too_big(what, path, total, limit))
            files.append((full, prefix + rel))
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for full, arcname in files:
            info = zipfile.ZipInfo(arcname, _FIXED_TIME)
            info.external_attr = (os.stat(full).st_mode & 0o777 | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(full, "rb") as src, zf.open(info, "w") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
    return total


def _without_top_directory(path: str, dest: str) -> bool:
    """A zipped working dir holding one top-level directory and nothing else is that
    directory (Ray's rule): write ``dest`` with its contents at the top; False if the zip
    is not like that."""
    with zipfile.ZipFile(path) as src:
        names = [n for n in src.namelist() if not n.startswith("__MACOSX/")]
        tops = {n.split("/", 1)[0] for n in names}
        if len(tops) != 1 or not all(n.startswith(next(iter(tops)) + "/") for n in names):
            return False
        cut = len(next(iter(tops))) + 1
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out:
            for info in src.infolist():
                if info.filename in names and len(info.filename) > cut:
                    inner = zipfile.ZipInfo(info.filename[cut:], _FIXED_TIME)
                    inner.external_attr = info.external_attr
                    inner.compress_type = zipfile.ZIP_DEFLATED
                    out.writestr(inner, src.read(info))
    return True


def _upload_file(core: CoreClient, path: str, suffix: str, what: str) -> str:
    uri = f"{_spec.SCHEME}{_spec.file_digest(path)}{suffix}"
    uploaded = core.uploaded_packages
    if uri in uploaded or core.request("package_has", uri):
        uploaded.add(uri)
        return uri
    size = os.path.getsize(path)
    log.info("uploading %s to the cluster as %s", what, uri)
    step = config.RUNTIME_ENV_UPLOAD_CHUNK
    with open(path, "rb") as f:
        offset = 0
        while True:
            data = f.read(step)
            last = offset + len(data) >= size
            core.request("package_put", [uri, offset, data, last], timeout=120.0)
            offset += len(data)
            if last:
                break
    uploaded.add(uri)
    return uri


def for_submission(core: CoreClient, env: dict | None) -> str | None:
    """The pool key of a task or actor with ``env`` (validated; None for none), submitted
    from this process: its parent's environment (the job's, or this worker's) inherited,
    packages uploaded and the result registered with the head, once per process."""
    parent = core.runtime_env
    if not env and not parent:
        return None
    cache_key = json.dumps(env or {}, sort_keys=True, default=str)
    hit = core.env_keys.get(cache_key)
    if hit is not None:
        return hit[0]
    resolved = _spec.inherit(parent, resolve(core, env) if env else None)
    key = _spec.key_of(resolved)
    if key is not None:
        core.request("env_register", [key, resolved])
    core.env_keys[cache_key] = (key, resolved)
    return key


def for_job(core: CoreClient, env: Any) -> dict:
    """A job's environment, validated and uploaded (the job's driver runs in it)."""
    return resolve(core, _spec.validate(env))
