"""Limits for one submission's kernel, and the guarantee that no process of it outlives its grading.

A *supervisor* process stands between the grader and the student's kernel:

    worker (grader)  ──  supervisor  ──  kernel  ──  whatever the student's code starts

* The supervisor is a Linux "child subreaper", so every process the kernel starts (even one that
  calls ``setsid()`` and double-forks to escape its process group) is re-parented to the supervisor
  when its own parent dies, and stays findable as a descendant.
* The kernel gets ``RLIMIT_DATA`` (the memory a process allocates, heap and anonymous mappings, but
  not the address space that libraries merely reserve: torch reserves ~0.6 GB it never touches), no
  core files, and a cap on the size of files it writes.
* A watchdog adds up the resident memory (RSS) of the whole process tree a few times a second, and
  kills the tree when it passes the cap or holds too many processes: ``RLIMIT_DATA`` is per process,
  so this is what stops ``multiprocessing`` or a fork bomb. Together they play the role of Binder's
  cgroup memory limit, without needing cgroups or root.
* When the kernel exits, when the grader asks (SIGTERM), or when the grader process disappears,
  the supervisor kills every descendant (SIGKILL, repeated until none is left) and exits.

The supervisor writes why it stopped the kernel into a small JSON status file, so the grader can tell
"memory limit" from "kernel died".

Cold kernels run ``python -m autograde.sandbox [options] -- python -m ipykernel_launcher -f ...``;
warm kernels (see :mod:`autograde.zygote`) call :func:`supervise` in a forked process instead.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import signal
import sys
import time
from dataclasses import asdict, dataclass

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

# What the status file says when the supervisor, not the kernel, ended the kernel.
MEMORY_LIMIT = "memory limit"
TOO_MANY_PROCESSES = "too many processes"


@dataclass(frozen=True)
class Limits:
    """Resource limits for one submission. The defaults follow mybinder.org: 2 GB of memory."""

    memory_mb: int = 2048
    max_processes: int = 64
    max_file_mb: int = 1024
    watchdog_interval_s: float = 0.2

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Limits":
        return cls(**data)


# ---------------------------------------------------------------------------------------------
# Small Linux helpers (each degrades to a no-op elsewhere, so the grader still runs on macOS).
# ---------------------------------------------------------------------------------------------

def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Make orphaned descendants of this process become its children (instead of init's)."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent(sig: int) -> bool:
    """Ask the kernel to send *sig* to this process when its parent dies."""
    return _prctl(PR_SET_PDEATHSIG, int(sig))


def _stat_fields(pid) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, ppid, ...); None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # "pid (comm) state ppid ..."; comm may contain spaces and parentheses, so split after the last ")".
    return stat[stat.rfind(b")") + 2:].split()


def process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, resident bytes, state) for every process we can see, read from /proc."""
    table = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        fields = _stat_fields(name)
        if fields is None:
            continue  # it exited while we looked
        try:
            table[int(name)] = (int(fields[1]), int(fields[21]) * PAGE_SIZE, fields[0].decode())
        except (IndexError, ValueError):
            continue
    return table


def descendants(root: int, table: dict | None = None) -> list[int]:
    """All live processes below *root* (not *root* itself), parents before children."""
    table = process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, _rss, _state) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def process_alive(pid: int) -> bool:
    """True while *pid* exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat_fields(pid)
    if fields is None:
        return not sys.platform.startswith("linux")
    return fields[:1] != [b"Z"]


def reap_children() -> dict[int, int]:
    """Collect every exited child without blocking; returns pid -> wait status."""
    reaped = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        reaped[pid] = status
    return reaped


def kill_descendants(root: int | None = None) -> int:
    """SIGKILL everything below *root* (default: this process) until nothing is left; returns how many.

    Killed processes cannot fork any more, so repeating converges even against a fork bomb. Orphans
    land on this process when it is a subreaper, and are reaped here.
    """
    root = os.getpid() if root is None else root
    killed = 0
    for _ in range(100):
        table = process_table()
        alive = [pid for pid in descendants(root, table) if table[pid][2] != "Z"]
        if not alive:
            break
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(0.01)
        if root == os.getpid():
            reap_children()
    if root == os.getpid():
        # A killed process with threads shows as a zombie before it can be reaped: wait for the last
        # of our children (briefly), so that none outlives us and their CPU time is accounted to us.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            reap_children()
            if not [pid for pid, (ppid, _rss, _state) in process_table().items() if ppid == root]:
                break
            time.sleep(0.005)
    return killed


def kill_tree(pid: int) -> None:
    """SIGKILL *pid* and everything below it."""
    kill_descendants(pid)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    kill_descendants(pid)  # what it started between the first pass and its death


def kill_orphans(keep) -> None:
    """Kill the trees of this process's children that are not in *keep* (orphans re-parented to a subreaper).

    Exited children are left for the caller to reap."""
    me = os.getpid()
    for pid, (ppid, _rss, state) in process_table().items():
        if ppid == me and pid not in keep and state != "Z":
            kill_tree(pid)


def apply_kernel_limits(limits: Limits) -> None:
    """Limits set inside the kernel process itself (inherited by everything it starts)."""
    memory = limits.memory_mb << 20
    for name, value in (("RLIMIT_DATA", memory), ("RLIMIT_CORE", 0), ("RLIMIT_FSIZE", limits.max_file_mb << 20)):
        which = getattr(resource, name, None)
        if which is None:
            continue
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass
    # A crash in the kernel should not leave a core file behind, nor should a write past the file
    # size cap kill the kernel (it raises OSError instead).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def write_status(path: str | None, **status) -> None:
    if not path:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(status, f)
    os.replace(tmp, path)


def read_status(path: str | None) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError, TypeError):
        return {}


# ---------------------------------------------------------------------------------------------
# The supervisor.
# ---------------------------------------------------------------------------------------------

_SUPERVISOR_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP}


class _SignalWaiter:
    """Sleep until a child exits or we are asked to stop (SIGTERM/SIGHUP), or the interval passes.

    Linux blocks the signals and waits for them (no race, no handler); elsewhere a handler sets a flag."""

    def __init__(self):
        self.stop = False
        self.blocking = hasattr(signal, "sigtimedwait")
        if self.blocking:
            signal.pthread_sigmask(signal.SIG_BLOCK, _SUPERVISOR_SIGNALS)
        else:
            for sig in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, self._handler)

    def _handler(self, *_):
        self.stop = True

    def undo(self) -> None:
        """In the forked kernel: signals as a new process has them."""
        if self.blocking:
            signal.pthread_sigmask(signal.SIG_SETMASK, set())

    def wait(self, interval: float) -> bool:
        """True when asked to stop."""
        if not self.blocking:
            time.sleep(interval)
            return self.stop
        try:
            info = signal.sigtimedwait(_SUPERVISOR_SIGNALS, interval)
        except InterruptedError:
            info = None
        received = ({info.si_signo} if info else set()) | signal.sigpending()
        return bool(received & {signal.SIGTERM, signal.SIGHUP})


def supervise(start_kernel, limits: Limits, owner_pid: int | None = None, status_path: str | None = None) -> int:
    """Fork the kernel (``start_kernel()`` runs in the child and must not return), watch it, clean up.

    Runs in the supervisor process; returns the exit code the supervisor should exit with.
    """
    become_subreaper()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts are for the kernel, sent to our group
    waiter = _SignalWaiter()

    supervisor_pid = os.getpid()
    kernel_pid = os.fork()
    if kernel_pid == 0:  # the kernel
        try:
            # Without its supervisor the kernel would run unwatched: it dies with it, at once.
            die_with_parent(signal.SIGKILL)
            if os.getppid() != supervisor_pid:
                os._exit(70)
            waiter.undo()
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            apply_kernel_limits(limits)
            start_kernel()
        except BaseException as exc:  # noqa: BLE001 - nothing may escape into the supervisor's code
            try:
                sys.stderr.write(f"autograde: could not start the kernel: {exc!r}\n")
            finally:
                os._exit(70)
        os._exit(0)

    exit_code = 0
    kernel_status = None
    next_check = 0.0
    while True:
        term = waiter.wait(limits.watchdog_interval_s)
        reaped = reap_children()
        if kernel_pid in reaped:
            kernel_status = reaped[kernel_pid]
            break
        if term or (owner_pid and not process_alive(owner_pid)):  # asked to stop, or the grader went away
            break
        now = time.monotonic()
        if now >= next_check:
            next_check = now + limits.watchdog_interval_s
            table = process_table()
            tree = descendants(os.getpid(), table)  # the kernel and everything it started
            rss = sum(table[pid][1] for pid in tree)
            if rss > limits.memory_mb << 20:
                exit_code = 137
                write_status(status_path, reason=MEMORY_LIMIT, rss_mb=rss >> 20, limit_mb=limits.memory_mb)
                break
            if len(tree) > limits.max_processes:
                exit_code = 137
                write_status(status_path, reason=TOO_MANY_PROCESSES, processes=len(tree), limit=limits.max_processes)
                break
    # Stop the kernel and everything it started; orphans are ours to kill because we are a subreaper.
    kill_descendants()
    status = read_status(status_path)
    if kernel_status is not None:
        if os.WIFSIGNALED(kernel_status):
            exit_code = 128 + os.WTERMSIG(kernel_status)
            status.setdefault("reason", "kernel died")
            status["signal"] = os.WTERMSIG(kernel_status)
        else:
            exit_code = os.WEXITSTATUS(kernel_status)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    status["kernel_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 3)  # the kernel and what it started
    write_status(status_path, **status)
    return exit_code



def _parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m autograde.sandbox",
                                     description="Run a command as a supervised, memory-capped kernel.")
    parser.add_argument("--memory", type=int, default=Limits.memory_mb, help="memory cap in MB")
    parser.add_argument("--max-processes", type=int, default=Limits.max_processes)
    parser.add_argument("--max-file-mb", type=int, default=Limits.max_file_mb)
    parser.add_argument("--owner", type=int, default=None, help="stop when this process disappears")
    parser.add_argument("--status", default=None, help="JSON file that receives why the kernel was stopped")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("no command given")
    return args


def main(argv=None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    limits = Limits(memory_mb=args.memory, max_processes=args.max_processes, max_file_mb=args.max_file_mb)
    # Normally started by the worker with start_new_session=True, so we lead the kernel's process group;
    # if the worker dies without telling us, the kernel must not live on.
    die_with_parent(signal.SIGTERM)

    def start():
        os.execvp(args.command[0], args.command)

    return supervise(start, limits, owner_pid=args.owner, status_path=args.status)


if __name__ == "__main__":
    sys.exit(main())
