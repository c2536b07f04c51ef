"""The kernel manager nbgrader's Execute preprocessor uses while grading: every kernel is sandboxed.

nbclient creates kernels through ``kernel_manager_class``; :class:`SandboxKernelManager` is a
jupyter_client ``AsyncKernelManager`` whose provisioner starts the kernel under the supervisor of
:mod:`autograde.sandbox`, either *cold* (``python -m autograde.sandbox -- python -m ipykernel_launcher``)
or *warm* (forked by :mod:`autograde.zygote`, with torch already imported).

It also ignores the notebook's kernelspec: a submission saved with another kernel (``conda-env-foo``,
``python3.12``, a kernel name that does not exist here) still runs on this environment's Python.
Kernels talk over IPC sockets rather than TCP ports, so parallel gradings cannot race for ports.
"""
from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from .sandbox import Limits, process_alive
from .zygote import request_kernel


@dataclass
class SandboxSettings:
    """How this worker's kernels are started; set once per worker process (one submission per worker)."""

    limits: Limits = field(default_factory=Limits)
    status_path: str | None = None  # the supervisor writes why it stopped the kernel here
    log_path: str | None = None  # the kernel's own stdout/stderr (not the cells' output)
    ipc_dir: str | None = None  # short directory for the kernel's IPC sockets
    warm_socket: str | None = None  # the zygote's socket; None for cold kernels
    threads: int | None = None  # torch/OpenMP threads per kernel
    started_warm: bool | None = None  # set after launch: whether the zygote provided the kernel


SETTINGS = SandboxSettings()


class ForeignProcess:
    """The part of ``subprocess.Popen`` that LocalProvisioner uses, for a process that is not our child.

    Warm kernels are children of the zygote, so the worker watches them through their pid.
    """

    stdin = stdout = stderr = None

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode = None

    def poll(self):
        if self.returncode is None and not process_alive(self.pid):
            self.returncode = 0
        return self.returncode

    def wait(self):
        while self.poll() is None:
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, sig):
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self):
        self.send_signal(signal.SIGKILL)


class SandboxProvisioner(LocalProvisioner):
    """Starts the kernel under a supervisor, and stops it by asking the supervisor (which kills the tree)."""

    async def launch_kernel(self, cmd, **kwargs):
        settings = SETTINGS
        env = dict(kwargs.get("env") or os.environ)
        cwd = str(kwargs.get("cwd") or os.getcwd())
        if settings.threads:
            for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                env[name] = str(settings.threads)
        if settings.warm_socket and "ipykernel_launcher" in cmd:
            request = {"argv": list(cmd), "env": env, "cwd": cwd, "limits": settings.limits.to_json(),
                       "owner": os.getpid(), "status": settings.status_path, "log": settings.log_path,
                       "threads": settings.threads}
            try:
                pid = await asyncio.get_running_loop().run_in_executor(
                    None, request_kernel, settings.warm_socket, request)
            except (OSError, RuntimeError, ValueError) as exc:
                self.log.warning("warm kernel unavailable (%s); starting a cold one", exc)
            else:
                settings.started_warm = True
                self.process = ForeignProcess(pid)
                self.pid = self.pgid = pid  # the supervisor called setsid(): it leads the group
                self.cwd = cwd
                return self.connection_info
        settings.started_warm = False
        limits = settings.limits
        wrapped = [sys.executable, "-m", "autograde.sandbox", "--memory", str(limits.memory_mb),
                   "--max-processes", str(limits.max_processes), "--max-file-mb", str(limits.max_file_mb),
                   "--owner", str(os.getpid())]
        if settings.status_path:
            wrapped += ["--status", settings.status_path]
        kwargs["env"] = env
        kwargs["cwd"] = cwd
        if settings.log_path:
            kwargs["stdout"] = kwargs["stderr"] = open(settings.log_path, "ab")
        try:
            return await super().launch_kernel(wrapped + ["--"] + list(cmd), **kwargs)
        finally:
            if settings.log_path:
                kwargs["stdout"].close()

    async def kill(self, restart: bool = False) -> None:
        """SIGTERM the supervisor alone: it kills the kernel and every process the kernel started,
        including those that left the process group. SIGKILL the group only if it does not comply."""
        if self.process is None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(100):
            if self.process.poll() is not None:
                return
            await asyncio.sleep(0.02)
        await super().kill(restart=restart)

    async def terminate(self, restart: bool = False) -> None:
        await self.kill(restart=restart)


class SandboxKernelManager(AsyncKernelManager):
    """An AsyncKernelManager for grading: this Python, IPC transport, sandboxed process."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if SETTINGS.ipc_dir:
            os.makedirs(SETTINGS.ipc_dir, exist_ok=True)
            self.transport = "ipc"
            self.ip = os.path.join(SETTINGS.ipc_dir, uuid.uuid4().hex[:8])

    @property
    def kernel_spec(self):
        # Whatever kernel the student's notebook names, grade with this environment's Python.
        if self._kernel_spec is None:
            self._kernel_spec = KernelSpec(
                argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                display_name="Python 3 (ipykernel)", language="python", name="python3",
                metadata={"debugger": False})
        return self._kernel_spec

    @property
    def ipykernel(self) -> bool:
        return True  # so that nbclient keeps the kernel's history in memory, whatever the kernel name

    async def _async_pre_start_kernel(self, **kw):
        self.kernel_id = self.kernel_id or kw.pop("kernel_id", str(uuid.uuid4()))
        if self.provisioner is None:
            self.provisioner = SandboxProvisioner(kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self)
        return await super()._async_pre_start_kernel(**kw)
