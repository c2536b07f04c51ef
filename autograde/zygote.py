"""Warm kernels: pay ``import torch`` once per grading run, not once per submission.

The *zygote* is a process that imports torch, ipykernel and the modules the assignment imports, and
then waits on a Unix socket. For each submission the grader asks it for a kernel; the zygote forks
a supervisor (:func:`autograde.sandbox.supervise`), which forks the kernel. The kernel therefore
starts with everything already imported (copy-on-write, a few milliseconds instead of ~3 CPU-seconds)
yet is still a process of its own, with its own limits, that dies with its grading.

Care taken so that a forked kernel behaves like a freshly started one:

* the zygote never runs an event loop, a kernel, or a torch operation (forking after OpenMP or zmq
  threads have started is unsafe), it only imports;
* the kernel gets the environment, working directory, ``sys.argv`` and ``sys.path`` that
  ``python -m ipykernel_launcher`` would have, closes the zygote's file descriptors, and reseeds the
  random generators that fork would otherwise share (Python's ``random`` reseeds itself);
* the zygote is a subreaper: it kills any orphan that lands on it, and exits (killing everything it
  started) when the grading run that started it goes away.

Protocol: one JSON request per connection, one JSON reply (``{"pid": ...}`` or ``{"error": ...}``).
"""
from __future__ import annotations

import importlib
import json
import os
import select
import signal
import socket
import sys
import time

from .imports import imported_modules
from .sandbox import Limits, become_subreaper, kill_descendants, kill_orphans, process_alive, reap_children, supervise

# Packages the zygote may import in advance when the assignment does (well-behaved at import: no threads, no I/O).
PRELOADABLE = {"torch", "torchvision", "numpy", "scipy", "sklearn", "pandas", "matplotlib", "PIL", "tqdm"}
# Modules every grading kernel needs; the assignment's own imports are added on the command line.
BASE_PRELOAD = ["IPython", "ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell",
                "ipykernel.debugger", "matplotlib_inline.backend_inline", "sqlite3", "psutil", "pdb", "pydoc",
                "cProfile", "faulthandler", "mimetypes", "torch", "torch.nn", "torch.nn.functional",
                "torch.testing", "numpy"]


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
    return failed


def _reseed() -> None:
    """Give the forked kernel its own random state, as a new process would have."""
    if "numpy" in sys.modules:
        try:
            sys.modules["numpy"].random.seed()
        except Exception:  # noqa: BLE001
            pass
    if "torch" in sys.modules:
        try:
            sys.modules["torch"].seed()
        except Exception:  # noqa: BLE001
            pass


def _run_ipykernel(request: dict, kernel_sys_path: list[str]) -> None:
    """Runs in the kernel process (forked from the supervisor): become ``python -m ipykernel_launcher``."""
    argv = request["argv"]
    # argv is the command the kernel manager built: python -m ipykernel_launcher -f <file> [options]
    launcher_args = argv[argv.index("ipykernel_launcher") + 1:]

    # stdio as a launched kernel would have it: nothing on stdin, output to the worker's log file.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    log = os.open(request.get("log") or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.closerange(3, 65536)

    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ["JPY_PARENT_PID"] = str(os.getppid())  # the supervisor: if it goes, the kernel goes
    sys.argv = ["ipykernel_launcher"] + launcher_args
    sys.path[:] = kernel_sys_path
    _reseed()
    threads = request.get("threads")
    if threads and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))

    from ipykernel import kernelapp

    kernelapp.launch_new_instance()
    sys.stdout.flush()
    os._exit(0)


def _fork_supervisor(request: dict, listener: socket.socket, conn: socket.socket, kernel_sys_path: list[str]) -> int:
    """Fork a supervisor for one kernel; returns its pid once it leads its own session."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            os.close(ready_r)
            listener.close()
            conn.close()
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)  # not the zygote's stdout, a pipe to the grader
            os.setsid()  # its own session and process group: the kernel manager signals the group
            os.write(ready_w, b"1")
            os.close(ready_w)
            limits = Limits.from_json(request["limits"])
            code = supervise(lambda: _run_ipykernel(request, kernel_sys_path), limits,
                             owner_pid=request.get("owner"), status_path=request.get("status"))
        finally:
            os._exit(code)
    os.close(ready_w)
    os.read(ready_r, 1)
    os.close(ready_r)
    return pid


def serve(socket_path: str, parent_pid: int, kernel_sys_path: list[str]) -> None:
    become_subreaper()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    os.chmod(socket_path, 0o600)
    supervisors: set[int] = set()
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    print("ready", flush=True)
    next_sweep = 0.0
    while not stopping:
        try:
            readable, _, _ = select.select([listener], [], [], 0.1)
        except InterruptedError:
            continue
        for pid in reap_children():
            supervisors.discard(pid)
        if not process_alive(parent_pid):
            break
        if time.monotonic() > next_sweep:  # orphans land here (we are a subreaper): none may live on
            next_sweep = time.monotonic() + 1.0
            kill_orphans(supervisors)
        if not readable:
            continue
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            try:
                request = json.loads(_read_line(conn))
                pid = _fork_supervisor(request, listener, conn, kernel_sys_path)
                supervisors.add(pid)
                reply = {"pid": pid}
            except Exception as exc:  # noqa: BLE001 - report to the client, keep serving
                reply = {"error": repr(exc)}
            try:
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass
    listener.close()
    try:
        os.unlink(socket_path)
    except OSError:
        pass
    kill_descendants()


def _read_line(conn: socket.socket) -> bytes:
    """One newline-terminated message (the protocol between the grader and the warm kernel server)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def request_kernel(socket_path: str, request: dict, timeout: float = 15.0) -> int:
    """Ask the zygote for a supervised kernel; returns the supervisor's pid (it leads the process group)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(socket_path)
        conn.sendall(json.dumps(request).encode() + b"\n")
        reply = json.loads(_read_line(conn) or b"{}")
    if "pid" not in reply:
        raise RuntimeError(f"the warm kernel server could not start a kernel: {reply.get('error', 'no reply')}")
    return int(reply["pid"])


def assignment_imports(source_dir) -> list[str]:
    """Modules the assignment's notebooks import that are safe to import in advance (standard library only:
    this runs before the grader has imported anything, so that the zygote starts as early as possible)."""
    from pathlib import Path

    sources = []
    for path in sorted(Path(source_dir).glob("*.ipynb")):
        try:
            cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        except (OSError, ValueError):
            continue
        sources += ["".join(cell.get("source", "")) for cell in cells if cell.get("cell_type") == "code"]
    found = imported_modules(sources)
    return sorted(name for name in found if name.split(".")[0] in PRELOADABLE)


class WarmKernelServer:
    """Start and stop the zygote from the grader's main process."""

    def __init__(self, socket_path: str, log_path: str, modules=(), startup_timeout: float = 120.0):
        self.socket_path = socket_path
        self.log_path = log_path
        self.modules = list(dict.fromkeys(BASE_PRELOAD + list(modules)))
        self.startup_timeout = startup_timeout
        self.process = None

    @classmethod
    def for_assignment(cls, source_dir, work_dir) -> "WarmKernelServer":
        """Start a server that preloads what the assignment imports; its log goes to *work_dir*."""
        import atexit
        import shutil
        import tempfile

        os.makedirs(work_dir, exist_ok=True)
        run_dir = tempfile.mkdtemp(prefix="autograde-", dir="/tmp")  # short: Unix socket paths are limited
        atexit.register(shutil.rmtree, run_dir, True)
        return cls(os.path.join(run_dir, "zygote.sock"), os.path.join(work_dir, "zygote.log"),
                   assignment_imports(source_dir)).start()

    def start(self) -> "WarmKernelServer":
        import subprocess

        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "autograde.zygote", self.socket_path, str(os.getpid()), *self.modules],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        log.close()
        return self

    def wait_ready(self) -> bool:
        """Block until the zygote has imported everything; False if it failed to start."""
        if self.process is None:
            return False
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.2)
            if ready:
                line = self.process.stdout.readline()
                return line.strip() == b"ready"
            if self.process.poll() is not None:
                return False
        return False

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except Exception:  # noqa: BLE001
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()
        self.process = None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    socket_path, parent_pid, modules = argv[0], int(argv[1]), argv[2:]
    # `python -m` put the working directory first on sys.path; ipykernel_launcher would remove it.
    kernel_sys_path = [p for p in sys.path[1:]]
    failed = preload(modules)
    if failed:
        print(f"autograde.zygote: could not preload {', '.join(failed)}", file=sys.stderr, flush=True)
    serve(socket_path, parent_pid, kernel_sys_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
