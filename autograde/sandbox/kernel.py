"""The kernel manager nbgrader's Execute uses while grading: every kernel isolated, limited and supervised.

Configured in ``nbgrader_config.py`` (``c.Execute.kernel_manager_class``), so that plain ``nbgrader autograde``,
formgrader's Autograde button and ``python -m autograde grade`` start kernels the same way. nbclient creates
a :class:`IsolatedKernelManager` per notebook; its provisioner asks for a supervised kernel (see
:mod:`autograde.sandbox.supervisor`): from the warm kernel server when the grading tool runs one
(``warm_server``), else cold, from a new bubblewrap sandbox. Either way the provisioner talks to the kernel's
supervisor over a control socket, never to the kernel's process: interrupting, stopping and learning why the
kernel ended all go through the supervisor.

The manager also ignores the notebook's kernelspec (a notebook saved with ``conda-env-foo`` still runs on this
environment's Python) and uses IPC sockets in a fresh folder under ``/tmp`` rather than TCP ports: a kernel with
no network has no TCP, and parallel gradings cannot race for ports.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from queue import Empty

import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from traitlets import Bool, Enum, Integer, List, Type, Unicode

from ..status import OUTPUT_TOO_LARGE
from .bwrap import bwrap_command, isolation_problem
from .connection import ConnectionWatch, WatchedChannel, WatchedContext
from .environment import kernel_environment
from .supervisor import STOPPED_BY_GRADER, KernelRequest, Limits

START_TIMEOUT_S = 120  # a cold kernel on a loaded machine imports ipykernel first
STOP_TIMEOUT_S = 10
IPC_PREFIX = "kernel-"  # a kernel's IPC folder, in runtime_root: the kernel writes there
_ON_ERROR = "onexc" if sys.version_info >= (3, 12) else "onerror"  # shutil.rmtree's (3.12 deprecates onerror)


def remove_kernel_files(path: str) -> None:
    """Remove *path*, a folder a kernel wrote in, with all it holds; never raises, never follows a link. The kernel
    may have made folders in it unreadable or unwritable (mode 000), which stops even their owner, the grader's
    user under bubblewrap: such a folder (never a link) gets u+rwx, once, and is removed."""
    path, unlocked = os.path.abspath(path), set()

    def unlock(_function, failed: str, _error) -> None:
        if failed in unlocked:
            return  # unlocked already: what still cannot be removed stays
        unlocked.add(failed)
        for folder in (os.path.dirname(failed), failed):
            if os.path.commonpath([path, folder]) == path:  # nothing above *path* is touched
                _open_to_owner(folder)
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(os.lstat(failed).st_mode):
                shutil.rmtree(failed, **{_ON_ERROR: unlock})
            else:
                os.unlink(failed)

    shutil.rmtree(path, **{_ON_ERROR: unlock})


def _open_to_owner(folder: str) -> None:
    """u+rwx for *folder*, unless it is a link (whose target it would change) or gone."""
    with contextlib.suppress(OSError, NotImplementedError):  # (NotImplementedError: chmod refuses links)
        mode = os.lstat(folder).st_mode
        if stat.S_ISDIR(mode):
            os.chmod(folder, stat.S_IMODE(mode) | stat.S_IRWXU, follow_symlinks=False)


class SupervisedKernel:
    """What jupyter_client's LocalProvisioner uses of a ``Popen``, for a kernel behind its supervisor."""

    stdin = stdout = stderr = None

    def __init__(self, control: socket.socket, process: subprocess.Popen | None = None):
        self.control = control
        self.process = process  # bwrap, for a cold kernel; None for a kernel forked by the warm server
        self.stopped: dict | None = None
        self.returncode = None
        self._pending = b""

    def next_event(self, timeout: float) -> dict | None:
        """The supervisor's next message within *timeout* seconds; {"event": "gone"} when it closed the socket."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            if self.control.fileno() < 0:  # let go of already
                return self._record({"event": "gone", "reason": "the grader stopped the kernel"})
            left = max(0.0, deadline - time.monotonic())
            if not select.select([self.control], [], [], left)[0]:
                return None
            try:
                data = self.control.recv(65536)
            except OSError:
                data = b""
            if not data:
                return self._record({"event": "gone", "reason": "the kernel's supervisor ended"})
            self._pending += data
        line, self._pending = self._pending.split(b"\n", 1)
        return self._record(json.loads(line))

    def _record(self, event: dict) -> dict:
        if event.get("event") in ("stopped", "gone") and self.stopped is None:
            self.stopped = event
            self.returncode = -signal.SIGKILL if event.get("signal") else int(event.get("exit_code") or 0)
        return event

    def poll(self):
        while self.stopped is None and self.next_event(0) is not None:
            pass
        return self.returncode

    def wait(self, timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.stopped is None:
            left = 1.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                break
            self.next_event(left)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if sig == signal.SIGINT:
            self._send({"op": "interrupt"})
        else:
            self.kill()

    def terminate(self) -> None:
        self.kill()

    def let_go(self) -> None:
        """Tell the supervisor to end the kernel (it kills it and everything it started, then reports)."""
        if self.stopped is None:
            try:
                self.control.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def kill(self) -> None:
        """Let go of the kernel and wait for the supervisor's report."""
        self.let_go()
        if self.stopped is None:
            self.wait(STOP_TIMEOUT_S)
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # an unresponsive supervisor: bwrap's death takes the sandbox with it
            self.process.wait()
        self.control.close()

    def _send(self, message: dict) -> None:
        try:
            self.control.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            pass


class SandboxProvisioner(LocalProvisioner):
    """Starts the kernel through a supervisor: from the warm server, or cold in a new bubblewrap sandbox."""

    lost: dict | None = None  # the connection the client lost, when it did (IsolatedKernelManager.connection_lost)

    async def launch_kernel(self, cmd, **kwargs):
        manager: IsolatedKernelManager = self.parent
        cwd = os.path.abspath(str(kwargs.get("cwd") or os.getcwd()))
        request = KernelRequest(argv=list(cmd), env=manager.kernel_environment(kwargs.get("env")), cwd=cwd,
                                writable=[cwd, manager.ipc_dir], limits=manager.limits(),
                                isolate=manager.isolation == "bwrap", threads=manager.threads or None,
                                log_path=os.path.join(manager.ipc_dir, "kernel.log"),
                                container_root=manager.runtime_root if manager.isolation == "container" else None)
        loop = asyncio.get_running_loop()
        kernel = await loop.run_in_executor(None, self._start, request, manager)
        self.process = kernel
        self.pid = kernel.process.pid if kernel.process else None
        self.pgid = None  # signals go through the supervisor
        self.cwd = cwd
        return self.connection_info

    def _start(self, request: KernelRequest, manager: "IsolatedKernelManager") -> SupervisedKernel:
        kernel = self._start_warm(manager.warm_server) if manager.warm_server else None
        manager.started_warm = kernel is not None
        kernel = kernel or self._start_cold(request)
        kernel.control.sendall(request.to_line())
        event = kernel.next_event(START_TIMEOUT_S) or {"reason": f"no answer within {START_TIMEOUT_S} s"}
        if event.get("event") != "started":
            kernel.kill()
            raise RuntimeError(f"the kernel did not start: {event.get('reason', event)}")
        self.kernel = kernel
        return kernel

    def _start_warm(self, server: str) -> SupervisedKernel | None:
        control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            control.connect(server)
        except OSError as exc:
            control.close()
            self.log.warning("the warm kernel server is unavailable (%s); starting a cold kernel", exc)
            return None
        return SupervisedKernel(control)

    def _start_cold(self, request: KernelRequest) -> SupervisedKernel:
        command = [sys.executable, "-m", "autograde.sandbox.supervisor"]
        if request.isolate:
            problem = isolation_problem()
            if problem:
                raise RuntimeError(problem)
            command = bwrap_command(command, request.writable, self.parent.read_only_paths)
        ours, theirs = socket.socketpair()
        with theirs, open(request.log_path, "ab") as log:
            process = subprocess.Popen(command, stdin=theirs, stdout=subprocess.DEVNULL, stderr=log,
                                       start_new_session=True)
        return SupervisedKernel(ours, process)

    async def kill(self, restart: bool = False) -> None:
        if self.process is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.process.kill)

    async def terminate(self, restart: bool = False) -> None:
        await self.kill(restart)

    async def send_signal(self, signum: int) -> None:
        if self.process is not None:
            self.process.send_signal(signum)

    def stop_reason(self, timeout: float = STOP_TIMEOUT_S) -> dict:
        """Why the kernel ended, as its supervisor reported it (waits up to *timeout* s for the report); a kernel
        still running when the client lost a connection to it was cut off by ZeroMQ for a message over the cap:
        then ``{"reason": OUTPUT_TOO_LARGE, "limit_mb": 32, "channel": "iopub", ...}``."""
        kernel = getattr(self, "kernel", None)
        if kernel is None:
            return {}
        kernel.wait(timeout)
        stopped = kernel.stopped or {}
        if self.lost and stopped.get("reason") == STOPPED_BY_GRADER:
            return {**stopped, "reason": OUTPUT_TOO_LARGE, **self.lost}
        return stopped


class GradingKernelClient(AsyncKernelClient):
    """The client nbclient gets for a grading kernel: ready as soon as the kernel answers, and capped.

    * jupyter_client's ``wait_for_ready`` then waits until IOPub has been quiet for 0.2 s, which only discards
      messages that nbclient ignores anyway (they belong to no cell);
    * it connects while the kernel is still starting, before the kernel has bound its sockets: ZeroMQ then tries
      again after RECONNECT_IVL, 100 ms by default, which every kernel would wait for;
    * a message part over ``max_message_mb`` never reaches the grader's memory: ZeroMQ drops the connection
      instead (:mod:`autograde.sandbox.connection`). From then on every wait for a message raises nbclient's
      ``DeadKernelError``, ``is_alive()`` is False, ``connection.lost`` names the channel, and the manager ends the
      kernel, recording the reason :data:`OUTPUT_TOO_LARGE` for ``stop_reason()``.
    """

    # Taking a message in costs the grader about three times its size. ipykernel sends what a cell prints within
    # 0.2 s as one message: a loop printing 20 MB at once is a notebook to grade (tests/test_autograde_cli.py).
    max_message_mb = Integer(32, help="largest message part a kernel may send (a cell's value, output or reply): "
                             "ZeroMQ cuts a kernel that sends more off, and the kernel is stopped").tag(config=True)
    shell_channel_class = Type(WatchedChannel, klass=AsyncZMQSocketChannel)
    iopub_channel_class = Type(WatchedChannel, klass=AsyncZMQSocketChannel)
    stdin_channel_class = Type(WatchedChannel, klass=AsyncZMQSocketChannel)
    control_channel_class = Type(WatchedChannel, klass=AsyncZMQSocketChannel)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.connection = ConnectionWatch(self._connection_lost)

    def _context_default(self) -> zmq.asyncio.Context:
        self._created_context = True
        context = WatchedContext()
        context.setsockopt(zmq.RECONNECT_IVL, 10)
        context.setsockopt(zmq.MAXMSGSIZE, self.max_message_mb << 20)  # (for every socket made from now on)
        return context

    def _create_connected_socket(self, channel: str, identity: bytes | None = None):
        sock = super()._create_connected_socket(channel, identity)
        self.connection.add(channel, sock)
        return sock

    def _connection_lost(self, channel: str) -> None:
        if isinstance(self.parent, IsolatedKernelManager):
            self.parent.connection_lost(channel, self.max_message_mb)

    async def _async_is_alive(self) -> bool:
        """nbclient asks every second while a cell runs: a kernel the grader lost a connection to is as good as
        dead (whatever it sends on that channel is lost)."""
        return self.connection.check() is None and await super()._async_is_alive()

    is_alive = _async_is_alive

    async def _wait_until_answering(self, timeout: float | None = None) -> None:
        """Ready once the kernel has answered a kernel_info request and IOPub has delivered a message.

        Any kernel_info reply counts, as in jupyter_client: on a busy machine the kernel answers a request after
        the next one was sent, and waiting for the reply to the latest request would keep the client one reply
        behind for good. The kernel publishes its status on IOPub for each request: a message there means IOPub
        is connected (what the first cell prints would be lost before that)."""
        timeout = START_TIMEOUT_S if timeout is None else timeout
        deadline = time.monotonic() + timeout
        reply, iopub = None, False
        while time.monotonic() < deadline:
            self.kernel_info()
            reply = reply or await _next_message(self.shell_channel, 1, "kernel_info_reply")
            iopub = iopub or await _next_message(self.iopub_channel, 0.2) is not None
            if reply and iopub:
                self._handle_kernel_info_reply(reply)
                return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
        raise RuntimeError(f"Kernel didn't respond in {timeout} seconds")

    wait_for_ready = _wait_until_answering


async def _next_message(channel, timeout: float, msg_type: str | None = None) -> dict | None:
    """The next message on *channel* (of *msg_type*: others are skipped) within *timeout* s; None if none came."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            msg = await channel.get_msg(timeout=max(0.0, deadline - time.monotonic()))
        except Empty:
            return None
        if msg_type is None or msg["msg_type"] == msg_type:
            return msg


class IsolatedKernelManager(AsyncKernelManager):
    """An AsyncKernelManager for grading: this environment's Python, IPC sockets, an isolated, supervised kernel."""

    client_factory = Type(GradingKernelClient, klass=AsyncKernelClient)

    isolation = Enum(["bwrap", "container", "none"], "bwrap", help="bwrap: the OS isolates each kernel (see "
                     "autograde.sandbox.bwrap); container: each kernel runs as a user of its own, for a grader that "
                     "runs as root in a container (autograde.sandbox.container; the kernel's folders must be in "
                     "runtime_root); none: the kernel runs with the grader's own access").tag(config=True)
    memory_mb = Integer(Limits.memory_mb, help="memory of one kernel, all its processes together").tag(config=True)
    max_processes = Integer(Limits.max_processes, help="processes one kernel may run at once").tag(config=True)
    max_file_mb = Integer(Limits.max_file_mb, help="largest file a kernel may write").tag(config=True)
    tmp_mb = Integer(Limits.tmp_mb, help="size of the kernel's private /tmp and /dev/shm").tag(config=True)
    threads = Integer(0, help="OpenMP and torch threads per kernel; 0 keeps the libraries' default").tag(config=True)
    warm_server = Unicode(None, allow_none=True, help="socket of the warm kernel server, if one runs").tag(config=True)
    runtime_root = Unicode("/tmp", help="where kernels' IPC folders go (Unix socket paths are short)").tag(config=True)
    read_only_paths = List(Unicode(), help="more folders kernels may read (a course package, data)").tag(config=True)
    kernel_log = Unicode(None, allow_none=True, help="keep the kernel process's own output here").tag(config=True)
    started_warm = Bool(None, allow_none=True, help="set at launch: whether the warm server gave the kernel")

    def limits(self) -> Limits:
        return Limits(memory_mb=self.memory_mb, max_processes=self.max_processes, max_file_mb=self.max_file_mb,
                      tmp_mb=self.tmp_mb)

    def kernel_environment(self, env) -> dict:
        """The allow-listed part of *env* (see autograde.sandbox.environment), with a private home: with bwrap the
        sandbox's own /tmp; with none a folder of the kernel's own, deleted with it. (In container mode the
        supervisor sets the home of the kernel's user in its place: autograde.sandbox.user.)"""
        home = "/tmp"
        if self.isolation == "none":
            home = os.path.join(self.ipc_dir, "home")
            os.makedirs(home, exist_ok=True)
        return kernel_environment(env or os.environ, home, self.threads)

    def connection_lost(self, channel: str, limit_mb: int) -> None:
        """The client lost its connection on *channel*: the kernel died, or ZeroMQ cut it off for a message over
        *limit_mb*. Either way the kernel is ended; the supervisor's report tells which (stop_reason)."""
        provisioner = self.provisioner
        if isinstance(provisioner, SandboxProvisioner) and provisioner.lost is None:
            provisioner.lost = {"limit_mb": limit_mb, "channel": channel}
            provisioner.process.let_go()

    @property
    def kernel_spec(self):
        # Whatever kernel the student's notebook names, grade with this environment's Python.
        if self._kernel_spec is None:
            self._kernel_spec = KernelSpec(
                argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                display_name="Python 3 (ipykernel)", language="python", name="python3", metadata={"debugger": False})
        return self._kernel_spec

    @property
    def ipykernel(self) -> bool:
        return True  # so that nbclient keeps the kernel's history in memory, whatever the kernel name

    async def _async_pre_start_kernel(self, **kw):
        self.ipc_dir = tempfile.mkdtemp(prefix=IPC_PREFIX, dir=self.runtime_root)
        self.transport = "ipc"
        self.ip = os.path.join(self.ipc_dir, "ipc")
        self.connection_file = os.path.join(self.ipc_dir, "connection.json")  # the kernel must be able to read it
        self.kernel_id = self.kernel_id or kw.pop("kernel_id", str(uuid.uuid4()))
        if self.provisioner is None:
            self.provisioner = SandboxProvisioner(kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self)
        return await super()._async_pre_start_kernel(**kw)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart)
        ipc_dir = getattr(self, "ipc_dir", None)
        if restart or ipc_dir is None:
            return
        log = os.path.join(ipc_dir, "kernel.log")
        if self.kernel_log and os.path.isfile(log) and not os.path.islink(log):  # (the kernel could write there)
            shutil.move(log, self.kernel_log)
        remove_kernel_files(ipc_dir)

    cleanup_resources = _async_cleanup_resources
