"""A job's driver, put into the job's runtime environment before its entrypoint runs.

``python -m zactor.runtime_env._job EXIT_FILE READY_FD SCRIPT``: sets up
``ZACTOR_RUNTIME_ENV`` on this (the head's) machine, printing each step and pip's output to
the job's log, writes a byte to READY_FD (the head's pipe: the job is RUNNING now), then
becomes ``/bin/sh -c SCRIPT`` (same pid and process group: stopping the job stops it) in
the working dir, with the env vars, the py_modules importable and the virtualenv's python
first on PATH. If setting up fails, the job fails: the error goes to the log and, for the
job's message, to EXIT_FILE.env.
"""

from __future__ import annotations

import json
import os
import sys

from zactor.exceptions import RuntimeEnvSetupError
from zactor.runtime_env import _setup


def main(exit_file: str, ready_fd: int, script: str) -> int:
    env = json.loads(os.environ.get("ZACTOR_RUNTIME_ENV") or "{}")
    environ = dict(os.environ)
    cwd = None
    if env:
        print("runtime_env: setting up the job's environment", flush=True)
        try:
            act = _setup.prepare(env, _setup.root_dir(),
                                 lambda line: print(f"runtime_env: {line}", flush=True))
        except RuntimeEnvSetupError as exc:
            print(f"RuntimeEnvSetupError: {exc}", flush=True)
            with open(exit_file + ".env", "w") as f:
                f.write(str(exc))
            with open(exit_file, "w") as f:
                f.write(f"{_setup.SETUP_FAILED_EXIT}\n")
            os.close(ready_fd)
            return _setup.SETUP_FAILED_EXIT
        environ = act.environ(environ)
        cwd = act.cwd
    if cwd:
        os.chdir(cwd)
    os.write(ready_fd, b"1")
    os.close(ready_fd)
    os.execve("/bin/sh", ["/bin/sh", "-c", script], environ)
    return 127  # pragma: no cover - execve does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
