"""Warm kernels: pay ``import torch`` (and its first-use imports) once per grading run, not once per submission.

The *warm server* is a process that imports ipykernel, torch and the modules the assignment imports, runs the
one-off warm-ups that would otherwise cost every kernel a second (torch's meta-device kernels), and then waits
on a Unix socket. With isolation on it runs inside a bubblewrap sandbox that sees only the run's folder under
``/tmp`` (the jobs' kernel folders), never the course, the gradebooks or ``--out``. For each kernel a worker
connects and sends a :class:`~autograde.sandbox.supervisor.KernelRequest`; the server forks a supervisor, which
gives the kernel namespaces of its own (only its own job's folders) and forks it: the kernel starts with
everything imported (copy-on-write, milliseconds), yet is a process of its own with its own limits.

Care taken so that a forked kernel behaves like a freshly started one: the server never runs an event loop, a
kernel or threads (forking after OpenMP or zmq threads started is unsafe); its torch warm-up runs on the meta
device only; the kernel gets the environment, working directory, ``sys.argv`` and ``sys.path`` that
``python -m ipykernel_launcher`` would have, and reseeds the random generators that fork would share.

The server ends, killing its supervisors, when the grading run that started it closes its stdin.
"""
from __future__ import annotations

import ast
import gc
import glob
import importlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from . import linux
from .bwrap import bwrap_command
from .environment import kernel_environment
from .supervisor import KernelRequest, read_line, send, supervise

# Packages the server may import in advance when the assignment does (well-behaved at import: no threads, no I/O).
PRELOADABLE = {"torch", "torchvision", "numpy", "scipy", "sklearn", "pandas", "matplotlib", "PIL", "tqdm"}
# Modules every grading kernel needs; the assignment's own imports are added on the command line.
BASE_PRELOAD = ["IPython", "ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell", "ipykernel.debugger",
                "matplotlib_inline.backend_inline", "sqlite3", "pdb", "pydoc", "cProfile", "faulthandler",
                "mimetypes", "autograde.probing"]


def preload(modules) -> list[str]:
    """Import what a kernel will need; returns the modules that could not be imported."""
    # ipykernel would choose this backend itself, but only if matplotlib is not imported yet.
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # debugpy's import-time warning
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - an assignment may import anything; a failure is not ours
            failed.append(name)
    if "torch" in sys.modules:
        warm_up_torch(sys.modules["torch"])
    return failed


def warm_up_torch(torch) -> None:
    """torch imports ~800 modules (its compiler's front end, ~1.5 s) the first time a tensor meets the meta device
    or an optimizer is made; tests use both. Meta tensors have no data, so this starts no threads and is safe to
    fork after."""
    x = torch.empty(2, 3, 8, 8, device="meta")
    layer = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    layer.to("meta")(x).sum()


def _reseed() -> None:
    """Give the forked kernel its own random state, as a new process would have (Python's reseeds itself)."""
    for name, reseed in (("numpy", lambda m: m.random.seed()), ("torch", lambda m: m.seed())):
        if name in sys.modules:
            reseed(sys.modules[name])


def _run_ipykernel(request: KernelRequest, kernel_sys_path: list[str]) -> None:
    """In the kernel process: become ``python -m ipykernel_launcher -f <file>``."""
    argv = request.argv  # python -m ipykernel_launcher -f <file> [options]
    sys.argv = ["ipykernel_launcher"] + argv[argv.index("ipykernel_launcher") + 1:]
    sys.path[:] = kernel_sys_path
    _reseed()
    if request.threads and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(request.threads))
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()
    sys.stdout.flush()


def _serve_one(listener: socket.socket, conn: socket.socket, kernel_sys_path: list[str]) -> int:
    """Fork the supervisor of one kernel; returns its pid."""
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            listener.close()
            os.setsid()  # out of the server's process group and session
            request = KernelRequest.from_line(read_line(conn))
            code = supervise(request, conn, lambda: _run_ipykernel(request, kernel_sys_path))
        except BaseException as exc:  # noqa: BLE001 - report to the worker; never return into the server loop
            send(conn, event="stopped", reason=f"the warm server could not start the kernel: {exc!r}")
        finally:
            os._exit(code)
    return pid


def serve(socket_path: str, kernel_sys_path: list[str], isolated: bool) -> None:
    linux.become_subreaper()  # without isolation, what a killed supervisor leaves lands here, and is killed
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    os.chmod(socket_path, 0o600)
    supervisors: set[int] = set()
    # What was imported lives as long as the kernels: out of their garbage collector's sight, a full collection
    # in a kernel neither walks these ~350,000 objects (0.15 s each time) nor copies their memory pages.
    gc.freeze()
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select([listener, sys.stdin], [], [], 1.0)
        _reap(supervisors)
        if not isolated:  # with isolation a kernel's processes live and die in its own PID namespace
            _kill_orphans(supervisors)
        if sys.stdin in readable and not os.read(sys.stdin.fileno(), 1):
            break  # the grading run closed our stdin, or died
        if listener in readable:
            conn, _ = listener.accept()
            with conn:
                supervisors.add(_serve_one(listener, conn, kernel_sys_path))
    listener.close()
    for pid in supervisors:
        os.kill(pid, signal.SIGKILL)  # closing their control sockets would do too; this is at once


def _reap(supervisors: set[int]) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        supervisors.discard(pid)


def _kill_orphans(supervisors: set[int]) -> None:
    for child in psutil.Process().children():
        if child.pid not in supervisors:
            for process in [child] + child.children(recursive=True):
                try:
                    process.kill()
                except psutil.Error:
                    pass


def imported_modules(sources) -> set[str]:
    """Absolute module names imported by the given code sources; code that does not parse is skipped."""
    found = set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
    return found


def assignment_imports(source_dir: Path) -> list[str]:
    """Modules the assignment's notebooks import that are safe to import in advance."""
    sources = []
    for path in sorted(Path(source_dir).glob("*.ipynb")):
        try:
            cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        except (OSError, ValueError):
            continue
        sources += ["".join(cell.get("source", "")) for cell in cells if cell.get("cell_type") == "code"]
    return sorted(name for name in imported_modules(sources) if name.split(".")[0] in PRELOADABLE)


class WarmKernelServer:
    """Start and stop the warm server from the grading run's main process."""

    @classmethod
    def for_assignment(cls, source_dir: Path, runtime_root: str, work_dir: Path, isolate: bool) -> "WarmKernelServer":
        """A started server that preloads what the assignment imports; its log goes to *work_dir*."""
        return cls(runtime_root, str(work_dir / "warm-server.log"), assignment_imports(source_dir), isolate).start()

    def __init__(self, runtime_root: str, log_path: str, modules=(), isolate: bool = True):
        self.socket_path = os.path.join(runtime_root, "warm.sock")
        self.runtime_root = runtime_root
        self.log_path = log_path
        self.modules = list(dict.fromkeys(BASE_PRELOAD + list(modules)))
        self.isolate = isolate
        self.process: subprocess.Popen | None = None

    def start(self) -> "WarmKernelServer":
        command = [sys.executable, "-m", "autograde.sandbox.zygote", self.socket_path, str(self.isolate),
                   *self.modules]
        if self.isolate:
            command = bwrap_command(command, writable=[self.runtime_root])
        # Its own environment is the kernels' too: /proc/self/environ shows what the server started with.
        env = dict(kernel_environment(os.environ, self.runtime_root), MPLCONFIGDIR=self._matplotlib_cache())
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                            start_new_session=True, env=env)
        return self

    def _matplotlib_cache(self) -> str:
        """A matplotlib folder for the server, in the run's folder, with a copy of the grader's own list of the
        system's fonts: the sandbox hides the home folder, and building that list again costs every run ~0.5 s."""
        folder = os.path.join(self.runtime_root, "matplotlib")
        os.makedirs(folder, exist_ok=True)
        cache = os.environ.get("MPLCONFIGDIR") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "matplotlib")
        for path in glob.glob(os.path.join(cache, "fontlist-*.json")):
            shutil.copy(path, folder)
        return folder

    def wait_ready(self, timeout: float = 120.0) -> bool:
        """Block until the server has imported everything; False if it failed to start."""
        deadline = time.monotonic() + timeout
        while self.process is not None and time.monotonic() < deadline:
            if select.select([self.process.stdout], [], [], 0.2)[0]:
                return self.process.stdout.readline().strip() == b"ready"
            if self.process.poll() is not None:
                return False
        return False

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.stdin.close()  # the server's signal to end
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.process = None


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    socket_path, isolated, modules = argv[0], argv[1] == "True", argv[2:]
    linux.die_with_parent(signal.SIGKILL)  # the grading run (or, isolated, bwrap, which dies with it)
    # `python -m` put the working folder first on sys.path; ipykernel_launcher would not have it.
    kernel_sys_path = list(sys.path[1:])
    failed = preload(modules)
    if failed:
        print(f"autograde.sandbox.zygote: could not preload {', '.join(failed)}", file=sys.stderr, flush=True)
    serve(socket_path, kernel_sys_path, isolated)
    # Tearing down an interpreter that imported torch takes about a second, which the grading run would wait for;
    # the server holds nothing that needs it.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
