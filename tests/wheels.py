"""Python packages the runtime_env tests install, built in the test from source written
there (no package registry is asked: pip runs with --no-index)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

#: What pip needs to install a local wheel or project without asking any index.
OFFLINE = ["--no-index", "--no-build-isolation"]


def write_project(root: str, name: str, version: str, source: str) -> str:
    """A setuptools project of one module ``name`` (src layout); returns its directory."""
    project = os.path.join(root, f"{name}-{version}")
    os.makedirs(os.path.join(project, "src", name), exist_ok=True)
    with open(os.path.join(project, "pyproject.toml"), "w") as f:
        f.write(textwrap.dedent(f"""\
            [build-system]
            requires = ["setuptools>=70.1"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "{name.replace('_', '-')}"
            version = "{version}"
            """))
    with open(os.path.join(project, "src", name, "__init__.py"), "w") as f:
        f.write(f"__version__ = {version!r}\n" + textwrap.dedent(source))
    return project


def build_wheel(root: str, name: str, version: str, source: str = "") -> str:
    """Build a pure-Python wheel of module ``name`` with pip; returns the .whl's path."""
    project = write_project(root, name, version, source)
    out = os.path.join(root, "dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *OFFLINE,
                    "-w", out, project], check=True, capture_output=True, timeout=120)
    wheel = [w for w in os.listdir(out) if w.startswith(f"{name}-{version}-")]
    return os.path.join(out, wheel[0])
