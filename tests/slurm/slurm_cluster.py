"""A throw-away one-node SLURM cluster (munge + slurmctld + slurmd) on this host, for tests.

Everything lives in one temporary directory: the config, the munge key and socket, state, spool,
pid and log files. Daemons run in the foreground as child processes and are stopped by their
process ids, never by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import system_packages

PACKAGES = ["slurm-wlm", "munge"]
DAEMONS = ["slurmctld", "slurmd", "munged"]
MEMORY_MARGIN_MB = 1024
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")


def missing_prerequisite() -> str | None:
    """Why this host cannot run a test cluster, or None if it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root to install and run the SLURM daemons (slurmd runs jobs as their user)"
    return system_packages.install(DAEMONS, PACKAGES)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def real_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return max(512, int(line.split()[1]) // 1024 - MEMORY_MARGIN_MB)
    raise RuntimeError("no MemTotal in /proc/meminfo")


class LocalSlurmCluster:
    """Start with `with LocalSlurmCluster(root) as cluster:`; `cluster.env` carries SLURM_CONF."""

    __test__ = False  # not a pytest test class

    def __init__(self, root: Path, partition: str = "debug"):
        self.root = Path(root)
        self.partition = partition
        self.host = subprocess.run(["hostname", "-s"], capture_output=True, text=True, check=True).stdout.strip()
        self.cpus = os.cpu_count() or 1
        self.memory_mb = real_memory_mb()
        self.processes: dict[str, subprocess.Popen] = {}
        self.conf = self.root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.system_conf_backup: Path | None = None
        self.system_conf_installed = False

    # -- setup ---------------------------------------------------------------------------------
    def write_config(self) -> None:
        for sub in ("state", "spool", "log", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        munge = self.root / "munge"
        munge.chmod(0o700)
        key = munge / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(128))
            key.chmod(0o600)
        self.munge_socket = munge / "munge.socket.2"
        r = self.root
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=vlmflowtest",
                    f"SlurmctldHost={self.host}(127.0.0.1)",
                    f"SlurmctldPort={free_port()}",
                    f"SlurmdPort={free_port()}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    "MpiDefault=none",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_CPU_Memory",
                    "SchedulerType=sched/backfill",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "JobCompType=jobcomp/none",
                    "ReturnToService=2",
                    "MinJobAge=36000",  # finished jobs stay visible to squeue for 10 h, however slow the machine
                    "MailProg=/bin/true",
                    f"SlurmctldPidFile={r / 'slurmctld.pid'}",
                    f"SlurmdPidFile={r / 'slurmd.pid'}",
                    f"StateSaveLocation={r / 'state'}",
                    f"SlurmdSpoolDir={r / 'spool'}",
                    f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
                    f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} "
                    f"RealMemory={self.memory_mb} State=UNKNOWN",
                    f"PartitionName={self.partition} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )

    def install_system_conf(self) -> None:
        """Put the config at /etc/slurm/slurm.conf too (an existing one is moved aside, restored on stop).

        snakemake-executor-plugin-slurm-jobstep strips SLURM_CONF from the environment of the srun it
        runs inside each job, so srun only finds the default location, as on a real cluster.
        """
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
            self.system_conf_backup = self.root / "system-slurm.conf.orig"
            shutil.move(str(SYSTEM_CONF), self.system_conf_backup)
        shutil.copy(self.conf, SYSTEM_CONF)
        self.system_conf_installed = True

    def restore_system_conf(self) -> None:
        if self.system_conf_installed:
            SYSTEM_CONF.unlink(missing_ok=True)
            self.system_conf_installed = False
        if self.system_conf_backup is not None:
            shutil.move(str(self.system_conf_backup), SYSTEM_CONF)
            self.system_conf_backup = None

    def _start(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "w")  # noqa: SIM115  (the daemon keeps it open)
        self.processes[name] = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        time.sleep(0.5)
        if self.processes[name].poll() is not None:
            raise RuntimeError(f"{name} exited at once:\n{self.log_tail(name)}")

    def start(self, timeout: float = 120) -> None:
        self.write_config()
        self.install_system_conf()
        munge = self.root / "munge"
        self._start(
            "munged",
            [
                "munged",
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={munge / 'munge.key'}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
                f"--seed-file={munge / 'munged.seed'}",
            ],
        )
        self._wait(lambda: self.munge_socket.exists(), 30, "munged socket")
        self._start("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        self._start("slurmd", ["slurmd", "-D", "-N", self.host, "-f", str(self.conf)])
        self._wait(self.node_idle, timeout, f"node {self.host} idle in sinfo")

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} died (rc {proc.returncode}) waiting for {what}:\n{self.log_tail(name)}")
            if ready():
                return
            time.sleep(1)
        raise TimeoutError(f"no {what} after {timeout:.0f} s:\n{self.log_tail('slurmctld')}\n{self.log_tail('slurmd')}")

    def node_idle(self) -> bool:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%N %T"], env=self.env, capture_output=True, text=True, timeout=20
        ).stdout
        return any(line.split()[:2] == [self.host, "idle"] for line in out.splitlines() if line.strip())

    def log_tail(self, name: str, lines: int = 30) -> str:
        chunks = []
        for path in (self.root / "log" / f"{name}.out", self.root / "log" / f"{name}.log"):
            if path.exists():
                chunks.append(f"--- {path}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(chunks)

    # -- teardown ------------------------------------------------------------------------------
    def stop(self) -> list[str]:
        """Cancel leftover jobs, stop the daemons by pid; returns the names of any still alive."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            subprocess.run(
                ["scancel", "--full", "--partition", self.partition], env=self.env, capture_output=True, timeout=30
            )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                queue = subprocess.run(
                    ["squeue", "-h", "-t", "PD,R,CG,CF"], env=self.env, capture_output=True, text=True, timeout=20
                ).stdout
                if not queue.strip():
                    break
                time.sleep(1)
        alive = []
        for name in ("slurmd", "slurmctld", "munged"):  # reverse start order
            proc = self.processes.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    alive.append(f"{name} (pid {proc.pid})")
        self.restore_system_conf()
        return alive

    def __enter__(self) -> LocalSlurmCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        alive = self.stop()
        if alive:
            raise RuntimeError(f"daemons still running after stop: {alive}")
