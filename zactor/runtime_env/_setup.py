"""A node's half of runtime environments: the packages and virtualenvs an environment needs,
made once per machine and kept, and a process put into it.

    <RUNTIME_ENV_DIR>/packages/<sha256>.zip   uploaded packages (the head keeps them here;
                                              a node on another machine fetches them)
    <RUNTIME_ENV_DIR>/pkgs/<sha256>/          each package unpacked (atomically, by rename)
    <RUNTIME_ENV_DIR>/pip/<hash>/             one virtualenv per requirement set and Python
    <RUNTIME_ENV_DIR>/locks/                  flock files: one builder per virtualenv, and
                                              one "in use" lock per unpacked package and
                                              virtualenv

Unpacked packages and virtualenvs are a cache, bounded by RUNTIME_ENV_CACHE_MAX bytes: each
process using an entry holds a shared lock on it for its life (a worker that becomes its
virtualenv's python keeps the descriptor across the exec), and whenever a new entry is made
the least recently used ones nobody holds go until the cache fits again. Uploaded packages
(the zips) are kept: they are what nodes fetch from the head.

The virtualenv sees the packages of the interpreter zactor runs in (a .pth file adds that
interpreter's site directories after the virtualenv's own), so pip installs only what is
missing or asked in another version, and zactor itself is there. Its workers are fresh
interpreters started from the virtualenv's python: modules already imported in the zygote
cannot shadow the versions the environment asked for.

Setting up runs in the process about to become the worker (forked by the zygote) or the
job's driver, never in the head's or agent's event loop; what it prints (pip's output) is
reported as it comes, and a failure carries that output in its RuntimeEnvSetupError.
"""

from __future__ import annotations

import fcntl
import json
import os
import site
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable

from zactor import config
from zactor.exceptions import RuntimeEnvSetupError
from zactor.runtime_env import _spec

#: Exit code of a process whose environment could not be set up (and, for a worker, who
#: told the head why; one that could not tell it exits with SETUP_UNREPORTED_EXIT).
SETUP_FAILED_EXIT = 79
SETUP_UNREPORTED_EXIT = 78
#: The lines of pip's output a failure keeps.
_OUTPUT_TAIL = 60

Report = Callable[[str], None]

#: Descriptors of this process's shared locks on the cache entries it uses (see _hold).
_held: list[int] = []


class Activation:
    """What a process in the environment needs: variables, directory, import paths, python."""

    def __init__(self) -> None:
        self.env_vars: dict[str, str] = {}
        self.cwd: str | None = None
        self.paths: list[str] = []  # first on sys.path: the working dir, then py_modules
        self.venv: str | None = None

    def environ(self, base: dict) -> dict:
        """``base`` with the environment's variables (and its virtualenv's, if any)."""
        env = dict(base)
        for k, v in self.env_vars.items():
            env[k] = _spec.expand_vars(v, base)
        if self.venv is not None:
            env["VIRTUAL_ENV"] = self.venv
            env["PATH"] = os.path.join(self.venv, "bin") + os.pathsep + env.get("PATH", "")
            env.pop("PYTHONHOME", None)
        if self.paths:
            old = env.get("PYTHONPATH")
            env["PYTHONPATH"] = os.pathsep.join(self.paths + ([old] if old else []))
        return env

    @property
    def python(self) -> str:
        return os.path.join(self.venv, "bin", "python") if self.venv else sys.executable


def root_dir() -> str:
    root = config.RUNTIME_ENV_DIR or os.path.join(
        config.SOCKET_ROOT, f"zactor-{os.getuid()}", "runtime_resources")
    os.makedirs(root, mode=0o700, exist_ok=True)
    return root


def package_path(root: str, uri: str) -> str:
    return os.path.join(root, "packages", uri[len(_spec.SCHEME):])


def prepare(env: dict, root: str, report: Report) -> Activation:
    """Make everything ``env`` (resolved) needs on this machine; raise RuntimeEnvSetupError."""
    act = Activation()
    act.env_vars = dict(env.get("env_vars") or {})
    try:
        if env.get("working_dir"):
            act.cwd = _unpacked(root, env["working_dir"], report)
            act.paths.append(act.cwd)
        for uri in env.get("py_modules") or ():
            act.paths.append(_unpacked(root, uri, report))
        if env.get("pip"):
            timeout = (env.get("config") or {}).get("setup_timeout_seconds",
                                                    config.RUNTIME_ENV_SETUP_TIMEOUT_S)
            # Relative requirements ("./pkg") are paths in the working dir, which travels.
            act.venv = _virtualenv(root, env["pip"], report,
                                   None if timeout == -1 else float(timeout),
                                   act.cwd, env.get("working_dir"))
    except RuntimeEnvSetupError:
        raise
    except (OSError, zipfile.BadZipFile, subprocess.SubprocessError) as exc:
        raise RuntimeEnvSetupError(f"Failed to set up the runtime environment: "
                                   f"{type(exc).__name__}: {exc}") from None
    return act


def _unpacked(root: str, uri: str, report: Report) -> str:
    """The directory package ``uri`` is unpacked in (unpacking it the first time)."""
    digest = _spec.digest_of(uri)
    dest = os.path.join(root, "pkgs", digest)
    _hold(root, "pkgs", digest)
    if os.path.isdir(dest):
        return dest
    src = package_path(root, uri)
    if not os.path.isfile(src):
        raise RuntimeEnvSetupError(f"Package {uri} is not on this node ({src} is missing): "
                                   "it was not uploaded, or could not be fetched from the head")
    report(f"unpacking {uri}")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = f"{dest}.tmp-{os.getpid()}"
    with zipfile.ZipFile(src) as zf:
        for info in zf.infolist():
            target = os.path.realpath(os.path.join(tmp, info.filename))
            if not target.startswith(os.path.realpath(tmp) + os.sep):
                raise RuntimeEnvSetupError(f"Package {uri} has an entry outside its "
                                           f"directory: {info.filename!r}")
            zf.extract(info, tmp)
            mode = info.external_attr >> 16 & 0o777
            if mode and not info.is_dir():
                os.chmod(target, mode)
    try:
        os.rename(tmp, dest)
    except OSError:  # another process unpacked it first: theirs is the same
        from zactor._process import remove_tree

        remove_tree(tmp)
    else:
        collect(root)
    return dest


def _hold(root: str, kind: str, name: str) -> None:
    """Mark cache entry ``kind/name`` used by this process, for as long as it lives."""
    locks = os.path.join(root, "locks")
    os.makedirs(locks, exist_ok=True)
    path = os.path.join(locks, f"{kind}-{name}.use")
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)  # taken before the entry is looked at: never half-removed
    os.set_inheritable(fd, True)
    os.utime(path)  # its last use, which the cleaner goes by
    _held.append(fd)


def collect(root: str) -> list[str]:
    """Remove the least recently used cache entries that no process holds, until the cache
    is within RUNTIME_ENV_CACHE_MAX bytes; returns what went."""
    from zactor._process import remove_tree

    entries = []
    for kind in ("pkgs", "pip"):
        folder = os.path.join(root, kind)
        for name in os.listdir(folder) if os.path.isdir(folder) else ():
            if ".tmp-" in name:
                continue
            path = os.path.join(folder, name)
            lock = os.path.join(root, "locks", f"{kind}-{name}.use")
            used = os.path.getmtime(lock) if os.path.exists(lock) else os.path.getmtime(path)
            entries.append((used, path, lock, _size(path)))
    total = sum(e[3] for e in entries)
    removed = []
    for _used, path, lock, size in sorted(entries):  # least recently used first
        if total <= config.RUNTIME_ENV_CACHE_MAX:
            break
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # in use
            continue
        else:
            remove_tree(path)
            total -= size
            removed.append(path)
        finally:
            os.close(fd)
    return removed


def _size(path: str) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def _pip_key(pip: dict, working_dir: str | None) -> str:
    ident = {"pip": pip, "python": sys.executable, "version": list(sys.version_info[:3])}
    if any(p.startswith((".", "-e .", "-r .")) for p in pip["packages"]):
        ident["working_dir"] = working_dir
    text = json.dumps(ident, sort_keys=True).encode()
    import hashlib

    return hashlib.sha256(text).hexdigest()[:24]


def _virtualenv(root: str, pip: dict, report: Report, timeout: float | None,
                cwd: str | None, working_dir: str | None) -> str:
    """The virtualenv with ``pip``'s requirements, built by the first process that needs it
    (others wait on its lock and reuse it); pip runs in ``cwd``."""
    venv = os.path.join(root, "pip", _pip_key(pip, working_dir))
    ready = os.path.join(venv, ".zactor-ready")
    _hold(root, "pip", os.path.basename(venv))
    if os.path.exists(ready):
        return venv
    os.makedirs(os.path.join(root, "locks"), exist_ok=True)
    lock = os.open(os.path.join(root, "locks", os.path.basename(venv) + ".lock"),
                   os.O_CREAT | os.O_RDWR, 0o600)
    try:
        if not _lock(lock, timeout):
            raise RuntimeEnvSetupError(f"Timed out after {timeout:g} s waiting for another "
                                       f"process to build the virtualenv {venv}")
        if os.path.exists(ready):
            report(f"reusing the virtualenv {venv}")
            return venv
        _build(venv, pip, report, timeout, cwd)
        with open(ready, "w"):
            pass
        collect(root)
        return venv
    finally:
        os.close(lock)


def _lock(fd: int, timeout: float | None) -> bool:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.05)


def _build(venv: str, pip: dict, report: Report, timeout: float | None,
           cwd: str | None) -> None:
    from zactor._process import remove_tree

    remove_tree(venv)  # what a failed or killed build left
    packages = pip["packages"]
    report(f"creating a virtualenv for {len(packages)} requirement(s): {' '.join(packages)}")
    started = time.monotonic()
    _run([sys.executable, "-m", "venv", "--without-pip", venv], report, timeout,
         "creating the virtualenv", None)
    _inherit_packages(venv)
    req = os.path.join(venv, "requirements.txt")
    with open(req, "w") as f:
        f.write("\n".join(packages) + "\n")
    python = os.path.join(venv, "bin", "python")
    left = None if timeout is None else max(1.0, timeout - (time.monotonic() - started))
    report("pip install " + " ".join(packages))
    _run([sys.executable, "-m", "pip", "--python", python, "install",
          "--disable-pip-version-check", "--no-input", *pip.get("pip_install_options", ()),
          "-r", req], report, left, "pip install", cwd)
    if pip.get("pip_check"):
        _run([sys.executable, "-m", "pip", "--python", python, "check"], report, left,
             "pip check", cwd)
    report(f"virtualenv ready in {time.monotonic() - started:.1f} s: {venv}")


def _inherit_packages(venv: str) -> None:
    """Let the virtualenv import what this interpreter can (zactor and its dependencies),
    after its own packages."""
    lib = os.path.join(venv, "lib")
    site_dir = os.path.join(lib, os.listdir(lib)[0], "site-packages")
    dirs = [d for d in site.getsitepackages() + [site.getusersitepackages()]
            if os.path.isdir(d)]
    zactor_root = os.path.dirname(os.path.dirname(os.path.abspath(_spec.__file__)))
    dirs.append(os.path.dirname(zactor_root))  # a source checkout's zactor
    lines = [f"import site; site.addsitedir({d!r})" for d in dirs]
    with open(os.path.join(site_dir, "_zactor_inherit.pth"), "w") as f:
        f.write("\n".join(lines) + "\n")


def _run(cmd: list[str], report: Report, timeout: float | None, what: str,
         cwd: str | None) -> None:
    """Run ``cmd``, reporting its output line by line; raise with its output if it fails."""
    env = {**os.environ, "PIP_NO_INPUT": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)
    from zactor._process import die_with_parent

    parent = os.getpid()
    # pip dies with the process setting up (a worker killed mid-setup leaves no pip behind).
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                            preexec_fn=lambda: die_with_parent(expected_parent=parent))
    lines: list[str] = []
    deadline = None if timeout is None else time.monotonic() + timeout
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    timed_out = False
    while True:
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            timed_out = True
            proc.kill()
            break
        if not sel.select(wait):
            continue
        data = os.read(proc.stdout.fileno(), 65536)
        if not data:
            break
        buf += data
        *done, buf = buf.split(b"\n")
        for raw in done:
            line = raw.decode(errors="replace").rstrip()
            lines.append(line)
            report(line)
    if buf:
        lines.append(buf.decode(errors="replace"))
        report(lines[-1])
    sel.close()
    code = proc.wait()
    proc.stdout.close()
    tail = "\n".join(lines[-_OUTPUT_TAIL:])
    if timed_out:
        raise RuntimeEnvSetupError(f"{what} took longer than {timeout:g} s "
                                   f"(runtime_env['config']['setup_timeout_seconds']). "
                                   f"Its output:\n{tail}")
    if code != 0:
        raise RuntimeEnvSetupError(f"{what} failed (exit code {code}). Its output:\n{tail}")
