"""The sandbox supervisor: memory and process caps, and no process left behind (Linux only)."""
import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from autograde.sandbox import process_table

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses Linux process features")


def _supervise(tmp_path, code, *options, wait=True, timeout=60):
    status = tmp_path / "status.json"
    command = [sys.executable, "-m", "autograde.sandbox", "--status", str(status), *options, "--",
               sys.executable, "-c", textwrap.dedent(code)]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, text=True)
    if wait:
        process.wait(timeout)
    return process, status


def _running(marker: str) -> list[int]:
    """Live `sleep <marker>` processes."""
    found = []
    for pid, (_ppid, _rss, state) in process_table().items():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if state != "Z" and argv[:2] == [b"sleep", marker.encode()]:
            found.append(pid)
    return found


ESCAPE = """
    import os, subprocess, sys, time
    subprocess.Popen(["sleep", "{marker}"], start_new_session=True)          # leaves the process group
    if os.fork() == 0:                                                     # a daemon: double fork, setsid
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", "{marker}"])
        os._exit(0)
    print("ready", flush=True)
    time.sleep(120)
"""


def test_stopping_the_supervisor_kills_processes_that_escaped(tmp_path):
    marker = "987.654"
    process, _ = _supervise(tmp_path, ESCAPE.format(marker=marker), wait=False)
    assert process.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    assert len(_running(marker)) == 2
    process.send_signal(signal.SIGTERM)
    process.wait(10)
    time.sleep(0.2)
    assert _running(marker) == []


def test_the_kernel_exiting_also_ends_what_it_started(tmp_path):
    marker = "876.543"
    code = ESCAPE.format(marker=marker).replace("time.sleep(120)", "sys.exit(3)")
    process, _ = _supervise(tmp_path, code)
    assert process.returncode == 3
    time.sleep(0.2)
    assert _running(marker) == []


def test_memory_of_all_processes_counts(tmp_path):
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
    process, status = _supervise(tmp_path, code, "--memory", "400")
    assert json.loads(status.read_text())["reason"] == "memory limit"
    assert process.returncode == 137


def test_one_process_cannot_allocate_past_the_cap(tmp_path):
    code = """
        try:
            block = bytearray(700 << 20)
        except MemoryError:
            raise SystemExit(42)
    """
    process, _ = _supervise(tmp_path, code, "--memory", "400")
    assert process.returncode == 42


def test_too_many_processes(tmp_path):
    code = """
        import subprocess, time
        children = [subprocess.Popen(["sleep", "765.432"]) for _ in range(12)]
        time.sleep(60)
    """
    process, status = _supervise(tmp_path, code, "--max-processes", "5")
    assert json.loads(status.read_text())["reason"] == "too many processes"
    time.sleep(0.2)
    assert _running("765.432") == []


def test_the_supervisor_follows_its_owner(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"])
    process, _ = _supervise(tmp_path, "import time; time.sleep(60)", "--owner", str(owner.pid), wait=False)
    owner.wait()
    process.wait(10)
    assert process.returncode is not None
