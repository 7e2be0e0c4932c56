"""Runtime environments, at Ray's path: what a job, task or actor needs around its code.

Example::

    from zactor.runtime_env import RuntimeEnv

    @zactor.remote(runtime_env=RuntimeEnv(pip=["requests==2.32.3"], env_vars={"MODE": "x"}))
    def fetch(url): ...

A plain dict works the same. Supported fields: ``env_vars``, ``working_dir`` (a local
directory or zip, uploaded once and unpacked on each node, the workers' current directory),
``py_modules`` (local packages, zips or wheels), ``pip`` (requirements, a requirements file,
or a dict with ``packages``, ``pip_check``, ``pip_install_options``), ``excludes``
(gitignore-style) and ``config`` (``setup_timeout_seconds``).
"""

from __future__ import annotations

from typing import Any

from zactor.runtime_env._spec import validate as _check_env

__all__ = ["RuntimeEnv", "RuntimeEnvConfig"]


class RuntimeEnvConfig(dict):
    """Settings of an environment's setup: ``setup_timeout_seconds`` (default 600; -1: none)
    and ``eager_install`` (accepted; zactor sets up environments when a worker needs one)."""

    known_fields = frozenset({"setup_timeout_seconds", "eager_install"})

    def __init__(self, setup_timeout_seconds: int = 600, eager_install: bool = True) -> None:
        super().__init__(setup_timeout_seconds=setup_timeout_seconds,
                         eager_install=eager_install)


class RuntimeEnv(dict):
    """A runtime environment: a dict of Ray's fields, checked when made."""

    known_fields = frozenset({"env_vars", "working_dir", "py_modules", "pip", "excludes",
                              "config"})

    def __init__(self, *, py_modules: list | None = None, working_dir: str | None = None,
                 pip: Any = None, env_vars: dict[str, str] | None = None,
                 config: dict | RuntimeEnvConfig | None = None, _validate: bool = True,
                 **kwargs: Any) -> None:
        fields = {"py_modules": py_modules, "working_dir": working_dir, "pip": pip,
                  "env_vars": env_vars, "config": config, **kwargs}
        fields = {k: v for k, v in fields.items() if v is not None}
        super().__init__(fields)
        if _validate:
            _check_env(dict(self))

    def plugin_uris(self) -> list[str]:
        """The package URIs of this (resolved) environment."""
        from zactor.runtime_env._spec import packages_of

        return packages_of(self)
