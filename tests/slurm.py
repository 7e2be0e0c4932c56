"""A real one-machine Slurm for the tests (slurmctld, slurmd and munge from Debian's
packages, which `make test` installs as root): configured in a directory of the test's own,
on free ports, started, and stopped again with everything it ran.

    with SlurmCluster(tmp_dir) as slurm:
        env = slurm.env      # SLURM_CONF for sbatch, squeue, scancel
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

NEEDED = ("slurmctld", "slurmd", "sbatch", "munged")


def missing() -> str | None:
    """Why the Slurm tests cannot run here (None: they can)."""
    lacking = [c for c in NEEDED if shutil.which(c) is None and
               not os.path.exists(f"/usr/sbin/{c}")]
    if lacking:
        return f"not installed: {', '.join(lacking)} (make test installs them as root)"
    if os.getuid() != 0:
        return "the test Slurm runs its daemons as root"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sbin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class SlurmCluster:
    def __init__(self, root: str, cpus: int | None = None) -> None:
        self.root = root
        self.cpus = cpus or os.cpu_count() or 1
        self.host = socket.gethostname().split(".")[0]
        self.conf = os.path.join(root, "slurm.conf")
        self.env = {**os.environ, "SLURM_CONF": self.conf}
        self.started_munge: subprocess.Popen | None = None
        self.pids: list[str] = []

    def __enter__(self) -> SlurmCluster:
        for sub in ("state", "spool"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        with open(self.conf, "w") as f:
            f.write(self._config())
        self._munge()
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([_sbin(daemon)], env=self.env, check=True, timeout=30)
            self.pids.append(os.path.join(self.root, f"{daemon}.pid"))
        self._wait_idle()
        return self

    def _config(self) -> str:
        r = self.root
        return "\n".join([
            "ClusterName=zactortest", f"SlurmctldHost={self.host}", "SlurmUser=root",
            "SlurmdUser=root", "AuthType=auth/munge", "CredType=cred/munge",
            f"StateSaveLocation={r}/state", f"SlurmdSpoolDir={r}/spool",
            f"SlurmctldPidFile={r}/slurmctld.pid", f"SlurmdPidFile={r}/slurmd.pid",
            f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
            f"SlurmctldLogFile={r}/slurmctld.log", f"SlurmdLogFile={r}/slurmd.log",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
            "ReturnToService=2", "MpiDefault=none", "SchedulerType=sched/backfill",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none", "KillWait=5",
            "SlurmctldTimeout=30", "SlurmdTimeout=30",
            # this machine's CPUs, shared by up to 8 jobs each: the tests' nodes are
            # processes on one machine, as the local provider's are
            f"NodeName={self.host} CPUs={self.cpus} RealMemory=1000 State=UNKNOWN",
            "PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP "
            "OverSubscribe=FORCE:8", ""])

    def _munge(self) -> None:
        if subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
            return  # a munge daemon already runs here
        os.makedirs("/run/munge", exist_ok=True)  # its socket's default place
        self.started_munge = subprocess.Popen(
            [_sbin("munged"), "--force", "--foreground"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline or self.started_munge.poll() is not None:
                raise RuntimeError("munged did not start")
            time.sleep(0.1)

    def _wait_idle(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env,
                                 capture_output=True, text=True).stdout.split()
            if out and out[0] in ("idle", "mixed", "allocated"):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test Slurm did not come up: sinfo says {out}")
            time.sleep(0.2)

    def jobs(self) -> list[tuple[str, str, str]]:
        """(id, name, state) of the jobs Slurm knows."""
        out = subprocess.run(["squeue", "-h", "-o", "%i %j %T"], env=self.env,
                             capture_output=True, text=True).stdout
        return [tuple(line.split()) for line in out.splitlines() if len(line.split()) == 3]

    def __exit__(self, *exc) -> None:
        subprocess.run(["scancel", "--user=root"], env=self.env, capture_output=True)
        subprocess.run(["scontrol", "shutdown"], env=self.env, capture_output=True,
                       timeout=30)
        deadline = time.monotonic() + 20
        for pid_file in self.pids:
            try:
                with open(pid_file) as f:
                    pid = int(f.read().strip())
            except (OSError, ValueError):
                continue
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.started_munge is not None:
            self.started_munge.terminate()
            self.started_munge.wait(10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
