"""Jobs: driver programs the head runs for its clients (``zactor job submit``, the job SDK).

A job is a shell command run on the head's machine, in a process group of its own, with
``ZACTOR_ADDRESS`` set to the head's local socket (so ``zactor.init()`` with no address joins
this cluster) and ``ZACTOR_JOB_ID`` naming the job. Its process first sets up the job's
runtime environment (zactor.runtime_env._job), the job PENDING meanwhile, as in Ray; it
says so on a pipe when the command starts, and the job is RUNNING from then. Its output goes
to a log file in the head's state directory, capped at ``JOB_LOG_MAX`` bytes (the oldest
half goes when it is full). The head watches the process through a pidfd: its exit code makes
the job SUCCEEDED or FAILED; ``stop`` sends SIGTERM to the group, SIGKILL after
``JOB_STOP_GRACE_S``, and the job is STOPPED. Jobs are requested over the cluster's own
authenticated connection only.

Jobs are kept in the control log: a head restarted while a job's driver runs finds it again
(the process outlives the head: it has a session of its own) and watches it anew, or marks it
FAILED if it is gone.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from zactor import config
from zactor._process import pidfd
from zactor.runtime_env._setup import SETUP_FAILED_EXIT

if TYPE_CHECKING:
    from zactor.head.broker import Broker

log = logging.getLogger(__name__)

PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED = ("PENDING", "RUNNING", "STOPPED", "SUCCEEDED",
                                                 "FAILED")
TERMINAL = (STOPPED, SUCCEEDED, FAILED)


class Job:
    __slots__ = ("job_id", "entrypoint", "status", "message", "metadata", "runtime_env",
                 "pid", "start_time", "end_time", "exit_code", "log_path", "fd", "stopping",
                 "create_time", "drivers", "cpus", "held", "pending_start", "ready_fd")

    def __init__(self, job_id: str, entrypoint: str, metadata: dict, runtime_env: dict,
                 log_path: str) -> None:
        self.job_id = job_id
        self.entrypoint = entrypoint
        self.metadata = metadata
        self.runtime_env = runtime_env
        self.status = PENDING
        self.message = "Job has not started yet."
        self.pid: int | None = None
        self.create_time = 0.0  # the process's, to tell it from a reused pid
        self.start_time = int(time.time() * 1000)
        self.end_time: int | None = None
        self.exit_code: int | None = None
        self.log_path = log_path
        self.fd: int | None = None
        self.stopping = False
        self.drivers: set[bytes] = set()  # keys of the zactor drivers its process started
        self.cpus = 0.0  # entrypoint_num_cpus: held on the head's node while it runs
        self.held = False
        self.pending_start: bool | None = None  # True while it waits for its CPUs
        self.ready_fd: int | None = None  # readable once its command starts (or fails to)

    @property
    def has_process(self) -> bool:
        return bool(self.pid) and self.status in (PENDING, RUNNING)

    @property
    def exit_file(self) -> str:
        return self.log_path + ".exit"

    def info(self) -> dict[str, Any]:
        """Ray's JobInfo fields."""
        return {"submission_id": self.job_id, "job_id": self.job_id, "type": "SUBMISSION",
                "entrypoint": self.entrypoint, "status": self.status,
                "message": self.message, "metadata": self.metadata,
                "runtime_env": self.runtime_env, "start_time": self.start_time,
                "end_time": self.end_time, "driver_exit_code": self.exit_code,
                "driver_pid": self.pid, "entrypoint_num_cpus": self.cpus}

    def record(self) -> list:
        return ["job", self.job_id, self.info(), self.create_time]


class JobManager:
    def __init__(self, head: Broker) -> None:
        self.head = head
        self.jobs: dict[str, Job] = {}
        self.waiting: set[str] = set()  # jobs PENDING until their CPUs are free
        self._popen: dict[str, subprocess.Popen] = {}  # this head's children, to reap
        state_dir = head.cfg.get("state_dir") or head.cfg.get("session_dir") or "/tmp"
        self.log_dir = os.path.join(state_dir, "jobs")

    # -- requests ----------------------------------------------------------------------------

    def submit(self, args: dict) -> str:
        if not isinstance(args, dict) or not isinstance(args.get("entrypoint"), str) or \
                not args["entrypoint"].strip():
            raise ValueError("submit_job needs an entrypoint: the shell command to run")
        job_id = args.get("submission_id") or "zactorjob_" + os.urandom(8).hex()
        if not isinstance(job_id, str):
            raise TypeError("submission_id must be a string")
        if job_id in self.jobs:
            raise ValueError(f"Job with submission_id {job_id} already exists. Please use a "
                             "different submission_id.")
        runtime_env = self._checked_env(args.get("runtime_env"))
        cpus = args.get("entrypoint_num_cpus") or 0
        if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or cpus < 0:
            raise ValueError(f"entrypoint_num_cpus must be a non-negative number, got {cpus!r}")
        node = self.head.head_node
        if cpus and (node is None or node.total.get("CPU", 0.0) < cpus):
            raise ValueError(f"entrypoint_num_cpus={cpus:g}: the head's node has only "
                             f"{node.total.get('CPU', 0.0) if node else 0:g} CPUs")
        os.makedirs(self.log_dir, mode=0o700, exist_ok=True)
        job = Job(job_id, args["entrypoint"], args.get("metadata") or {}, runtime_env,
                  os.path.join(self.log_dir, f"{job_id}.log"))
        job.cpus = float(cpus)
        self.jobs[job_id] = job
        job.pending_start = True
        self.waiting.add(job_id)
        self._log(job)
        self.start_pending()
        return job_id

    def start_pending(self) -> None:
        """Start the jobs whose CPUs are free on the head's node (PENDING until then, as in
        Ray); called after each batch of messages."""
        node = self.head.head_node
        for job_id in sorted(self.waiting, key=lambda j: self.jobs[j].start_time):
            job = self.jobs[job_id]
            if job.cpus:
                if node is None or not node.fits({"CPU": job.cpus}):
                    continue
                node.acquire({"CPU": job.cpus})
                job.held = True
            job.pending_start = None
            self.waiting.discard(job_id)
            self._start(job)

    def _checked_env(self, env: Any) -> dict:
        """A job's runtime_env, as its client resolved it (its packages uploaded)."""
        from zactor.runtime_env import _spec

        try:
            env = _spec.validate(env)
        except NotImplementedError as exc:
            raise ValueError(str(exc)) from None
        if not _spec.is_resolved(env):
            raise ValueError("a job's runtime_env must name uploaded packages, not local "
                             "paths: submit it with JobSubmissionClient or zactor job submit")
        for uri in _spec.packages_of(env):
            if not self.head.envs.packages.has(uri):
                raise ValueError(f"runtime_env package {uri} was never uploaded")
        return env

    def _start(self, job: Job) -> None:
        # ``python`` in the command is the head's interpreter, which has zactor (as Ray does),
        # unless the job's environment has a virtualenv (zactor.runtime_env._job).
        path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
        env = {**os.environ, "PATH": path, "ZACTOR_ADDRESS": self.head.address,
               "ZACTOR_JOB_ID": job.job_id, "PYTHONUNBUFFERED": "1"}
        env.pop("ZACTOR_CLUSTER_KEY", None)  # the local socket needs no key
        env.pop("ZACTOR_RUNTIME_ENV", None)
        if job.runtime_env:
            env["ZACTOR_RUNTIME_ENV"] = json.dumps(job.runtime_env)
        ready_r, ready_w = os.pipe()
        try:
            with open(job.log_path, "ab") as out:
                # The shell writes the exit code down: a head restarted meanwhile is not the
                # process's parent and could not read it otherwise.
                script = f'{job.entrypoint}\nrc=$?\necho $rc > "{job.exit_file}"\nexit $rc'
                proc = subprocess.Popen(
                    [sys.executable, "-m", "zactor.runtime_env._job", job.exit_file,
                     str(ready_w), script], env=env, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(ready_w,))
        except OSError as exc:
            os.close(ready_r)
            self._end(job, FAILED, None, f"Job failed to start: {exc}")
            return
        finally:
            os.close(ready_w)
        job.pid = proc.pid
        try:
            import psutil

            job.create_time = psutil.Process(proc.pid).create_time()
        except Exception:  # noqa: BLE001 - gone already: its exit is reported below
            pass
        self._popen[job.job_id] = proc  # reaped when it exits
        job.message = "Job is setting up its runtime environment."
        job.ready_fd = ready_r
        self.head.watch_fd(ready_r, lambda: self._command_started(job))
        self._log(job)
        self._watch(job)

    def _command_started(self, job: Job) -> None:
        """The job's process says its command starts (or, closing the pipe unsaid, that its
        runtime environment failed: its exit tells the rest)."""
        started = os.read(job.ready_fd, 1)
        self._unwatch_ready(job)
        if started and job.status == PENDING:
            job.status, job.message = RUNNING, "Job is currently running."
            self._log(job)

    def _unwatch_ready(self, job: Job) -> None:
        if job.ready_fd is not None:
            self.head.unwatch_fd(job.ready_fd)
            os.close(job.ready_fd)
            job.ready_fd = None

    def _watch(self, job: Job) -> None:
        fd = pidfd(job.pid) if job.pid else None
        if fd is None:
            self._exited(job)
            return
        job.fd = fd
        self.head.watch_fd(fd, lambda: self._exited(job))

    def _exited(self, job: Job) -> None:
        if job.ready_fd is not None and job.status == PENDING:
            self._command_started(job)  # said just before it ended: RUNNING, then ended
        self._unwatch_ready(job)
        if job.fd is not None:
            self.head.unwatch_fd(job.fd)
            os.close(job.fd)
            job.fd = None
        code = None
        proc = self._popen.pop(job.job_id, None)
        if proc is not None:
            code = proc.wait()
        else:
            try:
                with open(job.exit_file) as f:
                    code = int(f.read().strip())
            except (OSError, ValueError):
                code = None
        if code is not None and code < 0:
            code = 128 - code  # killed by a signal: as a shell reports it
        if job.stopping:
            self._end(job, STOPPED, code, "Job was intentionally stopped.")
        elif code == 0:
            self._end(job, SUCCEEDED, code, "Job finished successfully.")
        elif code == SETUP_FAILED_EXIT and os.path.exists(job.exit_file + ".env"):
            with open(job.exit_file + ".env") as f:
                why = f.read()
            self._end(job, FAILED, code, f"Job failed: RuntimeEnvSetupError: {why}")
        elif code is None:
            self._end(job, FAILED, None, "The job's driver is gone (the head restarted "
                      "without it).")
        else:
            self._end(job, FAILED, code, f"Job entrypoint command failed with exit code "
                      f"{code}, last available logs (truncated to 20,000 chars):\n"
                      + self._tail(job, 20_000))
        self._cleanup(job)

    def _end(self, job: Job, status: str, code: int | None, message: str) -> None:
        if job.held:
            job.held = False
            self.head.head_node.release({"CPU": job.cpus}, None)
        job.pending_start = None
        self.waiting.discard(job.job_id)
        job.status, job.exit_code, job.message = status, code, message
        job.end_time = int(time.time() * 1000)
        self._log(job)

    def driver_joined(self, job_id: str, key: bytes) -> None:
        job = self.jobs.get(job_id)
        if job is not None:
            job.drivers.add(key)

    def _cleanup(self, job: Job) -> None:
        """What the job's drivers started goes with them: their tasks are cancelled, their
        actors (detached ones excepted) die with them."""
        tasks = self.head.tasks
        for task in list(tasks.tasks.values()):
            if task.owner in job.drivers:
                tasks.cancel(task.task_id, True, True)
        for key in job.drivers:
            client = self.head.clients.get(key)
            if client is not None:
                self.head.drop_client(client)
        for path in (job.exit_file, job.exit_file + ".env"):
            try:
                os.unlink(path)
            except OSError:
                pass

    def stop(self, job_id: str) -> bool:
        job = self._get(job_id)
        if job.status in TERMINAL:
            return False
        job.stopping = True
        if job.pending_start is not None:  # it never started
            self._end(job, STOPPED, None, "Job was intentionally stopped.")
            return True
        if job.pid:
            try:
                os.killpg(job.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
            self.head.later(config.JOB_STOP_GRACE_S, lambda: self._kill(job))
        return True

    def _kill(self, job: Job) -> None:
        if job.status not in TERMINAL and job.pid:
            try:
                os.killpg(job.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def delete(self, job_id: str) -> bool:
        job = self._get(job_id)
        if job.status not in TERMINAL:
            raise ValueError(f"Job {job_id} is {job.status}: stop it before deleting it")
        del self.jobs[job_id]
        try:
            os.unlink(job.log_path)
        except OSError:
            pass
        if self.head.control is not None:
            self.head.control.append("job_deleted", job_id)
        return True

    def info(self, job_id: str) -> dict:
        return self._get(job_id).info()

    def list(self) -> list[dict]:
        return [j.info() for j in self.jobs.values()]

    def logs(self, job_id: str, offset: int) -> list:
        """[text from ``offset``, the next offset, whether the job has ended]."""
        job = self._get(job_id)
        try:
            with open(job.log_path, "rb") as f:
                f.seek(max(0, int(offset)))
                data = f.read(1 << 20)
                end = f.tell()
        except OSError:
            data, end = b"", offset
        self._cap(job)
        return [data.decode(errors="replace"), end, job.status in TERMINAL]

    def _tail(self, job: Job, n: int) -> str:
        try:
            with open(job.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - n))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _cap(self, job: Job) -> None:
        """Keep the log under JOB_LOG_MAX: when it is past it, its older half goes."""
        try:
            size = os.path.getsize(job.log_path)
        except OSError:
            return
        if size <= config.JOB_LOG_MAX:
            return
        with open(job.log_path, "r+b") as f:
            f.seek(size - config.JOB_LOG_MAX // 2)
            keep = f.read()
            f.seek(0)
            f.write(b"[... older output dropped: the log is capped at %d bytes ...]\n"
                    % config.JOB_LOG_MAX)
            f.write(keep)
            f.truncate()

    def shutdown(self) -> None:
        """The cluster stops: so do the jobs still running (a SIGKILLed head leaves them to
        its successor instead)."""
        running = [j for j in self.jobs.values() if j.has_process]
        for job in running:
            try:
                os.killpg(job.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + config.JOB_STOP_GRACE_S
        for job in running:
            proc = self._popen.get(job.job_id)
            try:
                if proc is not None:
                    proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(job.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if proc is not None:
                proc.wait()

    def housekeeping(self) -> None:
        for job in self.jobs.values():
            if job.has_process:
                self._cap(job)
                if job.status == PENDING and job.ready_fd is None:
                    self._check_started(job)

    def _check_started(self, job: Job) -> None:
        """A job whose process this head did not start (it was restarted) is RUNNING once
        that process is its command, no longer the environment's setup."""
        import psutil

        try:
            setting_up = "zactor.runtime_env._job" in psutil.Process(job.pid).cmdline()
        except psutil.Error:
            return  # gone: its exit is handled as it comes
        if not setting_up:
            job.status, job.message = RUNNING, "Job is currently running."
            self._log(job)

    def _get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise LookupError(f"Job {job_id} does not exist")
        return job

    # -- the control log ---------------------------------------------------------------------

    def _log(self, job: Job) -> None:
        if self.head.control is not None:
            self.head.control.append(*job.record())

    def snapshot(self) -> list[list]:
        return [job.record() for job in self.jobs.values()]

    def restore(self, records: list[list]) -> None:
        """Jobs of a previous head: a running one whose process still runs is watched
        again, one whose process is gone has FAILED."""
        import psutil

        info_of: dict[str, dict] = {}
        for record in records:
            if record[0] == "job_deleted":
                self.jobs.pop(record[1], None)
                continue
            if record[0] != "job":
                continue
            info, create_time = record[2], record[3]
            info_of[info["submission_id"]] = info
            job = Job(info["submission_id"], info["entrypoint"], info.get("metadata") or {},
                      info.get("runtime_env") or {},
                      os.path.join(self.log_dir, f"{info['submission_id']}.log"))
            job.status, job.message = info["status"], info["message"]
            job.pid, job.create_time = info.get("driver_pid"), create_time
            job.start_time, job.end_time = info["start_time"], info.get("end_time")
            job.exit_code = info.get("driver_exit_code")
            self.jobs[job.job_id] = job
        for job in self.jobs.values():
            if job.status == PENDING and not job.pid:  # never started: it waits again
                job.cpus = float(info_of[job.job_id].get("entrypoint_num_cpus") or 0)
                job.pending_start = True
                self.waiting.add(job.job_id)
                continue
            if job.status in (PENDING, RUNNING):
                alive = False
                try:
                    alive = bool(job.pid) and abs(
                        psutil.Process(job.pid).create_time() - job.create_time) < 1.0
                except psutil.Error:
                    pass
                if alive:
                    self._watch(job)  # its exit code is not ours to read: FAILED if unknown
                else:
                    self._end(job, FAILED, None, "The job's driver was gone when the head "
                              "restarted.")
