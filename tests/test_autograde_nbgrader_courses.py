"""The course's plugins in nbgrader courses shaped unlike this one: assignments of several notebooks, a notebook
whose only graded cell is a task, a course without its release folder, a release made again after students
fetched it. Each through plain `nbgrader autograde` with the plugins, and where the grading tool grades such an
assignment, through `python -m autograde grade` too. (nbgrader's own tests with the plugins: make nbgrader-compat.)
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from nbgrader.api import Gradebook

from autograde_fixtures import (MINI, MINI_JUDGES, MINI_PROBES, PYTHON, _md, answers_from_source, cell_index, fill,
                                mini_source, read_csv, run_cli, tool_env, write)

pytestmark = pytest.mark.slow  # every test grades through nbgrader or the CLI, with kernels
COURSE_ID = "fixture-course"
PLUGINS = f'''\
c = get_config()
c.CourseDirectory.course_id = "{COURSE_ID}"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "grading"]
c.Execute.timeout = 60
from autograde.course import protect
protect(c)
'''


def _reading() -> nbformat.NotebookNode:
    """A notebook to read: a locked introduction and code to run, nothing to grade."""
    return new_notebook(cells=[_md(new_markdown_cell("# Background\nRead this first."), grade_id="reading_intro",
                                   locked=True), new_code_cell("print('a demonstration')")])


def _task_only() -> nbformat.NotebookNode:
    """A notebook whose one graded cell is a task, graded by hand."""
    return new_notebook(cells=[new_code_cell("x = 1"), _md(new_markdown_cell("Plot x and describe it."),
                                                            grade_id="task_plot", locked=True, task=True, points=3)])


def _nbgrader(course: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(PYTHON), "-m", "nbgrader", *args], cwd=course, env=tool_env(), capture_output=True,
                          text=True)
    assert not check or done.returncode == 0, done.stdout + done.stderr
    return done


def _course(root: Path, notebooks: dict[str, nbformat.NotebookNode], judged: bool = False) -> Path:
    """A course with one assignment (its name: the first notebook's) made of *notebooks*, released with a
    gradebook, as `nbgrader generate_assignment` makes it."""
    assignment = next(iter(notebooks))
    root.mkdir(parents=True)
    (root / "nbgrader_config.py").write_text(PLUGINS)
    for name, nb in notebooks.items():
        write(nb, root / "source" / assignment / f"{name}.ipynb")
    if judged:
        (root / "source" / assignment / "grading").mkdir()
        (root / "source" / assignment / "grading" / "probes.py").write_text(MINI_PROBES)
        (root / "source" / assignment / "grading" / "judges.py").write_text(MINI_JUDGES)
    _nbgrader(root, "generate_assignment", assignment, "--force")
    return root


def _released(course: Path, assignment: str, name: str) -> nbformat.NotebookNode:
    return nbformat.read(course / "release" / assignment / f"{name}.ipynb", as_version=4)


def _grades(course: Path, assignment: str, student: str) -> dict[str, dict]:
    """notebook -> {grade_id: (auto_score, needs_manual_grade)}, plus "max" -> the notebook's max score."""
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gb:
        submission = gb.find_submission(assignment, student)
        return {nb.name: {"max": nb.max_score, **{g.name: (g.auto_score, bool(g.needs_manual_grade))
                                                  for g in nb.grades}} for nb in submission.notebooks}


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    """The mini assignment as notebook "mini" beside a reading notebook, judged, with one student's work."""
    course = _course(tmp_path_factory.mktemp("multi") / "course", {MINI: mini_source(), "reading": _reading()},
                     judged=True)
    answers = answers_from_source(mini_source())
    submitted = course / "submitted" / "alice" / MINI
    write(fill(_released(course, MINI, MINI), {"double": answers["double"]}), submitted / f"{MINI}.ipynb")
    write(_released(course, MINI, "reading"), submitted / "reading.ipynb")
    return course


def test_a_graded_and_a_reading_notebook_grade_through_plain_nbgrader(multi):
    done = _nbgrader(multi, "autograde", MINI, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    grades = _grades(multi, MINI, "alice")
    assert grades["mini"]["test_visible"] == (1.0, False) and grades["mini"]["test_hidden"] == (2.0, False)
    assert grades["mini"]["written"][1] is False  # untouched: "no response", nothing to grade by hand
    assert grades["reading"] == {"max": 0}
    reading = nbformat.read(multi / "autograded" / "alice" / MINI / "reading.ipynb", as_version=4)
    assert reading.cells[1].outputs[0]["text"] == "a demonstration\n"  # run as nbgrader runs it
    assert "autograde" not in reading.metadata or not reading.metadata["autograde"]["statuses"]
    _nbgrader(multi, "generate_feedback", MINI)
    assert {path.name for path in (multi / "feedback" / "alice" / MINI).glob("*.html")} == {"mini.html", "reading.html"}


def test_a_graded_and_a_reading_notebook_grade_through_the_tool(multi, tmp_path):
    class_folder = tmp_path / "class"
    shutil.copytree(multi / "submitted", class_folder)
    done = run_cli("grade", class_folder, "--assignment", MINI, "--course", multi, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    row = read_csv(tmp_path / "out" / "grades.csv")["alice"]
    assert (row["status"], row["score"], row["max_score"]) == ("ok", "3", "4")
    assert (row["test_visible"], row["test_hidden"]) == ("1", "2")


def test_a_notebook_with_only_a_task_grades_through_both(tmp_path):
    course = _course(tmp_path / "course", {"task": _task_only()})
    submitted = course / "submitted" / "bob" / "task"
    write(_released(course, "task", "task"), submitted / "task.ipynb")
    _nbgrader(course, "autograde", "task")
    assert _grades(course, "task", "bob")["task"] == {"max": 3, "task_plot": (None, True)}
    done = run_cli("grade", course / "submitted", "--assignment", "task", "--course", course, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    row = read_csv(tmp_path / "out" / "grades.csv")["bob"]
    assert (row["status"], row["max_score"], row["task_plot"], row["needs_manual_grade"]) == ("ok", "3", "", "1")


def test_the_tool_names_what_it_cannot_grade_one_notebook_of(tmp_path):
    course = _course(tmp_path / "course", {"two": _task_only(), "other": _task_only()})
    done = run_cli("grade", tmp_path, "--assignment", "two", "--course", course, "--out", tmp_path / "out")
    assert done.returncode != 0 and "several notebooks with cells to grade (other.ipynb, two.ipynb)" in done.stderr
    assert "nbgrader autograde" in done.stderr


def test_without_the_release_folder_cells_come_back_from_the_gradebook(tmp_path):
    course = _course(tmp_path / "course", {MINI: mini_source()}, judged=True)
    release = _released(course, MINI, MINI)
    answers = answers_from_source(mini_source())
    work = fill(release, {"double": answers["double"]})
    del work.cells[cell_index(work, "test_visible")]  # deleted by the student
    write(work, course / "submitted" / "carol" / MINI / f"{MINI}.ipynb")
    shutil.rmtree(course / "release")
    _nbgrader(course, "autograde", MINI)
    assert _grades(course, MINI, "carol")[MINI]["test_visible"] == (1.0, False)
    graded = nbformat.read(course / "autograded" / "carol" / MINI / f"{MINI}.ipynb", as_version=4)
    assert graded.cells[-1].metadata.nbgrader.grade_id == "test_visible"  # at the end: the gradebook keeps no order
    assert "deleted cell restored: test_visible" in graded.metadata["autograde"]["restored"]


def test_grading_the_same_file_twice_gives_the_same_notebook(tmp_path):
    course = _course(tmp_path / "course", {MINI: mini_source()}, judged=True)
    work = fill(_released(course, MINI, MINI), answers_from_source(mini_source()))
    work.nbformat_minor = 4  # as older editors save it: cells without ids, which the plugins give them
    for cell in work.cells:
        del cell["id"]
    write(work, course / "submitted" / "dan" / MINI / f"{MINI}.ipynb")
    graded = course / "autograded" / "dan" / MINI / f"{MINI}.ipynb"
    _nbgrader(course, "autograde", MINI)
    first = [cell["id"] for cell in nbformat.read(graded, as_version=4).cells]
    _nbgrader(course, "autograde", MINI, "--force")
    assert [cell["id"] for cell in nbformat.read(graded, as_version=4).cells] == first
    assert len(set(first)) == len(first)


def _regenerated_release_grades(root: Path, plugins: bool) -> dict:
    """A student works from the first release; the instructor then edits the introduction and a test's points
    and releases again; the student's untouched written answer is graded against the second release."""
    course = _course(root, {MINI: mini_source()}, judged=plugins)
    if not plugins:
        (course / "nbgrader_config.py").write_text(PLUGINS.split("from autograde")[0])
    fetched = fill(_released(course, MINI, MINI), {"double": answers_from_source(mini_source())["double"]})
    source = mini_source()
    source.cells[0].source = "# Mini assignment (second edition)\nWrite `double`."
    source.cells[cell_index(source, "test_visible")].metadata.nbgrader["points"] = 2
    write(source, course / "source" / MINI / f"{MINI}.ipynb")
    _nbgrader(course, "generate_assignment", MINI, "--force")
    write(fetched, course / "submitted" / "erin" / MINI / f"{MINI}.ipynb")
    _nbgrader(course, "autograde", MINI)
    return _grades(course, MINI, "erin")[MINI]


def test_an_untouched_answer_after_the_release_was_made_again_is_no_response_as_in_nbgrader(tmp_path):
    stock = _regenerated_release_grades(tmp_path / "stock", plugins=False)
    protected = _regenerated_release_grades(tmp_path / "protected", plugins=True)
    assert stock["written"] == protected["written"] == (0.0, False)
    assert stock["test_visible"] == protected["test_visible"] == (2.0, False)
