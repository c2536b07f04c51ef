"""Gradescope's autograder in a real Docker container, with Docker's default seccomp profile and capabilities: there
bubblewrap cannot create namespaces, and the grader (root, as Gradescope runs it) takes container mode by itself.

The bundle of the real assignment grades three uploads, each in a fresh container of a private Docker daemon
(tests/docker_daemon.py): the reference solution, a wrong answer, and a hostile notebook, right but for attacks
in its first answer cell. The container's first process listens on 127.0.0.1, runs /autograder/run_autograder as
Gradescope does, then reports who connected and which processes outlived the grading. `make docker-check` runs
this file alone; `make docker` installs docker.io (where it cannot, the tests skip and say why).
"""
import contextlib
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import nbformat
import psutil
import pytest

from assignment_helpers import ASSIGNMENT, NOTEBOOK, reference_answers, submission
from autograde_fixtures import gradescope_root, run_cli
from docker_daemon import private_docker, unavailable

# Docker containers, and a whole grading run in each: slow.
pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="containers need Linux"), pytest.mark.slow]

PORT = 50007  # the listener in the container's own network namespace (docker run --network none)
PYTHON = Path(os.path.realpath(sys.prefix)) / "bin" / "python"
WRONG = "def conv_output_size(size, kernel_size, stride=1, padding=0):\n    return size\n"

# The container's first process. It reaps what is reparented to it, waits for what is still exiting, and names
# whatever is left a minute after the grading (a daemon that escaped would still be running).
ENTRY_PATH = "/entry.py"
ENTRY = f'''
import json, os, socket, subprocess, time
import psutil

listener = socket.create_server(("127.0.0.1", {PORT}))
listener.setblocking(False)
done = subprocess.run(["/autograder/run_autograder"], capture_output=True, text=True)
connections = 0
while True:
    try:
        listener.accept()[0].close()
    except BlockingIOError:
        break
    connections += 1

def alive():
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
    return [p for p in psutil.process_iter(["uids", "cmdline", "status"])
            if p.pid != os.getpid() and p.info["status"] != psutil.STATUS_ZOMBIE]

deadline = time.monotonic() + 60
while alive() and time.monotonic() < deadline:
    time.sleep(0.2)
left = [{{"uid": p.info["uids"].real, "cmdline": p.info["cmdline"]}} for p in alive()]
with open("/autograder/check.json", "w") as f:
    json.dump({{"exit_code": done.returncode, "log": done.stdout + done.stderr, "connections": connections,
               "left": left}}, f)
'''

SECRETS = ["/autograder/source/course/source/residual_blocks/residual_blocks.ipynb",
           "/autograder/source/template/gradebook.db", "/autograder/source/settings.json",
           "/autograder/submission/residual_blocks.ipynb", "/autograder/source/project/resnet_course/solutions.py",
           "/proc/1/environ"]
TARGETS = ["/autograder/results/results.json", "/autograder/source/course/nbgrader_config.py",
           "/autograder/run_autograder", "/autograder/sabotage", f"{PYTHON.parent.parent}/sabotage", "/usr/sabotage"]
# Written as a student would: it searches the visible file system rather than trusting known paths alone.
HOSTILE = r'''

def _escape():
    import glob, json, os, signal, socket, sys

    def attempt(action):
        try:
            return action()
        except Exception as exc:
            return f"refused: {type(exc).__name__}"

    def read(path):
        with open(path, "rb") as file:
            return f"read {len(file.read())} bytes"

    def write(path):
        with open(path, "ab") as file:
            file.write(b"SABO" + b"TAGED")
        return "written"

    def text(path):
        return attempt(lambda: open(path, encoding="utf-8", errors="ignore").read(5_000_000))

    def visible(suffixes):
        for top in sorted(os.listdir("/")):
            if top not in ("proc", "sys", "dev"):
                for folder, _, files in os.walk("/" + top):
                    if not folder.startswith(os.getcwd()):
                        yield from (os.path.join(folder, n) for n in files if n.endswith(suffixes))

    def connect(family, address):
        with socket.socket(family) as peer:
            peer.settimeout(3)
            peer.connect(address)
        return "connected"

    def kill_everyone():
        killed = []
        for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
            if pid != os.getpid() and attempt(lambda: os.kill(pid, signal.SIGKILL)) is None:
                killed.append(pid)
        return killed

    def daemon():
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                loop = "import time\nwhile True:\n    open('/tmp/daemon-log', 'a').write('x')\n    time.sleep(0.1)\n"
                os.execv(sys.executable, [sys.executable, "-c", loop])
            os._exit(0)
        os.wait()
        return "started"

    job = os.path.dirname(os.getcwd())  # the kernel works in a throw-away folder inside its job's folder
    files = list(visible((".ipynb", ".db")))
    status = open("/proc/self/status").read()
    found = {
        "uid": os.getuid(),
        "no_new_privs": status.split("NoNewPrivs:")[1].split()[0],
        "capabilities": status.split("CapEff:")[1].split()[0],
        "solutions": [p for p in files if "### BEGIN " + "SOLUTION" in text(p) and "conv_output_size" in text(p)],
        "gradebooks": [p for p in files if "gradebook" in p and os.access(p, os.R_OK)],
        "read": {p: attempt(lambda: read(p)) for p in SECRETS + [job + "/gradebook.db"]},
        "listed": {p: attempt(lambda: len(os.listdir(p))) for p in [job, os.path.dirname(job), "/autograder/source",
                                                                   "/autograder/grading"]},
        "written": {p: attempt(lambda: write(p)) for p in TARGETS + [job + "/gradebook.db", job + "/sabotage"]},
        "tcp": attempt(lambda: connect(socket.AF_INET, ("127.0.0.1", PORT))),
        "warm_servers": {p: attempt(lambda: connect(socket.AF_UNIX, p))
                         for p in glob.glob("/tmp/autograde-*/warm.sock")},
        "setuid": attempt(lambda: os.setuid(0) or "root"),
        "killed": kill_everyone(),
        "daemon": daemon(),
    }
    print("ATTACKS " + json.dumps(found))


_escape()
'''.replace("SECRETS", repr(SECRETS)).replace("TARGETS", repr(TARGETS)).replace("PORT", str(PORT))


@pytest.fixture(scope="module")
def docker(tmp_path_factory):
    why = unavailable() or (None if shutil.which("bwrap") else "bubblewrap is not installed: `make bubblewrap`")
    if why:
        pytest.skip(why)
    folder = tmp_path_factory.mktemp("docker")
    with contextlib.ExitStack() as stack:
        try:
            client = stack.enter_context(private_docker(folder))
        except RuntimeError as exc:
            pytest.skip(f"Docker could not be started here: {exc}")
        daemon = int((folder / "dockerd.pid").read_text())
        image = client.import_image("autograde-test:host")
        tried = client("run", "--rm", "--network", "none", *client.host_mounts(), image, "/usr/bin/true", check=False)
        if tried.returncode != 0:
            pytest.skip(f"Docker cannot run a container here: {tried.stderr.strip()[-500:]}")
        yield client, image
    assert not psutil.pid_exists(daemon) and not (folder / "data").exists(), "dockerd outlived the tests"


@pytest.fixture(scope="module")
def graded(docker, tmp_path_factory):
    client, image = docker
    folder = tmp_path_factory.mktemp("gradescope")
    bundle = folder / "autograder.zip"
    built = run_cli("gradescope", "--assignment", ASSIGNMENT, "--out", bundle)
    assert built.returncode == 0, built.stderr
    answers = reference_answers()
    uploads = {"correct": submission(answers), "wrong": submission(dict(answers, conv_output_size=WRONG)),
               "hostile": submission(dict(answers, conv_output_size=answers["conv_output_size"] + HOSTILE))}
    return {name: _grade_in_container(client, image, bundle, folder / name, nb) for name, nb in uploads.items()}


def _grade_in_container(docker, image: str, bundle: Path, folder: Path, nb) -> dict:
    """Grade *nb* as Gradescope does, in a new container: what the container's first process reported, the
    results.json, the ATTACKS line of the autograded notebook, and whether the bundle and upload stayed the same."""
    root = gradescope_root(bundle, folder / "autograder", {f"{NOTEBOOK}.ipynb": nb})
    (root / "results").mkdir()  # Gradescope's own, before the grader runs: a kernel must not write into it
    entry = folder / "entry.py"
    entry.write_text(ENTRY)
    before = _digests(root)
    # The script goes in as one file: a folder mounted read-only could cover the host's own paths (a checkout
    # under /check, say), which are mounted at the same paths.
    done = docker("run", "--rm", "--network", "none", *docker.host_mounts(), "-v", f"{root}:/autograder",
                  "-v", f"{entry}:{ENTRY_PATH}:ro", "-e", f"AUTOGRADER_PYTHON={PYTHON}",
                  "-e", f"PATH={PYTHON.parent}:/usr/bin:/bin", "-e", "HOME=/root", image,
                  PYTHON, ENTRY_PATH, check=False)
    report = root / "check.json"
    assert report.exists(), f"the container did not run: {done.stderr[-3000:]}"
    check = json.loads(report.read_text())
    autograded = root / "grading" / "out" / "nbgrader" / "autograded" / "submission" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    return {"check": check, "results": json.loads((root / "results" / "results.json").read_text()),
            "attacks": _attacks(autograded), "changed": _changed(before, _digests(root))}


def _digests(root: Path) -> dict[str, str]:
    """sha256 of every file of the bundle and the upload (bytecode left out: Python writes it as root)."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in ("source", "submission") for path in sorted((root / folder).rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts}


def _changed(before: dict, after: dict) -> list[str]:
    return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))


def _attacks(autograded: Path) -> dict:
    if not autograded.exists():
        return {}
    nb = nbformat.read(autograded, as_version=4)
    lines = [line for cell in nb.cells for output in cell.get("outputs", [])
             for line in output.get("text", "").splitlines() if line.startswith("ATTACKS ")]
    return json.loads(lines[-1][len("ATTACKS "):]) if lines else {}


def _automatic_points(results: dict) -> float:
    return sum(test["max_score"] for test in results["tests"] if "status" in test)


def test_every_container_grades_in_container_mode_and_says_so(graded):
    for name, case in graded.items():
        check, results = case["check"], case["results"]
        assert check["exit_code"] == 0, f"{name}:\n{check['log'][-3000:]}"
        assert "No permissions to create new namespace" not in results["output"], name  # it graded instead
        assert "grading in container mode" in check["log"], name
        assert "Isolation: graded in container mode" in check["log"], name  # grade's summary
        assert "Note: graded in container mode: the notebook ran as a user of its own" in results["output"], name
        assert "a seccomp filter refuses every socket but Unix ones" in results["output"], name


def test_the_reference_solution_gets_every_automatic_point(graded):
    results = graded["correct"]["results"]
    assert _automatic_points(results) > 0
    assert results["score"] == _automatic_points(results), results["output"]
    assert all(test["status"] == "passed" for test in results["tests"] if "status" in test)


def test_a_wrong_answer_loses_points(graded):
    results = graded["wrong"]["results"]
    failed = [test["name"] for test in results["tests"] if test.get("status") == "failed"]
    assert results["score"] < _automatic_points(results)
    assert failed and all("conv_output_size" in name for name in failed), failed


def test_a_hostile_notebook_is_contained(graded):
    case = graded["hostile"]
    found = case["attacks"]
    assert found, "the attacks did not run"
    assert found["uid"] >= 61000 and found["no_new_privs"] == "1" and int(found["capabilities"], 16) == 0
    assert found["solutions"] == []
    environment = (os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix))
    assert [path for path in found["gradebooks"] if not path.startswith(environment)] == []
    for kind in ("read", "listed", "written", "warm_servers"):
        assert found[kind] and all(str(what).startswith("refused") for what in found[kind].values()), found[kind]
    assert found["tcp"].startswith("refused") and found["setuid"].startswith("refused")
    assert found["killed"] == [] and found["daemon"] == "started"
    assert case["check"]["connections"] == 0  # nothing reached the listener
    assert case["check"]["left"] == []  # the daemon died with the kernel
    assert case["changed"] == []  # the bundle and the upload are byte for byte what they were
    assert case["results"]["score"] == _automatic_points(case["results"])  # the attacks cost nothing else
