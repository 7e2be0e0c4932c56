"""Checking, merging and naming runtime environments, with Ray's keys and rules.

A runtime environment as the user writes it names local paths (``working_dir``,
``py_modules``, a requirements file). Once *resolved* by the driver (zactor.runtime_env.
_upload) it names only packages already uploaded to the cluster (``zactor://<sha256>.zip``)
and literal values, and is the same on every machine: that form travels, and its hash (its
*key*) names the pool of workers made for it on each node.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

try:  # the built-in module: hashlib would load OpenSSL for one hash function
    from _blake2 import blake2b
except ImportError:  # pragma: no cover
    from hashlib import blake2b

#: Where uploaded packages are named; the rest of the URI is the zip's SHA-256.
SCHEME = "zactor://"
KNOWN = frozenset({"env_vars", "working_dir", "py_modules", "pip", "excludes", "config"})
#: Ray's keys zactor does not implement: asking for one is an error, never ignored.
UNSUPPORTED = frozenset({"conda", "container", "image_uri", "uv", "nsight", "mpi",
                         "java_jars", "worker_process_setup_hook", "py_executable",
                         "rocprof_sys"})
PIP_KEYS = frozenset({"packages", "pip_check", "pip_install_options", "pip_version"})
CONFIG_KEYS = frozenset({"setup_timeout_seconds", "eager_install"})
_URI = re.compile(r"^zactor://[0-9a-f]{64}\.(zip|whl)$")


def validate(env: Any) -> dict:
    """``env`` checked and in its normal form (a plain dict, ``pip`` as a dict); raises
    ValueError or TypeError naming what is wrong, NotImplementedError for Ray's keys that
    zactor lacks."""
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise TypeError(f"runtime_env must be a dict, got {type(env).__name__}")
    lacking = sorted(set(env) & UNSUPPORTED)
    if lacking:
        raise NotImplementedError(
            f"runtime_env field(s) {', '.join(lacking)} are not supported by zactor "
            f"(supported: {', '.join(sorted(KNOWN))})")
    unknown = sorted(set(env) - KNOWN)
    if unknown:
        raise ValueError(f"Unknown runtime_env field(s): {', '.join(map(repr, unknown))}. "
                         f"Valid fields are: {', '.join(sorted(KNOWN))}")
    out: dict[str, Any] = {}
    for key, value in env.items():
        if value is None:
            continue
        out[key] = _CHECKS[key](value)
    return out


def _env_vars(value: Any) -> dict:
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise TypeError("runtime_env['env_vars'] must be a dict of strings to strings, got "
                        f"{value!r}")
    return dict(value)


def _path_or_uri(what: str, value: Any) -> str:
    if hasattr(value, "__fspath__"):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise TypeError(f"runtime_env['{what}'] must be a path, got {value!r}")
    if "://" in value and not value.startswith(SCHEME):
        raise NotImplementedError(
            f"runtime_env['{what}'] = {value!r}: remote URIs are not supported by zactor; "
            "give a local directory, zip or wheel (it is uploaded through the cluster)")
    if value.startswith(SCHEME) and not _URI.match(value):
        raise ValueError(f"runtime_env['{what}']: malformed package URI {value!r}")
    return value


def _working_dir(value: Any) -> str:
    return _path_or_uri("working_dir", value)


def _py_modules(value: Any) -> list:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"runtime_env['py_modules'] must be a list, got {value!r}")
    out = []
    for item in value:
        if hasattr(item, "__file__") and hasattr(item, "__name__"):  # a module, as in Ray
            item = os.path.dirname(item.__file__) if item.__file__.endswith(
                "__init__.py") else item.__file__
        out.append(_path_or_uri("py_modules", item))
    return out


def _pip(value: Any) -> dict:
    if isinstance(value, str) or hasattr(value, "__fspath__"):
        return {"packages": os.fspath(value)}  # a requirements file, read by the driver
    if isinstance(value, (list, tuple)):
        value = {"packages": list(value)}
    if not isinstance(value, dict):
        raise TypeError("runtime_env['pip'] must be a list of requirements, a requirements "
                        f"file or a dict, got {value!r}")
    unknown = sorted(set(value) - PIP_KEYS)
    if unknown:
        raise ValueError(f"Unknown runtime_env['pip'] field(s): {unknown}; valid fields are "
                         f"{sorted(PIP_KEYS)}")
    packages = value.get("packages")
    if isinstance(packages, (list, tuple)):
        if not all(isinstance(p, str) and p.strip() for p in packages):
            raise TypeError(f"runtime_env['pip'] requirements must be strings, got {packages!r}")
        packages = [p.strip() for p in packages]
    elif not isinstance(packages, str):
        raise TypeError("runtime_env['pip']['packages'] must be a list or a requirements file")
    out: dict[str, Any] = {"packages": packages}
    options = value.get("pip_install_options") or []
    if not isinstance(options, (list, tuple)) or not all(isinstance(o, str) for o in options):
        raise TypeError("runtime_env['pip']['pip_install_options'] must be a list of strings")
    if options:
        out["pip_install_options"] = list(options)
    if value.get("pip_check"):
        out["pip_check"] = True
    if value.get("pip_version"):
        raise NotImplementedError("runtime_env['pip']['pip_version'] is not supported: the "
                                  "environment uses the cluster's pip")
    return out


def _excludes(value: Any) -> list:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"runtime_env['excludes'] must be a list of patterns, got {value!r}")
    return list(value)


def _config(value: Any) -> dict:
    if hasattr(value, "items"):
        value = dict(value.items())
    if not isinstance(value, dict):
        raise TypeError(f"runtime_env['config'] must be a dict, got {value!r}")
    unknown = sorted(set(value) - CONFIG_KEYS)
    if unknown:
        raise ValueError(f"Unknown runtime_env['config'] field(s): {unknown}")
    out = {}
    timeout = value.get("setup_timeout_seconds")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or \
                (timeout <= 0 and timeout != -1):
            raise ValueError("setup_timeout_seconds must be a positive number (or -1: none), "
                             f"got {timeout!r}")
        out["setup_timeout_seconds"] = timeout
    if "eager_install" in value:
        out["eager_install"] = bool(value["eager_install"])
    return out


_CHECKS = {"env_vars": _env_vars, "working_dir": _working_dir, "py_modules": _py_modules,
           "pip": _pip, "excludes": _excludes, "config": _config}


def inherit(parent: dict | None, child: dict | None) -> dict:
    """A task's or actor's environment given its parent's (the job's, or the task that
    submits it): Ray's rule is that ``env_vars`` merge, the child's winning, and every other
    field the child gives replaces the parent's."""
    if not parent:
        return dict(child or {})
    if not child:
        return dict(parent)
    out = {**parent, **child}
    if "env_vars" in parent and "env_vars" in child:
        out["env_vars"] = {**parent["env_vars"], **child["env_vars"]}
    return out


def merge_job(job: dict, driver: dict) -> dict:
    """The environment of a job's driver that calls ``init(runtime_env=...)`` itself: the
    two merge, and a field both set differently is an error (Ray's rule since 2.8)."""
    out = dict(job)
    for key, value in driver.items():
        if key == "env_vars" and key in out:
            clash = sorted(k for k, v in value.items()
                           if k in out[key] and out[key][k] != v)
            if clash:
                raise ValueError(f"runtime_env['env_vars'] {clash} set differently by the job "
                                 "and by init()")
            out[key] = {**out[key], **value}
        elif key in out and out[key] != value:
            raise ValueError(f"runtime_env[{key!r}] is set by the job and differently by "
                             "init(): the job's environment cannot be replaced")
        else:
            out[key] = value
    return out


def key_of(resolved: dict) -> str | None:
    """The name of a resolved environment's worker pool (None: the default pool). Setup
    settings (``config``) and ``excludes`` (already applied) do not make another pool."""
    core = {k: v for k, v in resolved.items() if k not in ("config", "excludes") and v}
    if not core:
        return None
    text = json.dumps(core, sort_keys=True, separators=(",", ":"))
    return blake2b(text.encode(), digest_size=12).hexdigest()


def packages_of(resolved: dict) -> list[str]:
    """The package URIs a resolved environment needs on a node."""
    uris = list(resolved.get("py_modules") or ())
    if resolved.get("working_dir"):
        uris.append(resolved["working_dir"])
    return [u for u in uris if u.startswith(SCHEME)]


def digest_of(uri: str) -> str:
    return uri[len(SCHEME):].split(".", 1)[0]


def file_digest(path: str) -> str:
    """The SHA-256 of a file's bytes (what names a package), in hex."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def is_resolved(env: dict) -> bool:
    """Whether ``env`` names only uploaded packages and literal requirements."""
    paths = list(env.get("py_modules") or ())
    if env.get("working_dir"):
        paths.append(env["working_dir"])
    pip = env.get("pip")
    return all(p.startswith(SCHEME) for p in paths) and \
        (pip is None or isinstance(pip.get("packages"), list))


def expand_vars(value: str, environ: dict) -> str:
    """``${NAME}`` in an env_vars value is the existing variable's value (as in Ray)."""
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: environ.get(m.group(1), ""),
                  value)
