"""Escape attempts: a dishonest student's notebook tries to win marks or harm the class, and every attempt fails,
through `python -m autograde grade` and through plain `nbgrader autograde` with the course's plugins.

Each attempt is written as a student would write it, against whatever the kernel can see: it searches the whole
visible file system (not one known path) for the master copy, a gradebook or a classmate's notebook, tries to
write into every file of the class it finds, connects to a listener on 127.0.0.1, leaves a daemon that keeps
writing, and kills every process it can see. Each prints what it achieved, which the tests read back.
"""
import hashlib
import json
import os
import socket
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from autograde.sandbox.bwrap import isolation_problem
from autograde_fixtures import MINI, fill, make_course, release_and_answers, read_csv, run_cli, stock_nbgrader, write

pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox uses Linux features"),
              pytest.mark.skipif(sys.platform.startswith("linux") and isolation_problem() is not None,
                                 reason=f"no isolation here: {isolation_problem()}"),
              pytest.mark.slow]  # every attempt is graded in sandboxed kernels, through the CLI and nbgrader

WRONG = "def double(x):\n    return 3 * x\n"
MARK = "classmate-7f3a9e"  # in the classmate's notebook; escapes build it from pieces, so their source lacks it
WALK = '''
import json, os, sys
def visible_files(suffixes):
    """Every file of the visible file system with one of *suffixes*, but this notebook's own folder."""
    for top in sorted(os.listdir("/")):
        if top in ("proc", "sys", "dev"):
            continue
        for folder, _, files in os.walk("/" + top):
            if not folder.startswith(os.getcwd()):
                yield from (os.path.join(folder, name) for name in files if name.endswith(suffixes))
def read(path):
    try:
        with open(path, encoding="utf-8", errors="ignore") as f:
            return f.read(5_000_000)
    except OSError:
        return ""
def report(**found):
    print("ESCAPE " + json.dumps(found))
'''
ESCAPES = {
    "master_copy": WRONG + WALK + '''
begin, end = "### BEGIN " + "SOLUTION", "### END " + "SOLUTION"
solutions = [p for p in visible_files((".ipynb",)) if begin in read(p) and "def double" in read(p)]
gradebooks = [p for p in visible_files((".db", ".sqlite")) if "gradebook" in os.path.basename(p)]
judges = [p for p in visible_files((".py",)) if "def test_hidden(student" in read(p)]
for path in solutions[:1]:
    for cell in json.loads(read(path))["cells"]:
        code = "".join(cell["source"])
        if "def double" in code:
            exec(code.replace(begin, "").replace(end, ""))
report(solutions=solutions, gradebooks=gradebooks, judges=judges)
''',
    "classmate": WRONG + WALK + '''
mark = "classmate" + "-7f3a9e"
leaks = [read(p)[:2000] for p in visible_files((".ipynb", ".html", ".json")) if mark in read(p)]
report(leaks=leaks)
''',
    "sabotage": WRONG + WALK + '''
root, written = {root!r}, []
for path in visible_files((".ipynb", ".db", ".py", ".csv", ".html", ".json")):
    if path.startswith(root) and not path.startswith(os.getcwd()):
        try:
            with open(path, "ab") as f:
                f.write(b"SABO" + b"TAGED")
            written.append(path)
        except OSError:
            pass
for folder in (root, os.path.dirname(os.getcwd()), sys.prefix, "/usr"):
    try:
        open(os.path.join(folder, "sabotage-{stamp}"), "x").close()
        written.append(folder)
    except OSError:
        pass
report(written=written)
''',
    "network": WRONG + WALK + '''
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
    report(tcp="connected")
except OSError as exc:
    report(tcp=f"refused: {{exc}}")
''',
    "daemon": WRONG + '''
import os, sys
loop = "import sys, time\\nwhile True:\\n    try:\\n        open(sys.argv[1], 'a').write('x')\\n    except OSError:\\n        pass\\n    time.sleep(0.05)\\n"
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", loop, {outside!r}, "{stamp}"])
    os._exit(0)
''',
    "links": WRONG + WALK + '''
import os
# Its folder filled with links out of the sandbox, under every name the grader could write, chmod, copy or render:
# the notebook's, nbgrader's outputs, a gradebook's. Without a folder the grader never reads back, the grader itself
# would write through them.
made = []
for name in ["mini.ipynb", "mini.html", "gradebook.db", "timestamp.txt", "feedback", "autograded", "source"]:
    for target in ({victim!r}, {victim_dir!r}):
        try:
            if os.path.lexists(name):
                os.remove(name)
            os.symlink(target, name)
            made.append(name)
            break
        except OSError:
            pass
report(links=made, cwd=os.getcwd())
''',
    "kill_supervisor": WALK + '''
import os, signal
for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()] + [os.getppid()]:
    if pid != os.getpid():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
report(killed="tried")
''',
}


def _digest(folder: Path, skip=()) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not set(path.relative_to(folder).parts) & set(skip):
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def attempt(tmp_path_factory):
    """The class, the course (with the grading plugins, also for plain nbgrader) and what escapes need."""
    root = tmp_path_factory.getbasetemp()
    course = make_course(tmp_path_factory.mktemp("course"), protected=True)
    release, answers = release_and_answers(course)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    stamp = f"escape{int(time.time() * 1000)}"
    victim_dir = root / f"victim-{stamp}"
    victim_dir.mkdir()
    (victim_dir / "victim.txt").write_text("the instructor's file\n")
    context = {"root": str(root), "port": listener.getsockname()[1], "stamp": stamp,
               "outside": str(root / f"{stamp}.txt"), "victim": str(victim_dir / "victim.txt"),
               "victim_dir": str(victim_dir)}
    # Wrong answers (points could only come from an escape), but the last: its kills must not disturb grading.
    students = {name: fill(release, {"double": code.format(**context) + (answers["double"] if name == "kill_supervisor"
                                                                         else "")})
                for name, code in ESCAPES.items()}
    victim = fill(release, answers)
    victim.cells.insert(0, nbformat.v4.new_markdown_cell(f"My notes: {MARK}"))
    students["victim"] = victim
    yield {"course": course, "students": students, "listener": listener, **context}
    listener.close()


EXPECTED = {"master_copy": 0, "classmate": 0, "sabotage": 0, "network": 0, "daemon": 0, "links": 0,
            "kill_supervisor": 3, "victim": 3}


def _reports(autograded: Path) -> dict:
    """name -> what the escape printed, from its autograded notebook."""
    nb = nbformat.read(autograded, as_version=4)
    text = "".join(out.get("text", "") for cell in nb.cells for out in cell.get("outputs", []))
    found = {}
    for line in text.splitlines():
        if line.startswith("ESCAPE "):
            found.update(json.loads(line[len("ESCAPE "):]))
    return found


def _check(attempt, scores: dict, autograded: dict, feedback_texts: dict) -> None:
    assert scores == EXPECTED
    reports = {name: _reports(path) for name, path in autograded.items()}
    # Installed software is visible (read-only), with the example gradebooks nbgrader ships: nothing else.
    assert reports["master_copy"]["solutions"] == [] and reports["master_copy"]["judges"] == []
    environment = (sys.prefix, os.path.realpath(sys.prefix))
    assert [path for path in reports["master_copy"]["gradebooks"] if not path.startswith(environment)] == []
    assert reports["classmate"] == {"leaks": []}
    assert "written" in reports["sabotage"]  # (what it wrote in its own private /tmp vanished with it)
    assert reports["network"]["tcp"].startswith("refused")
    assert reports["kill_supervisor"] == {"killed": "tried"}
    assert "mini.ipynb" in reports["links"]["links"]  # the links were made: the grader never followed them
    victim = Path(attempt["victim"])
    assert victim.read_text() == "the instructor's file\n" and sorted(victim.parent.iterdir()) == [victim]
    assert all(path.is_file() and not path.is_symlink() for path in autograded.values())
    with pytest.raises(BlockingIOError):
        attempt["listener"].accept()  # nothing ever reached the listener
    for name, text in feedback_texts.items():
        assert MARK not in text or name == "victim", name
    assert _no_daemon(attempt["stamp"])
    assert not Path(attempt["outside"]).exists()
    for folder in (attempt["root"], sys.prefix, "/usr"):
        assert not list(Path(folder).glob(f"**/sabotage-{attempt['stamp']}")), folder
    assert not [path for path in Path(attempt["root"]).rglob("*") if path.is_file() and b"SABOTAGED" in path.read_bytes()]


def _no_daemon(stamp: str, timeout=30) -> bool:
    deadline = time.monotonic() + timeout
    while any(stamp in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_escapes_fail_through_the_grading_tool(attempt, tmp_path):
    folder = tmp_path / "class"
    for name, nb in attempt["students"].items():
        write(nb, folder / f"{name}.ipynb")
    before = _digest(folder), _digest(attempt["course"], skip={"__pycache__"})
    out = tmp_path / "out"
    done = run_cli("grade", folder, "--assignment", MINI, "--out", out, "--course", attempt["course"], "--timeout", "120")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_csv(out / "grades.csv")
    scores = {name: int(float(row["test_visible"] or 0) + float(row["test_hidden"] or 0)) for name, row in rows.items()}
    autograded = {name: out / "nbgrader" / "autograded" / name / MINI / f"{MINI}.ipynb" for name in rows}
    feedback = {name: (out / "feedback" / f"{name}.html").read_text(encoding="utf-8") for name in rows}
    _check(attempt, scores, autograded, feedback)
    assert rows["kill_supervisor"]["status"] == "ok" and rows["victim"]["status"] == "ok"
    assert (_digest(folder), _digest(attempt["course"], skip={"__pycache__"})) == before


def test_escapes_fail_through_plain_nbgrader(attempt, tmp_path):
    stock = tmp_path / "stock"
    stock.mkdir()
    (stock / "nbgrader_config.py").write_text((attempt["course"] / "nbgrader_config.py").read_text())
    for name, nb in attempt["students"].items():
        write(nb, stock / "submitted" / name / MINI / f"{MINI}.ipynb")
    submitted = _digest(stock / "submitted")
    with stock_nbgrader(stock, attempt["course"] / "source", MINI, "fixture-course", "--Execute.timeout=120") as gb:
        scores = {s.student.id: int(sum(g.auto_score or 0 for g in s.notebooks[0].grades
                                        if g.name.startswith("test_")))
                  for s in gb.find_assignment(MINI).submissions}
    autograded = {name: stock / "autograded" / name / MINI / f"{MINI}.ipynb" for name in scores}
    texts = {name: path.read_text(encoding="utf-8") for name, path in autograded.items()}
    _check(attempt, scores, autograded, texts)
    assert _digest(stock / "submitted") == submitted
