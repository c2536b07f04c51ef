"""A real one-node Slurm cluster for the tests, from Debian's slurm-wlm and munge, started and stopped in a folder.

munged, slurmctld and slurmd run as root with a generated slurm.conf (the node's real CPUs and memory, free ports,
state, spool, logs and munge's key and socket in the folder), so nothing of the machine's own configuration is
used or changed. ``make slurm`` installs the packages; where they are missing, or the tests do not run as root,
:func:`unavailable` says why and the tests skip.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil

DAEMONS = ("munged", "slurmctld", "slurmd")


def unavailable() -> str | None:
    """Why a cluster cannot be started here, or None."""
    missing = [name for name in DAEMONS + ("sbatch", "sinfo", "scontrol") if shutil.which(name) is None]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} missing): `make slurm` installs slurm-wlm and munge"
    if os.geteuid() != 0:
        return "a one-node Slurm cluster needs root (slurmd starts jobs as their user)"
    return None


def _free_ports(count: int) -> list[int]:
    sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _config(folder: Path) -> str:
    ctld, slurmd = _free_ports(2)
    memory_mb = psutil.virtual_memory().total // 2**20 - 1024  # leave the OS some room
    return f"""ClusterName=autograde-test
SlurmctldHost=localhost
SlurmUser=root
SlurmctldPort={ctld}
SlurmdPort={slurmd}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge.socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerParameters=sched_interval=1
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=localhost CPUs={os.cpu_count()} RealMemory={memory_mb} State=UNKNOWN
PartitionName=grading Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def _wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"Slurm test cluster: {what} within {timeout:.0f} s")
        time.sleep(0.2)


@contextlib.contextmanager
def one_node_cluster(folder: Path):
    """Start the cluster in *folder*; yields the environment for sbatch and friends (SLURM_CONF)."""
    for name in ("state", "spool"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    conf = folder / "slurm.conf"
    conf.write_text(_config(folder))
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    env = dict(os.environ, SLURM_CONF=str(conf))
    started = []
    try:
        subprocess.run(["munged", "--force", f"--key-file={key}", f"--socket={folder}/munge.socket",
                        f"--pid-file={folder}/munged.pid", f"--log-file={folder}/munged.log",
                        f"--seed-file={folder}/munge.seed"], check=True)
        started.append(folder / "munged.pid")
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([daemon, "-f", str(conf)], env=env, check=True)
            started.append(folder / f"{daemon}.pid")
        _wait_for(lambda: "idle" in _run(["sinfo", "-h", "-o", "%T"], env), "the node did not become idle")
        yield env
    finally:
        _stop(started)


def _run(command: list[str], env: dict) -> str:
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    return done.stdout


def _stop(pid_files: list[Path]) -> None:
    pids = []
    for path in pid_files:
        with contextlib.suppress(OSError, ValueError):
            pids.append(int(path.read_text().split()[0]))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    _wait_for(lambda: not any(map(_alive, pids)), "the daemons did not stop", timeout=30)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
