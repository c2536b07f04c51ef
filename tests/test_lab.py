"""`make lab PORT=N` serves JupyterLab on that port, as the README promises."""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # `make lab` starts a Jupyter server


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_json(url, process, seconds=90):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"make lab exited early with {process.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, json.load(response)
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"nothing answered on {url} within {seconds} s")


def test_make_lab_serves_jupyterlab_on_the_chosen_port(tmp_path):
    port = free_port()
    log = (tmp_path / "lab.log").open("w+")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    process = subprocess.Popen(["make", "--no-print-directory", "lab", f"PORT={port}"], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        status, body = wait_for_json(f"http://127.0.0.1:{port}/api", process)
        assert status == 200 and "version" in body
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab", timeout=5) as response:
            assert response.status == 200  # the login page or the lab itself: the server answers HTTP
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    log.seek(0)
    assert f":{port}/lab" in log.read()
