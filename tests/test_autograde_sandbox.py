"""The kernel's sandbox and supervisor, without Jupyter: limits, no process left behind, and (with bubblewrap) what
an isolated kernel can see, write and reach. Each test runs a small Python program as the "kernel"."""
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from autograde.sandbox import bwrap
from autograde.sandbox.bwrap import bwrap_command, isolation_problem
from autograde.sandbox.supervisor import PACKAGE, KernelRequest, Limits, grader_dirs

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox uses Linux features")
ISOLATION = [pytest.param(True, id="isolated", marks=pytest.mark.skipif(
    sys.platform.startswith("linux") and isolation_problem() is not None, reason=str(isolation_problem()))),
    pytest.param(False, id="not-isolated")]


class Supervised:
    """A cold supervisor (in bwrap when isolated) running `python -c CODE` as its kernel."""

    def __init__(self, tmp_path, code, isolate, **limits):
        self.folder = tmp_path / "job"
        self.folder.mkdir(exist_ok=True)
        request = KernelRequest(argv=[sys.executable, "-c", textwrap.dedent(code)], env=dict(os.environ),
                                cwd=str(self.folder), writable=[str(self.folder)], isolate=isolate,
                                limits=Limits(**limits), log_path=str(self.folder / "kernel.log"))
        command = [sys.executable, "-m", "autograde.sandbox.supervisor"]
        if isolate:
            command = bwrap_command(command, request.writable)
        self.control, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen(command, stdin=theirs, start_new_session=True)
        self.control.sendall(request.to_line())
        self.reader = self.control.makefile("rb")

    def event(self, timeout=120) -> dict:
        self.control.settimeout(timeout)
        line = self.reader.readline()
        return json.loads(line) if line else {"event": "gone"}

    def stopped(self, timeout=120) -> dict:
        """The supervisor's final report, once the kernel has ended by itself."""
        while (event := self.event(timeout))["event"] not in ("stopped", "gone"):
            pass
        self.process.wait(30)
        return event

    def stop(self) -> dict:
        self.control.shutdown(socket.SHUT_WR)
        return self.stopped()



def running(marker: str) -> list[int]:
    """Live `sleep <marker>` processes."""
    return [p.pid for p in psutil.process_iter(["cmdline", "status"])
            if p.info["status"] != psutil.STATUS_ZOMBIE and (p.info["cmdline"] or [])[:2] == ["sleep", marker]]


def poll(condition, timeout=30) -> bool:
    """Whether *condition()* became true within *timeout* seconds (checked every 50 ms)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def gone(marker: str) -> bool:
    return poll(lambda: not running(marker))


ESCAPE = """
    import os, subprocess, sys, time
    subprocess.Popen(["sleep", "{marker}"], start_new_session=True)          # leaves the process group
    if os.fork() == 0:                                                     # a daemon: double fork, setsid
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", "{marker}"])
        os._exit(0)
    time.sleep(120)
"""


@pytest.mark.parametrize("isolate", ISOLATION)
def test_letting_go_of_the_kernel_kills_what_escaped_its_process_group(tmp_path, isolate):
    marker = f"987.{os.getpid()}{int(isolate)}"
    kernel = Supervised(tmp_path, ESCAPE.format(marker=marker), isolate)
    assert kernel.event()["event"] == "started"
    assert poll(lambda: len(running(marker)) == 2)
    assert kernel.stop()["reason"] == "stopped by the grader"
    assert gone(marker)


@pytest.mark.parametrize("isolate", ISOLATION)
def test_the_kernel_exiting_also_ends_what_it_started(tmp_path, isolate):
    marker = f"876.{os.getpid()}{int(isolate)}"
    code = ESCAPE.format(marker=marker).replace("time.sleep(120)", "sys.exit(3)")
    report = Supervised(tmp_path, code, isolate).stopped()
    assert (report["reason"], report["exit_code"]) == ("kernel died", 3)
    assert gone(marker)


def _ended_unnoticed(pid: int) -> bool:
    """Whether a process below *pid* has exited and waits to be collected (its supervisor has not looked yet)."""
    try:
        return any(p.status() == psutil.STATUS_ZOMBIE for p in psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return False


@pytest.mark.parametrize("isolate", ISOLATION)
def test_a_kernel_that_ended_before_the_grader_let_go_is_reported_as_ended(tmp_path, isolate):
    """The grader lets go of a kernel it lost its connection to: if the kernel had ended by itself, the report says
    so (not "stopped by the grader"), even when the supervisor's watchdog had not looked since."""
    kernel = Supervised(tmp_path, "import sys; sys.exit(3)", isolate, watchdog_interval_s=600)
    assert kernel.event()["event"] == "started"
    assert poll(lambda: _ended_unnoticed(kernel.process.pid))
    report = kernel.stop()
    assert (report["reason"], report.get("exit_code")) == ("kernel died", 3)


@pytest.mark.parametrize("isolate", ISOLATION)
def test_memory_of_all_processes_counts(tmp_path, isolate):
    code = """
        import os, time
        for _ in range(4):
            if os.fork() == 0:
                block = bytearray(150 << 20)          # 150 MB each, touched
                for i in range(0, len(block), 4096):
                    block[i] = 1
                time.sleep(60)
        time.sleep(60)
    """
    report = Supervised(tmp_path, code, isolate, memory_mb=400).stopped()
    assert report["reason"] == "memory limit" and report["limit_mb"] == 400


@pytest.mark.parametrize("isolate", ISOLATION)
def test_one_process_cannot_allocate_past_the_cap(tmp_path, isolate):
    code = """
        try:
            block = bytearray(700 << 20)
        except MemoryError:
            raise SystemExit(42)
    """
    assert Supervised(tmp_path, code, isolate, memory_mb=400).stopped()["exit_code"] == 42


@pytest.mark.parametrize("isolate", ISOLATION)
def test_too_many_processes(tmp_path, isolate):
    marker = f"765.{os.getpid()}{int(isolate)}"
    code = f"""
        import subprocess, time
        children = [subprocess.Popen(["sleep", "{marker}"]) for _ in range(12)]
        time.sleep(60)
    """
    assert Supervised(tmp_path, code, isolate, max_processes=5).stopped()["reason"] == "too many processes"
    assert gone(marker)


@pytest.mark.parametrize("isolate", ISOLATION)
def test_an_interrupt_reaches_the_kernel(tmp_path, isolate):
    code = """
        import time
        open("ready", "w").close()
        try:
            time.sleep(60)
        except KeyboardInterrupt:
            raise SystemExit(5)
    """
    kernel = Supervised(tmp_path, code, isolate)
    assert kernel.event()["event"] == "started"
    assert poll(lambda: (kernel.folder / "ready").exists())
    kernel.control.sendall(b'{"op": "interrupt"}\n')
    assert kernel.stopped()["exit_code"] == 5


WHAT_THE_KERNEL_SEES = """
    import ctypes, json, os, socket
    libc = ctypes.CDLL(None, use_errno=True)
    def attempt(call):
        try:
            return call()
        except OSError as exc:
            return f"denied: {{exc.errno}}"
    def connect():
        socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
        return "connected"
    def write(path):
        with open(path, "a") as f:
            f.write("x")
        return "written"
    seen = {{
        "pid": os.getpid(), "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "tmp": os.listdir("/tmp"), "cwd": os.getcwd(), "root": sorted(os.listdir("/")),
        "outside": [p for p in {outside!r} if os.path.exists(p)],
        "tcp": attempt(connect), "write_outside": attempt(lambda: write({outside!r}[0])),
        "write_usr": attempt(lambda: write("/usr/autograde-test")),
        "userns": libc.unshare(0x10000000), "umount_tmp": libc.umount2(b"/tmp", 2),
        "capabilities": open("/proc/self/status").read().split("CapEff:")[1].split()[0],
        "kill_parent": attempt(lambda: os.kill(os.getppid(), 9) or "sent"),
    }}
    with open("seen.json", "w") as f:
        json.dump(seen, f)
"""


@pytest.mark.skipif(sys.platform.startswith("linux") and isolation_problem() is not None,
                    reason=str(isolation_problem()))
def test_an_isolated_kernel_sees_its_folder_alone(tmp_path):
    secret = tmp_path / "course" / "source" / "solutions.ipynb"
    secret.parent.mkdir(parents=True)
    secret.write_text("### BEGIN SOLUTION")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0)
    # The course's master copy is not there, wherever this checkout lives (under /tmp too).
    outside = [str(secret), str(tmp_path / "course"), os.path.expanduser("~/.bashrc"), "/etc/passwd",
               os.path.join(os.path.dirname(PACKAGE), "source")]
    code = WHAT_THE_KERNEL_SEES.format(port=listener.getsockname()[1], outside=outside)
    kernel = Supervised(tmp_path, code, isolate=True)
    report = kernel.stopped()
    assert report["exit_code"] == 0, (kernel.folder / "kernel.log").read_text()
    seen = json.loads((kernel.folder / "seen.json").read_text())
    assert seen["pid"] == 1 and seen["processes"] == [1]  # a PID namespace of its own, nothing else in it
    # A private /tmp: its own folder alone, and the grader's own folders where they live under /tmp (a checkout there)
    grader = {Path(path).relative_to("/tmp").parts[0] for path in grader_dirs() if Path(path).is_relative_to("/tmp")}
    assert set(seen["tmp"]) == {kernel.folder.relative_to("/tmp").parts[0]} | grader
    assert seen["cwd"] == str(kernel.folder)
    assert seen["outside"] == [] and seen["write_outside"].startswith("denied")
    assert seen["write_usr"].startswith("denied")
    assert seen["tcp"].startswith("denied")
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing reached the listener
    assert seen["userns"] == -1 and seen["umount_tmp"] == -1 and int(seen["capabilities"], 16) == 0
    assert secret.read_text() == "### BEGIN SOLUTION"


def test_isolation_problems_name_the_fix(monkeypatch):
    isolation_problem.cache_clear()
    try:
        monkeypatch.setattr(shutil, "which", lambda name: None)
        assert "apt-get install bubblewrap" in isolation_problem()
        assert "--isolation none" in isolation_problem()
        isolation_problem.cache_clear()
        monkeypatch.setattr(bwrap.sys, "platform", "darwin")
        assert "needs Linux" in isolation_problem()
    finally:
        isolation_problem.cache_clear()
