"""End-to-end tests of `python -m autograde grade` on a tiny course: one class, graded once, many cases.

The class holds correct, wrong, cheating and broken submissions in every layout and with odd names;
the tests read grades.csv and the feedback pages. The real assignment gets the same treatment in
test_autograde_release.py.
"""
import copy
import hashlib
import json
import os
import sys
import uuid
import zipfile
from pathlib import Path

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograde_cheats import (CODE_CHEATS, FORGERIES, NOTEBOOK_CHEATS, liar_answer, patch_inside, with_cheat,
                              with_forgery, with_replayed_inputs)
from autograde_fixtures import (HIDDEN_MARK, HOSTILE_CODE, HOSTILE_MARKDOWN, MINI, MINI_JUDGES, Page, bracket_bombs,
                                captured_mini, cell_index, fill, formgrader_page, insert_after, make_course,
                                read_csv, release_and_answers, run_cli, stock_nbgrader, what_could_run, write)

# Every test grades through the CLI (run_cli) or nbgrader, with kernels: `make test-fast` leaves the module out.
pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox uses Linux features"),
              pytest.mark.slow]

WRONG = "def double(x):\n    return 3 * x\n"
TESTS = ["test_visible", "test_hidden"]
ESCAPE_MARK = f"654.{os.getpid()}"  # what the notebooks' own processes run: `sleep ESCAPE_MARK`
RUN_MARK = "AUTOGRADE_TEST_RUN"


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return make_course(tmp_path_factory.mktemp("course"))


@pytest.fixture(scope="module")
def mini(course):
    return release_and_answers(course)


def _duplicated_answers(release, answers):
    """Copy-paste in JupyterLab: both copies carry the nbgrader metadata (and here the same cell id)."""
    nb = fill(release, {"double": "def double(x):\n    return x + x  # first try\n"})
    at = cell_index(nb, "double")
    final = copy.deepcopy(nb.cells[at])
    final.source = answers["double"]
    nb.cells.insert(at + 1, final)  # the final answer below the first attempt
    at = cell_index(nb, "written")
    worked = copy.deepcopy(nb.cells[at])
    worked.source = answers["written"]
    nb.cells.insert(at, worked)  # the answer typed in the pasted copy above the untouched stub
    nb.metadata.kernelspec = {"name": "conda-env-weird-py", "display_name": "Weird (conda)", "language": "python"}
    return nb


def build_class(folder: Path, course: Path, release, answers):
    """Every submission of the class, and what the grader must make of it: {id: (score, status)}."""
    correct = fill(release, answers)
    wrong = fill(release, {"double": WRONG})
    expected = {}

    def add(student_id, nb_or_bytes, score, status, relative=None):
        path = folder / (relative or f"{student_id}.ipynb")
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(nb_or_bytes, bytes):
            path.write_bytes(nb_or_bytes)
        else:  # as JupyterLab saves it, without nbformat's validation (which would fix duplicate cell ids)
            path.write_text(json.dumps(nb_or_bytes, indent=1), encoding="utf-8")
        expected[student_id] = (score, status)

    add("correct", correct, 3, "ok")
    add("frank", correct, 3, "ok", relative="frank/my work/whatever I called it.ipynb")
    add("Zo\u00eb \u00c5ngstr\u00f6m \u674e\u96f7", correct, 3, "ok")
    add("o'brien, \"quoted\" & <tag> =1+1", correct, 3, "ok")
    add("wrong", wrong, 0, "ok")
    add("unanswered", release, 0, "not attempted")
    add("duplicates_and_foreign_kernel", _duplicated_answers(release, answers), 3, "ok")
    # Cheats: a wrong answer with a cheat in front must still score zero.
    for name in CODE_CHEATS:
        answer = liar_answer(WRONG, "double") if name == "tensor_subclass_liar" else with_cheat(WRONG, name)
        add(f"cheat_{name}", fill(release, {"double": answer}), 0, None)
    add("cheat_patch_while_the_test_runs", fill(release, {"double": patch_inside(WRONG, "double")}), 0, None)
    # Forgeries: observations a correct answer gave in an earlier run (another seed), sent in the probe's format.
    captured, table = captured_mini(course, answers)
    for name in FORGERIES:
        add(f"forged_{name}", fill(release, {"double": with_forgery(WRONG, name, captured)}), 0, None)
    add("forged_answers_from_captured_inputs", fill(release, {"double": with_replayed_inputs(WRONG, "double", table)}),
        0, None)
    for name, edit in NOTEBOOK_CHEATS.items():
        add(f"cheat_{name}", edit(wrong, TESTS), 0, "cells restored")
    for name in ("delete_tests", "tests_to_markdown", "unlock_tests", "strip_test_metadata"):
        add(f"honest_{name}", NOTEBOOK_CHEATS[name](correct, TESTS), 3, "cells restored")
    # Broken files.
    add("empty", b"", 0, "empty file")
    add("pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\nbinary", 0, "not a notebook", relative="pdf.pdf")
    add("truncated", nbformat.writes(correct).encode()[:500], 0, "invalid notebook")
    other = new_notebook(cells=[new_markdown_cell("# Homework 2"), new_code_cell(
        "x = 1", metadata={"nbgrader": {"grade_id": "q1", "grade": False, "solution": True, "locked": False,
                                        "schema_version": 3}})])
    add("other_assignment", other, 0, "wrong assignment")
    (folder / "no_notebook").mkdir()
    (folder / "no_notebook" / "answer.py").write_text("def double(x): return 2 * x\n")
    expected["no_notebook"] = (0, "no notebook")
    # Notebooks that stop the kernel or exhaust a limit.
    add("os_exit", fill(release, {"double": "import os\nos._exit(0)\n"}), 0, "kernel died")
    add("ignores_interrupts", fill(release, {"double": (
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass\n")}), 0, "timed out")
    add("memory_one_process", fill(release, {"double": "hog = bytearray(1500 << 20)\n" + answers["double"]}),
        0, "memory limit")
    add("memory_many_processes", fill(release, {"double": (
        "import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n        b = bytearray(500 << 20)\n"
        "        for i in range(0, len(b), 4096):\n            b[i] = 1\n        time.sleep(600)\ntime.sleep(30)\n")}),
        0, "memory limit")
    add("fork_bomb", fill(release, {"double": (
        "import subprocess, time\nchildren = [subprocess.Popen(['sleep', '30']) for _ in range(100)]\n"
        "time.sleep(30)\n")}), 0, "too many processes")
    # Correct work that does odd things: it keeps its points, and the run stays clean.
    add("escapes", insert_after(correct, "double", (
        f"import os, subprocess\nsubprocess.Popen(['sleep', '{ESCAPE_MARK}'], start_new_session=True)\n"
        f"if os.fork() == 0:\n    os.setsid()\n    os.execvp('sleep', ['sleep', '{ESCAPE_MARK}'])\n")), 3, "ok")
    # The kernel cannot see its supervisor (another PID namespace): the kill misses, the correct answer counts.
    add("kills_its_supervisor", fill(release, {"double": (
        f"import os, subprocess\nsubprocess.Popen(['sleep', '{ESCAPE_MARK}'])\nos.kill(os.getppid(), 9)\n"
        + answers["double"])}), 3, "ok")
    add("flood", insert_after(correct, "double", "for _ in range(40):\n    print('spam ' * 100_000)\n"), 3, "ok")
    hostile = insert_after(correct, "double", HOSTILE_CODE)
    hostile.cells.insert(0, new_markdown_cell(HOSTILE_MARKDOWN))
    add("hostile_html", hostile, 3, "ok")
    # A value over the message cap (32 MB): the kernel is cut off, and no test after it counts.
    add("huge_value", insert_after(correct, "double", "'x' * 50_000_000"), 0, None)
    spy = fill(release, {"double": "import sys, traceback\ndef double(x):\n    traceback.print_stack(file=sys.stdout)\n    return 2 * x\n",
                         "written": answers["written"]})
    spy.cells.append(new_code_cell("print('\\n'.join(In))"))
    add("spy", spy, 3, "ok")
    return expected


@pytest.fixture(scope="module")
def graded(course, mini, tmp_path_factory):
    release, answers = mini
    folder = tmp_path_factory.mktemp("class")
    expected = build_class(folder, course, release, answers)
    before = _tree_digest(folder), _tree_digest(course)
    out = tmp_path_factory.mktemp("out")
    run_mark = uuid.uuid4().hex  # in the environment of the grader's own processes (never in a kernel's)
    done = run_cli("grade", folder, "--assignment", MINI, "--out", out, "--course", course, "--jobs", "2",
                   "--timeout", "5", "--memory", "1024", env={RUN_MARK: run_mark})
    return {"folder": folder, "out": out, "done": done, "expected": expected, "rows": read_csv(out / "grades.csv")
            if (out / "grades.csv").exists() else {}, "before": before, "course": course, "run_mark": run_mark}


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and ".autograde" not in path.parts and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_the_run_succeeds_with_one_row_per_submission(graded):
    done = graded["done"]
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(graded["rows"]) == set(graded["expected"])
    assert "status" in done.stdout and "score (of 4)" in done.stdout  # the summary table


def test_grades_csv_columns(graded):
    header = (graded["out"] / "grades.csv").read_text(encoding="utf-8-sig").splitlines()[0].split(",")
    assert header[:5] == ["student_id", "name", "score", "max_score", "status"]
    assert {"test_visible", "test_hidden", "written"} <= set(header)
    assert header[-6:] == ["needs_manual_grade", "under_review", "late_penalty", "submitted_at", "notes", "submission"]


@pytest.mark.parametrize("student", [
    "correct", "frank", "Zo\u00eb \u00c5ngstr\u00f6m \u674e\u96f7", "o'brien, \"quoted\" & <tag> =1+1", "wrong",
    "unanswered", "duplicates_and_foreign_kernel", "cheat_patch_while_the_test_runs",
    *[f"cheat_{name}" for name in CODE_CHEATS], *[f"cheat_{name}" for name in NOTEBOOK_CHEATS],
    *[f"forged_{name}" for name in FORGERIES], "forged_answers_from_captured_inputs",
    "honest_delete_tests", "honest_tests_to_markdown", "honest_unlock_tests", "honest_strip_test_metadata",
    "empty", "pdf", "truncated", "other_assignment", "no_notebook", "os_exit", "ignores_interrupts",
    "memory_one_process", "memory_many_processes", "fork_bomb", "escapes", "kills_its_supervisor", "flood", "spy",
    "huge_value"])
def test_score_and_status(graded, student):
    score, status = graded["expected"][student]
    row = graded["rows"][student]
    autograded = float(row["test_visible"] or 0) + float(row["test_hidden"] or 0)
    assert autograded == score, row
    assert row["max_score"] == "4"
    if status is not None:
        assert row["status"] == status, row
    if score == 3:  # the written answer waits for a human, unless it was left unanswered
        assert row["written"] == "" and row["needs_manual_grade"] == "1" or row["written"] == "0", row


def test_forgeries_fail_with_the_judges_messages(graded):
    """What a forgery sends was right for another seed: the judge says what is wrong with it, as for any answer."""
    page = (graded["out"] / "feedback" / "forged_replay_in_place_of_the_probes.html").read_text(encoding="utf-8")
    assert "double(x) should be 2 * x" in page


def test_every_student_gets_feedback_without_hidden_tests(graded):
    feedback = graded["out"] / "feedback"
    pages = {p.name for p in feedback.iterdir()}
    assert pages == {f"{student}.html" for student in graded["expected"]}
    hidden_code = ["BEGIN HIDDEN TESTS", "torch.equal(double(torch.arange(3))",
                   "assert_close(double(torch.tensor([1.5, -2.0]))"]
    for page in feedback.iterdir():
        text = page.read_text(encoding="utf-8")
        assert not [code for code in hidden_code if code in text], page.name
        if page.name in ("correct.html", "spy.html"):  # (a failing test shows its judge's message, by design)
            assert HIDDEN_MARK not in text
    spy = (feedback / "spy.html").read_text(encoding="utf-8")
    judged = [line.strip() for line in MINI_JUDGES.splitlines() if len(line.strip()) > 20]
    assert not [line for line in judged if line in spy]  # the judges never were in the kernel: nothing to print


def test_feedback_explains_what_could_not_be_graded(graded):
    page = (graded["out"] / "feedback" / "pdf.html").read_text(encoding="utf-8")
    assert "not a notebook" in page and "0 / 4" in page


def test_output_floods_are_capped(graded):
    page = graded["out"] / "feedback" / "flood.html"
    assert page.stat().st_size < 2_000_000
    assert "output truncated by the grader" in page.read_text(encoding="utf-8")


def test_feedback_and_formgrader_show_student_html_cleaned(graded, monkeypatch):
    """The course's own configuration lacks CleanHTML: the tool adds it, to feedback and to the class course."""
    text = (graded["out"] / "feedback" / "hostile_html.html").read_text(encoding="utf-8")
    page = Page(text)
    assert what_could_run(page) == [] and "default-src 'none'" in page.policy()
    assert "<b>table</b>" in text and "__pwned" not in "".join(page.scripts)
    course = graded["out"] / "nbgrader"
    honest = what_could_run(Page(formgrader_page(course, "correct", monkeypatch)))
    hostile = formgrader_page(course, "hostile_html", monkeypatch)
    assert sorted(map(str, what_could_run(Page(hostile)))) == sorted(map(str, honest))
    assert "__pwned" not in "".join(Page(hostile).scripts) and "<b>table</b>" in hostile


def test_a_value_over_the_message_cap_stops_the_notebook(graded):
    row = graded["rows"]["huge_value"]
    assert row["status"] != "ok" and row["test_visible"] == row["test_hidden"] == "0", row
    autograded = graded["out"] / "nbgrader" / "autograded" / "huge_value" / MINI / f"{MINI}.ipynb"
    assert autograded.stat().st_size < 1_000_000


def _of_the_run(process: psutil.Process, mark: str) -> bool:
    """Whether *process* is one the run started: the grader's own (they carry its mark in their environment),
    what a notebook started (named by its command line: a kernel gets none of the grader's environment), or a
    warm kernel server, or a kernel forked from it, whose run's folder is gone."""
    try:
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        command = process.cmdline()
        if command[:2] == ["sleep", ESCAPE_MARK]:
            return True
        if "autograde.sandbox.zygote" in command:
            server_socket = command[command.index("autograde.sandbox.zygote") + 1]
            return not os.path.exists(os.path.dirname(server_socket))
        return process.environ().get(RUN_MARK) == mark
    except (psutil.Error, IndexError):
        return False  # gone meanwhile, or not ours to read


def test_no_process_outlives_its_grading(graded):
    """Not the daemons the notebooks started (double forks, setsid), not the warm server, not a supervisor."""
    assert graded["done"].returncode == 0
    assert [p.pid for p in psutil.process_iter() if _of_the_run(p, graded["run_mark"])] == []


SECRET = "AUTOGRADE_TEST_TOKEN"
SHOW_ENVIRONMENT = ("import json, os\n"
                    "print('ENVIRON', json.dumps(dict(os.environ)))\n"
                    "print('PROC', open('/proc/self/environ').read().replace('\\0', ' '))\n")


@pytest.mark.parametrize("kernel", ["cold", "warm"])
def test_a_kernel_gets_none_of_the_graders_environment(course, mini, tmp_path, kernel):
    release, answers = mini
    token = uuid.uuid4().hex
    write(insert_after(fill(release, answers), "double", SHOW_ENVIRONMENT), tmp_path / "class" / "spy.ipynb")
    out = tmp_path / "out"
    done = run_cli("grade", tmp_path / "class", "--assignment", MINI, "--out", out, "--course", course, "--kernel",
                   kernel, env={SECRET: f"secret-{token}", "PWD": f"/home/{token}/course", "OLDPWD": f"/home/{token}"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_csv(out / "grades.csv")["spy"]["score"] == "3"
    autograded = nbformat.read(out / "nbgrader" / "autograded" / "spy" / MINI / f"{MINI}.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for cell in autograded.cells for o in cell.get("outputs", []))
    environ = json.loads(printed.split("ENVIRON ", 1)[1].splitlines()[0])
    assert "PROC " in printed and token not in printed  # not in os.environ, nor what the process started with
    assert not {SECRET, "PWD", "OLDPWD"} & set(environ), sorted(environ)
    assert environ["HOME"] == environ["TMPDIR"] == "/tmp"
    assert environ["NBGRADER_EXECUTION"] == "autograde"  # what nbgrader tells notebooks still reaches them
    assert set(environ["PATH"].split(":")) <= {str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"}
    assert token not in (out / "feedback" / "spy.html").read_text(encoding="utf-8")


def test_inputs_are_not_modified(graded):
    assert (_tree_digest(graded["folder"]), _tree_digest(graded["course"])) == graded["before"]


def test_a_rerun_reuses_the_results(graded):
    done = run_cli("grade", graded["folder"], "--assignment", MINI, "--out", graded["out"], "--course",
                   graded["course"], "--jobs", "2", "--timeout", "5", "--memory", "1024")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(graded['expected'])} reused" in done.stdout
    assert read_csv(graded["out"] / "grades.csv") == graded["rows"]


def test_force_grades_again_and_unknown_students_lose_stale_feedback(course, mini, tmp_path):
    release, answers = mini
    folder = tmp_path / "class"
    write(fill(release, answers), folder / "ann.ipynb")
    out = tmp_path / "out"
    (out / "feedback").mkdir(parents=True)
    (out / "feedback" / "left-the-course.html").write_text("old")
    assert run_cli("grade", folder, "--assignment", MINI, "--out", out, "--course", course).returncode == 0
    assert not (out / "feedback" / "left-the-course.html").exists()
    done = run_cli("grade", folder, "--assignment", MINI, "--out", out, "--course", course, "--force")
    assert done.returncode == 0 and "reused" not in done.stdout
    assert read_csv(out / "grades.csv")["ann"]["score"] == "3"


def test_a_zip_export_with_hostile_names(course, mini, tmp_path):
    release, answers = mini
    good = nbformat.writes(fill(release, answers))
    inner = tmp_path / "inner.zip"
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("work/mini.ipynb", good)
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Course 101 - submissions/alice.ipynb", good)
        zf.writestr("Course 101 - submissions/bob/attempt 3/mini.ipynb", good)
        zf.writestr("Course 101 - submissions/../../../escaped.ipynb", good)
        zf.writestr("Course 101 - submissions/__MACOSX/._alice.ipynb", "junk")
        zf.write(inner, "Course 101 - submissions/carol.zip")
    out = tmp_path / "run" / "out"
    done = run_cli("grade", archive, "--assignment", MINI, "--out", out, "--course", course)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = read_csv(out / "grades.csv")
    assert {k: v["score"] for k, v in rows.items()} == {"alice": "3", "bob": "3", "carol": "3", "escaped": "3"}
    assert not any(p.name == "escaped.ipynb" for p in tmp_path.rglob("*") if ".autograde" not in p.parts)


def test_nbgrader_submitted_layout(course, mini, tmp_path):
    release, answers = mini
    for student in ("s1", "s2"):
        write(fill(release, answers if student == "s1" else {}), tmp_path / "submitted" / student / MINI / f"{MINI}.ipynb")
    done = run_cli("grade", tmp_path, "--assignment", MINI, "--out", tmp_path / "out", "--course", course,
                   "--kernel", "cold")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = read_csv(tmp_path / "out" / "grades.csv")
    assert (rows["s1"]["score"], rows["s2"]["score"]) == ("3", "0")


@pytest.mark.parametrize("args, code", [
    (["grade", "{folder}", "--assignment", "no_such_assignment", "--out", "{out}", "--course", "{course}"], 1),
    (["grade", "{folder}/missing", "--assignment", MINI, "--out", "{out}", "--course", "{course}"], 1),
    (["grade", "{folder}", "--out", "{out}"], 2),
    (["grade", "{folder}", "--assignment", MINI, "--out", "{out}", "--jobs", "0"], 2),
])
def test_exit_codes_when_the_tool_cannot_run(course, tmp_path, args, code):
    (tmp_path / "class").mkdir()
    values = {"folder": tmp_path / "class", "out": tmp_path / "out", "course": course}
    done = run_cli(*[a.format(**values) for a in args])
    assert done.returncode == code, done.stderr


def test_files_nested_too_deeply_get_their_row_and_the_class_is_graded(course, mini, tmp_path):
    """Notebooks of brackets nested 200,000 deep (a RecursionError for Python's JSON parser), and a student's zip
    whose data cannot be decompressed: each of those students gets a row that says why, everyone else is graded."""
    release, answers = mini
    folder = tmp_path / "class"
    write(fill(release, answers), folder / "ann.ipynb")
    bombs = bracket_bombs(fill(release, answers))
    for name, data in bombs.items():
        (folder / f"bomb_{name}.ipynb").write_bytes(data)
    with zipfile.ZipFile(folder / "carol.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("work/mini.ipynb", nbformat.writes(fill(release, answers)))
    data = bytearray((folder / "carol.zip").read_bytes())
    data[60:90] = bytes(b ^ 0x5A for b in data[60:90])  # inside the entry's compressed data
    (folder / "carol.zip").write_bytes(data)
    done = run_cli("grade", folder, "--assignment", MINI, "--out", tmp_path / "out", "--course", course,
                   "--similarity")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_csv(tmp_path / "out" / "grades.csv")
    assert set(rows) == {"ann", "carol"} | {f"bomb_{name}" for name in bombs}
    assert rows["ann"]["score"] == "3" and rows["carol"]["status"] != "grader error"
    for name in bombs:
        assert (rows[f"bomb_{name}"]["status"], rows[f"bomb_{name}"]["score"]) == ("invalid notebook", "0"), name
        assert "nested" in rows[f"bomb_{name}"]["notes"]


def test_an_empty_class_is_not_an_error(course, tmp_path):
    (tmp_path / "class").mkdir()
    done = run_cli("grade", tmp_path / "class", "--assignment", MINI, "--out", tmp_path / "out", "--course", course)
    assert done.returncode == 0
    assert (tmp_path / "out" / "grades.csv").read_text(encoding="utf-8").startswith(
        "\ufeffstudent_id,name,score,max_score,status")  # with the byte-order mark Excel needs


STOCK_FOOLED = ["patch_comparisons", "input_transformer_try_except", "session_send_hides_errors",
                "run_cell_swallows_errors"]


def test_the_cheats_fool_stock_nbgrader_but_not_this_tool(course, mini, graded, tmp_path):
    """The cheat suite is real: stock `nbgrader autograde` gives these wrong solutions points."""
    import shutil

    release, _ = mini
    stock = tmp_path / "stock"
    stock.mkdir()
    shutil.copy(course / "nbgrader_config.py", stock)
    for name in STOCK_FOOLED:
        write(fill(release, {"double": with_cheat(WRONG, name)}), stock / "submitted" / name / MINI / f"{MINI}.ipynb")
    with stock_nbgrader(stock, course / "source", MINI, "fixture-course") as gb:
        stock_scores = {s.student.id: s.score for s in gb.find_assignment(MINI).submissions}
    assert all(stock_scores[name] > 0 for name in STOCK_FOOLED), stock_scores
    assert all(graded["rows"][f"cheat_{name}"]["score"] == "0" for name in STOCK_FOOLED)


def _plain_nbgrader(tmp_path, course, students: dict, *flags) -> dict:
    """Plain `nbgrader autograde` with the course's plugins (its nbgrader_config.py protected): {student: points}."""
    stock = tmp_path / "plain"
    stock.mkdir()
    (stock / "nbgrader_config.py").write_text((course / "nbgrader_config.py").read_text()
                                             + "from autograde.course import protect\nprotect(c)\n")
    for name, nb in students.items():
        write(nb, stock / "submitted" / name / MINI / f"{MINI}.ipynb")
    with stock_nbgrader(stock, course / "source", MINI, "fixture-course", *flags) as gb:
        return {s.student.id: sum(g.auto_score or 0 for g in s.notebooks[0].grades if g.name.startswith("test_"))
                for s in gb.find_assignment(MINI).submissions}


def test_cheats_and_forgeries_earn_nothing_through_plain_nbgrader(course, mini, tmp_path):
    release, answers = mini
    captured, table = captured_mini(course, answers)
    students = {f"cheat_{name}": fill(release, {"double": with_cheat(WRONG, name)}) for name in CODE_CHEATS
                if name != "tensor_subclass_liar"}
    students.update({f"forged_{name}": fill(release, {"double": with_forgery(WRONG, name, captured)})
                     for name in FORGERIES})
    students["forged_inputs"] = fill(release, {"double": with_replayed_inputs(WRONG, "double", table)})
    students["correct"] = fill(release, answers)
    scores = _plain_nbgrader(tmp_path, course, students)
    assert scores.pop("correct") == 3
    assert scores == dict.fromkeys(scores, 0)


def test_the_forgeries_are_real_attacks_with_the_seed_they_captured(course, mini, tmp_path):
    """Run with the seed of the captured observations (only plain nbgrader's configuration can pin it), the replayed
    observations pass: it is the new seed of every real run that defeats them."""
    release, answers = mini
    captured, table = captured_mini(course, answers)
    students = {"replayed": fill(release, {"double": with_forgery(WRONG, "replay_in_place_of_the_probes", captured)}),
                "inputs": fill(release, {"double": with_replayed_inputs(WRONG, "double", table)})}
    from autograde_fixtures import EARLIER_SEED
    assert _plain_nbgrader(tmp_path, course, students, f"--JudgedExecute.seed={EARLIER_SEED}") == {
        "replayed": 3, "inputs": 3}


def test_without_bubblewrap_the_tool_refuses_and_names_the_fix(course, mini, tmp_path):
    import subprocess

    from autograde_fixtures import PYTHON, tool_env

    release, answers = mini
    write(fill(release, answers), tmp_path / "class" / "ann.ipynb")
    env = tool_env()
    env["PATH"] = str(PYTHON.parent)  # the environment's programs, but no bwrap
    done = subprocess.run([str(PYTHON), "-m", "autograde", "grade", tmp_path / "class", "--assignment", MINI,
                           "--out", tmp_path / "out", "--course", course], env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert "apt-get install bubblewrap" in done.stderr and "--isolation none" in done.stderr
    assert not (tmp_path / "out" / "grades.csv").exists()


def test_isolation_none_is_stated_in_the_summary_and_every_row(course, mini, tmp_path):
    release, answers = mini
    write(fill(release, answers), tmp_path / "class" / "ann.ipynb")
    (tmp_path / "class" / "empty.ipynb").write_bytes(b"")
    done = run_cli("grade", tmp_path / "class", "--assignment", MINI, "--out", tmp_path / "out", "--course", course,
                   "--isolation", "none")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--isolation none" in done.stdout
    rows = read_csv(tmp_path / "out" / "grades.csv")
    assert rows["ann"]["score"] == "3" and rows["empty"]["status"] == "empty file"
    assert all("--isolation none" in row["notes"] for row in rows.values())
