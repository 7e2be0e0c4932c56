"""Ray's job SDK at Ray's path: ``zactor.job_submission.JobSubmissionClient``.

Jobs travel over the cluster's own encrypted, authenticated connection: there is no HTTP
job API, and a client without the cluster's key can neither submit, list nor read a job.

Example::

    from zactor.job_submission import JobSubmissionClient, JobStatus

    client = JobSubmissionClient("tcp://127.0.0.1:6380")
    job_id = client.submit_job(entrypoint="python script.py",
                               runtime_env={"working_dir": "./", "env_vars": {"K": "v"}})
    print(client.get_job_status(job_id))
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["JobInfo", "JobStatus", "JobSubmissionClient"]


class JobStatus(str, enum.Enum):
    """A job's state, with Ray's names and meanings."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    def is_terminal(self) -> bool:
        return self in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED)

    def __str__(self) -> str:
        return self.value


class JobInfo:
    """What ``get_job_info`` and ``list_jobs`` return (Ray's fields)."""

    __slots__ = ("submission_id", "job_id", "type", "entrypoint", "status", "message",
                 "metadata", "runtime_env", "start_time", "end_time", "driver_exit_code",
                 "driver_pid", "entrypoint_num_cpus")

    def __init__(self, info: dict) -> None:
        for name in self.__slots__:
            setattr(self, name, info.get(name))
        self.status = JobStatus(info["status"])

    def __repr__(self) -> str:
        return (f"JobInfo(submission_id={self.submission_id!r}, status={self.status.value}, "
                f"entrypoint={self.entrypoint!r})")


class JobSubmissionClient:
    """Submit and manage jobs on the cluster at ``address`` (``tcp://HOST:PORT``, ``HOST:PORT``,
    ``"auto"`` or None for ``ZACTOR_ADDRESS``), with the cluster key found as for
    ``zactor.init``."""

    def __init__(self, address: str | None = None) -> None:
        from zactor import _registry
        from zactor._client import CoreClient

        target, creds = _registry.resolve(address)
        self._core = CoreClient(target, "observer", connect_timeout=10.0, creds=creds)
        self.address = target

    def _ask(self, what: str, args: Any = None) -> Any:
        return self._core.request(what, args)

    def submit_job(self, *, entrypoint: str, runtime_env: dict | None = None,
                   submission_id: str | None = None, entrypoint_num_cpus: float | None = None,
                   metadata: dict | None = None, **_ignored: Any) -> str:
        """Run ``entrypoint`` (a shell command) as a driver on the head's machine, in
        ``runtime_env`` (its local working_dir and py_modules are uploaded first, as in Ray);
        returns the job's id."""
        from zactor.runtime_env._upload import for_job

        return self._ask("job_submit", {
            "entrypoint": entrypoint, "runtime_env": for_job(self._core, runtime_env),
            "submission_id": submission_id, "entrypoint_num_cpus": entrypoint_num_cpus,
            "metadata": metadata})

    def get_job_info(self, job_id: str) -> JobInfo:
        return JobInfo(self._ask("job_info", job_id))

    def get_job_status(self, job_id: str) -> JobStatus:
        return self.get_job_info(job_id).status

    def list_jobs(self) -> list[JobInfo]:
        return [JobInfo(i) for i in self._ask("job_list")]

    def get_job_logs(self, job_id: str) -> str:
        """Everything the job printed so far (its log is capped in size)."""
        out, offset = [], 0
        while True:
            text, offset, ended = self._ask("job_logs", [job_id, offset])
            out.append(text)
            if not text:
                return "".join(out)

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        """The job's output as it comes, until the job ends."""
        offset = 0
        while True:
            text, offset, ended = await asyncio.to_thread(self._ask, "job_logs",
                                                          [job_id, offset])
            if text:
                yield text
            elif ended:
                return
            else:
                await asyncio.sleep(0.2)

    def follow_logs(self, job_id: str):
        """``tail_job_logs`` for code that is not async: yields text until the job ends."""
        offset = 0
        while True:
            text, offset, ended = self._ask("job_logs", [job_id, offset])
            if text:
                yield text
            elif ended:
                return
            else:
                time.sleep(0.2)

    def stop_job(self, job_id: str) -> bool:
        """Stop the job's processes (SIGTERM, then SIGKILL); False if it had ended."""
        return bool(self._ask("job_stop", job_id))

    def delete_job(self, job_id: str) -> bool:
        """Forget an ended job and its log."""
        return bool(self._ask("job_delete", job_id))

    def close(self) -> None:
        self._core.close(goodbye=(False,))

    def __del__(self) -> None:
        core = getattr(self, "_core", None)
        if core is not None and not core._closed:
            try:
                core.close(goodbye=(False,))
            except Exception:  # noqa: BLE001 - at interpreter exit
                pass
