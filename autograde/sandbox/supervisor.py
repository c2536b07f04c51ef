"""One kernel's supervisor: the kernel's namespaces, its limits, its watchdog and its end.

    worker ──control socket── supervisor ──fork── kernel (with isolation: PID 1 of a PID namespace of its own)

The supervisor runs inside the bubblewrap sandbox (:mod:`autograde.sandbox.bwrap`), forked by the warm kernel
server or started by bwrap for a cold kernel (``python -m autograde.sandbox.supervisor``, the request on its
stdin). Before any of the student's code runs it gives the kernel mount, PID, network, IPC and UTS namespaces of
its own, with a private /tmp and /dev/shm into which only the kernel's own folders are bound back; the kernel
then drops every capability and sets no_new_privs (docs/instructors.md, "Security model"). A few times a second
the supervisor adds up the resident memory of the kernel's processes and counts them (``RLIMIT_DATA`` alone would
not stop ``multiprocessing``). Without bubblewrap it is a subreaper instead, and kills the kernel's tree itself;
in container mode (``container_root``) it runs as root, and the kernel as a user of its own
(:mod:`autograde.sandbox.user`).

Control socket, one JSON object per line: the supervisor says ``{"event": "started"}`` once the kernel runs and
``{"event": "stopped", ...}`` (why, exit status, CPU seconds) when it has ended; the worker may send
``{"op": "interrupt"}``; the worker closing the socket, or dying, ends the kernel.
"""
from __future__ import annotations

import json
import os
import resource
import select
import signal
import socket
import sys
from dataclasses import asdict, dataclass, field

import psutil

from ..status import KERNEL_DIED, MEMORY, PROCESSES
from . import linux
from .user import KernelUser

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this grader's own code


def grader_dirs() -> list[str]:
    """Python's installation, this environment and the grader's package: what the supervisor needs to run."""
    found = [sys.base_prefix, sys.prefix, os.path.realpath(sys.prefix), PACKAGE]
    return sorted({os.path.normpath(path) for path in found})


STAGE = "/run/autograde"  # an empty folder of the sandbox, where the supervisor stages its bind mounts
# Why a kernel ended: the grading statuses of the same names (autograde.status), or the grader letting go of it.
STOPPED_BY_GRADER = "stopped by the grader"
_NAMESPACES = linux.CLONE_NEWNS | linux.CLONE_NEWPID | linux.CLONE_NEWNET | linux.CLONE_NEWIPC | linux.CLONE_NEWUTS


@dataclass(frozen=True)
class Limits:
    """What one submission may use. The memory follows mybinder.org: 2 GB for all its processes together."""

    memory_mb: int = 2048
    max_processes: int = 64
    max_file_mb: int = 1024
    tmp_mb: int = 512  # each of /tmp and /dev/shm (memory that resident-set sizes do not show)
    watchdog_interval_s: float = 0.2


@dataclass
class KernelRequest:
    """How to start one kernel: sent by the worker to the warm server or to a cold supervisor."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    writable: list[str] = field(default_factory=list)  # the only folders the kernel can write (and see, under /tmp)
    limits: Limits = field(default_factory=Limits)
    isolate: bool = True
    threads: int | None = None  # torch's intra-op threads, for kernels forked warm
    log_path: str | None = None  # the kernel process's own stdout and stderr (not the cells' output)
    container_root: str | None = None  # container mode: the job's folder, which holds the kernel's folders

    def to_line(self) -> bytes:
        return json.dumps(asdict(self)).encode() + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> "KernelRequest":
        data = json.loads(line)
        data["limits"] = Limits(**data["limits"])
        return cls(**data)


def send(control: socket.socket, **message) -> None:
    try:
        control.sendall(json.dumps(message).encode() + b"\n")
    except OSError:
        pass  # the worker is gone: nobody to tell


def read_line(control: socket.socket) -> bytes:
    """One newline-terminated message, read a byte at a time so that nothing after it is consumed."""
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = control.recv(1)
        if not chunk:
            break
        data += chunk
    return bytes(data)


def supervise(request: KernelRequest, control: socket.socket, start_kernel) -> int:
    """Start the kernel (``start_kernel()`` runs in it and must not return), watch it, end it, report."""
    user = None
    if request.isolate:
        enter_namespaces(request)
    else:
        linux.become_subreaper()
        if request.container_root:
            user = KernelUser(request.container_root, request.writable, request.env)
    try:
        status = _run_kernel(request, control, start_kernel, user)
    finally:
        if user:  # whatever went wrong here, nothing may keep running as the kernel's user
            user.release()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    send(control, event="stopped", kernel_cpu_s=round(usage.ru_utime + usage.ru_stime, 3), **status)
    return 0


def _run_kernel(request: KernelRequest, control: socket.socket, start_kernel, user: KernelUser | None) -> dict:
    """Fork the kernel, watch it until it ends or must end, end it with all it started: why it ended."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts are for the kernel, on the worker's request
    ready_r, ready_w = os.pipe()
    kernel = os.fork()
    if kernel == 0:
        control.close()
        os.close(ready_r)
        _become_kernel(request, ready_w, start_kernel, user)
    os.close(ready_w)
    started = os.read(ready_r, 1) == b"1"
    os.close(ready_r)
    if started:
        send(control, event="started", **({"uid": user.uid, "network": user.network} if user else {}))
        status = _watch(kernel, request, control)
    else:
        status = {"reason": "the kernel could not start (see its log)"}
    ended = _end(kernel, request.isolate)
    if status["reason"] == STOPPED_BY_GRADER and ended is not None and not _killed(ended):
        status = _exit_status(ended)  # it had ended by itself as the grader let go (the grader may have seen it)
    return status


def enter_namespaces(request: KernelRequest) -> None:
    """New mount, PID, network, IPC and UTS namespaces; a private /tmp and /dev/shm holding only the kernel's
    own folders. The next process this one forks is PID 1 of the new PID namespace."""
    linux.unshare(_NAMESPACES)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    # Folders under /tmp that the kernel needs: its own, and Python's and the grader's when they live there (a
    # checkout under /tmp); read-only mounts stay read-only when bound again.
    kept = sorted((folder for folder in request.writable + grader_dirs()
                   if os.path.commonpath([folder, "/tmp"]) == "/tmp"), key=len)  # a folder before what is in it
    linux.mount("tmpfs", STAGE, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "mode=0700")
    staged = []
    for index, folder in enumerate(kept):  # bound aside first: the new /tmp hides where they are
        staged.append(os.path.join(STAGE, str(index)))
        os.mkdir(staged[-1])
        linux.mount(folder, staged[-1], None, linux.MS_BIND | linux.MS_REC)
    size = f"mode=1777,size={request.limits.tmp_mb}m"
    linux.mount("tmpfs", "/tmp", "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, size)
    linux.mount("tmpfs", "/dev/shm", "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC, size)
    for folder, stage in zip(kept, staged):
        os.makedirs(folder, exist_ok=True)
        linux.mount(stage, folder, None, linux.MS_BIND | linux.MS_REC)
    linux.unmount(STAGE)


def _become_kernel(request: KernelRequest, ready_fd: int, start_kernel, user: KernelUser | None) -> None:
    """In the forked kernel: the rest of the isolation, the limits, a clean process state; then the kernel."""
    try:
        os.setsid()  # a process group of its own: kill(0, ...) must not reach the supervisor
        if request.isolate:
            flags = linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
            linux.mount("proc", "/proc", "proc", flags)  # this namespace's processes only
            linux.drop_capabilities()
        elif user:
            user.enter()
        # Without its supervisor the kernel would run unwatched. Set once the user is the kernel's: Linux clears it
        # when a process changes its user. A supervisor that died before makes the write to ready_fd below fail.
        linux.die_with_parent(signal.SIGKILL)
        _apply_limits(request.limits)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.chdir(request.cwd)
        os.environ.clear()
        os.environ.update(request.env)
        _redirect_stdio(request.log_path)
        os.write(ready_fd, b"1")  # raises when the supervisor is already gone: then the kernel must not run
        os.closerange(3, 65536)
        start_kernel()
    except BaseException as exc:  # noqa: BLE001 - nothing may return into the supervisor's code
        try:
            sys.stderr.write(f"autograde: could not start the kernel: {exc!r}\n")
        finally:
            os._exit(70)
    os._exit(0)


def _apply_limits(limits: Limits) -> None:
    """Limits on the kernel process itself, inherited by whatever it starts."""
    for name, value in (("RLIMIT_DATA", limits.memory_mb << 20), ("RLIMIT_CORE", 0),
                        ("RLIMIT_FSIZE", limits.max_file_mb << 20)):
        which = getattr(resource, name)
        hard = resource.getrlimit(which)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the file cap raises OSError, not a kill


def _redirect_stdio(log_path: str | None) -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    log = os.open(log_path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)


def _watch(kernel: int, request: KernelRequest, control: socket.socket) -> dict:
    """Until the kernel exits, passes a limit, or the worker lets go of it: why it ended."""
    limits = request.limits
    pending = b""
    while True:
        readable, _, _ = select.select([control], [], [], limits.watchdog_interval_s)
        if readable:
            data = control.recv(4096)
            if not data:
                return {"reason": STOPPED_BY_GRADER}
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if _operation(line) == "interrupt":
                    _signal(kernel, signal.SIGINT)
        exited = _reap(kernel)
        if exited is not None:
            return _exit_status(exited)
        processes = _processes(kernel, request.isolate)
        rss = sum(_resident(process) for process in processes)
        if rss > limits.memory_mb << 20:
            return {"reason": MEMORY, "rss_mb": rss >> 20, "limit_mb": limits.memory_mb}
        if len(processes) > limits.max_processes:
            return {"reason": PROCESSES, "processes": len(processes), "limit": limits.max_processes}


def _operation(line: bytes) -> str | None:
    try:
        return json.loads(line).get("op")
    except (ValueError, AttributeError):
        return None


def _reap(kernel: int) -> int | None:
    """Collect exited children (orphans land here without isolation); the kernel's wait status once it exited."""
    status = None
    while True:
        try:
            pid, code = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == 0:
            return status
        if pid == kernel:
            status = code


def _exit_status(code: int) -> dict:
    if os.WIFSIGNALED(code):
        return {"reason": KERNEL_DIED, "signal": os.WTERMSIG(code)}
    return {"reason": KERNEL_DIED, "exit_code": os.WEXITSTATUS(code)}


def _processes(kernel: int, isolate: bool) -> list[psutil.Process]:
    """Every process of the kernel: with isolation, all of its PID namespace (the only ones its /proc shows);
    without, this supervisor's descendants (orphans included: it is a subreaper)."""
    try:
        if isolate:
            return [psutil.Process(pid) for pid in psutil.pids()]
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def _resident(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0  # it exited while we looked


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _end(kernel: int, isolate: bool) -> int | None:
    """Kill the kernel and everything it started; the kernel's wait status, unless it was collected before. With
    isolation, killing PID 1 of the namespace is enough: the OS kills the rest. Without, repeat until nothing is
    left (killed processes cannot fork any more)."""
    _signal(kernel, signal.SIGKILL)
    ended = None
    for _ in range(100):
        left = [] if isolate else _live_descendants()
        for pid in left:
            _signal(pid, signal.SIGKILL)
        try:
            ended = os.waitpid(kernel, 0)[1]
        except ChildProcessError:
            pass
        _reap(kernel)
        if not left:
            break
    return ended


def _killed(code: int) -> bool:
    """Whether a wait status is that of SIGKILL (the one signal the kernel cannot send itself, as PID 1)."""
    return os.WIFSIGNALED(code) and os.WTERMSIG(code) == signal.SIGKILL


def _live_descendants() -> list[int]:
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                found.append(process.pid)
        except psutil.Error:
            pass
    return found


def _exec_kernel(request: KernelRequest) -> None:
    os.execv(request.argv[0], request.argv)


def self_test() -> None:
    """Run a trivial isolated kernel here and print "isolated" if it ran as one (bwrap.isolation_problem)."""
    # The kernel's /tmp is a new one: what the sandbox's own /tmp holds is not there, and nothing is there but the
    # grader's folders that live under /tmp (bound in, see enter_namespaces).
    probe = "/tmp/.autograde-self-test"
    open(probe, "w").close()
    allowed = {os.path.relpath(path, "/tmp").split(os.sep)[0] for path in grader_dirs()
               if os.path.commonpath([path, "/tmp"]) == "/tmp"}
    check = (f"import os, sys; sys.exit(0 if os.getpid() == 1 and not os.path.exists({probe!r}) "
             f"and set(os.listdir('/tmp')) <= {allowed!r} else 3)")
    started, stopped = trial(KernelRequest(argv=[sys.executable, "-c", check], env=dict(os.environ), cwd="/"))
    if started.get("event") == "started" and stopped.get("exit_code") == 0:
        print("isolated")
    else:
        print(f"the test kernel did not run isolated: {stopped}", file=sys.stderr)


def trial(request: KernelRequest) -> tuple[dict, dict]:
    """Supervise, in this process, a kernel that runs *request*'s program to its end: the supervisor's first and
    last reports (for the checks that isolation works here)."""
    ours, theirs = socket.socketpair()
    supervise(request, theirs, lambda: _exec_kernel(request))
    theirs.close()
    events = [json.loads(line) for line in ours.makefile("rb") if line.strip()] or [{}]
    return events[0], events[-1]


def main() -> int:
    """A cold kernel's supervisor: bwrap starts it with the control socket as its stdin."""
    control = socket.socket(fileno=os.dup(0))
    request = KernelRequest.from_line(read_line(control))
    return supervise(request, control, lambda: _exec_kernel(request))


if __name__ == "__main__":
    sys.exit(main())
