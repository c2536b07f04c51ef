"""Helpers for the grading tool's tests: a tiny nbgrader course, and submissions built from a release.

The tiny course (``mini``) has what the real assignment has, small: a locked import cell, an answer
cell, a visible test, a test with hidden lines, and a written answer graded by hand. Its tests use
``torch.allclose``, ``torch.equal`` and ``torch.testing.assert_close``, the functions cheats patch.

Submissions are made the way students make them: start from the *release* notebook and fill in the
answer cells (matched by nbgrader ``grade_id``), optionally with a cheat in front.
"""
from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"
MINI = "mini"

_COURSE_CONFIG = '''\
from nbgrader.preprocessors import GetGrades
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from autograde.preprocessors import HideHiddenTests

c = get_config()
c.CourseDirectory.course_id = "fixture-course"
c.Execute.timeout = 30
c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]
'''

HIDDEN_MARK = "double must work for integer tensors"


def tool_env(**extra) -> dict[str, str]:
    """The environment for the grading tool and nbgrader: the venv's scripts first on PATH, plus *extra*."""
    return dict(os.environ, PATH=f"{PYTHON.parent}:{os.environ.get('PATH', '')}", **extra)


def run_cli(*args, cwd=REPO, timeout=600, env=None) -> subprocess.CompletedProcess:
    """`python -m autograde ARGS...`, its output captured as text; *env*: more environment variables."""
    return subprocess.run([str(PYTHON), "-m", "autograde", *map(str, args)], cwd=cwd, env=tool_env(**(env or {})),
                          capture_output=True, text=True, timeout=timeout)


def stock_nbgrader(root: Path, source: Path, assignment: str, course_id: str, *flags: str):
    """Stock nbgrader on a course folder: copy *source* (a source/ folder) in, `nbgrader generate_assignment`, then
    `nbgrader autograde` of what is under submitted/. Returns the course's Gradebook (to use in a `with`)."""
    from nbgrader.api import Gradebook

    shutil.copytree(source, root / "source")
    nbgrader = [str(PYTHON), "-m", "nbgrader"]
    subprocess.run([*nbgrader, "generate_assignment", assignment, *flags], cwd=root, env=tool_env(), check=True,
                   capture_output=True)
    subprocess.run([*nbgrader, "autograde", assignment, *flags], cwd=root, env=tool_env(), capture_output=True)
    return Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id)


def _md(cell, **nbgrader):
    cell.metadata["nbgrader"] = {"schema_version": 3, "grade": False, "solution": False, "locked": False, **nbgrader}
    return cell


def mini_source() -> nbformat.NotebookNode:
    cells = [
        _md(new_markdown_cell("# Mini assignment\nWrite `double`."), grade_id="intro", locked=True),
        _md(new_code_cell("import torch"), grade_id="imports", locked=True),
        _md(new_code_cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION"),
            grade_id="double", solution=True),
        _md(new_code_cell("assert torch.allclose(double(torch.ones(2)), torch.full((2,), 2.0)), "
                          "\"double(ones) should be twos\""),
            grade_id="test_visible", grade=True, locked=True, points=1),
        _md(new_code_cell(
            "assert double(torch.zeros(1)).shape == (1,)\n"
            "### BEGIN HIDDEN TESTS\n"
            f"assert torch.equal(double(torch.arange(3)), torch.tensor([0, 2, 4])), \"{HIDDEN_MARK}\"\n"
            "torch.testing.assert_close(double(torch.tensor([1.5, -2.0])), torch.tensor([3.0, -4.0]))\n"
            "### END HIDDEN TESTS"),
            grade_id="test_hidden", grade=True, locked=True, points=2),
        new_markdown_cell("Why is doubling linear?"),
        _md(new_markdown_cell("### BEGIN SOLUTION\nBecause 2(a+b) = 2a+2b.\n### END SOLUTION"),
            grade_id="written", grade=True, solution=True, points=1),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    return nb


def make_course(root: Path, protected: bool = False) -> Path:
    """A course folder with source/mini/mini.ipynb and release/mini/mini.ipynb (made by nbgrader). *protected*:
    its nbgrader_config.py adds the grading plugins, so that plain `nbgrader autograde` uses them too."""
    root.mkdir(parents=True, exist_ok=True)
    plugins = "from autograde.course import protect\nprotect(c)\n" if protected else ""
    (root / "nbgrader_config.py").write_text(_COURSE_CONFIG + plugins)
    (root / "source" / MINI).mkdir(parents=True, exist_ok=True)
    nbformat.write(mini_source(), root / "source" / MINI / f"{MINI}.ipynb")
    subprocess.run([str(PYTHON.parent / "nbgrader"), "generate_assignment", MINI, "--force", "--no-db"], check=True,
                   env=tool_env(PYTHONPATH=str(REPO)), cwd=root, capture_output=True)
    return root


_SOLUTION_MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)


def solution_text(source_cell) -> str:
    return _SOLUTION_MARKERS.sub("", source_cell.source)


def answers_from_source(source: nbformat.NotebookNode) -> dict[str, str]:
    """grade_id -> the reference answer, for every answer cell of the source notebook."""
    return {cell.metadata["nbgrader"]["grade_id"]: solution_text(cell) for cell in source.cells
            if cell.metadata.get("nbgrader", {}).get("solution")}


def release_and_answers(course: Path) -> tuple[nbformat.NotebookNode, dict[str, str]]:
    """The mini course's release notebook (what students get) and its reference answers by grade_id."""
    release = nbformat.read(course / "release" / MINI / f"{MINI}.ipynb", as_version=4)
    return release, answers_from_source(nbformat.read(course / "source" / MINI / f"{MINI}.ipynb", as_version=4))


def fill(release: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    """A copy of the release notebook with the given answer cells filled in (others left as stubs)."""
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return nb


def cell_index(nb, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def insert_after(nb, grade_id: str, source: str) -> nbformat.NotebookNode:
    """A copy with a plain (student) code cell inserted after the cell *grade_id*."""
    nb = copy.deepcopy(nb)
    nb.cells.insert(cell_index(nb, grade_id) + 1, new_code_cell(source))
    return nb


def write(nb, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def bracket_bombs(notebook: nbformat.NotebookNode | None = None) -> dict[str, bytes]:
    """Submitted files nested 200,000 deep (400 KB of brackets), in each place a notebook holds JSON: Python's
    JSON parser raises RecursionError on them. With *notebook*, also that notebook with a value 500 deep in its
    metadata: valid JSON that parses, yet deeper than nbformat can take."""
    deep_list, deep_object = b"[" * 200_000 + b"]" * 200_000, b'{"a": ' * 200_000 + b"{}" + b"}" * 200_000
    cell = b'{"cell_type": "code", "metadata": {}, "execution_count": 1, "source": %s, "outputs": [%s]}'
    output = b'{"output_type": "execute_result", "metadata": {}, "execution_count": 1, "data": {"application/json": %s}}'
    notebook_of = b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [%s]}'
    bombs = {"cells": b'{"cells": ' + deep_list + b"}",
             "metadata": b'{"cells": [], "metadata": ' + deep_object + b"}",
             "source": notebook_of % (cell % (deep_list, b"")),
             "outputs": notebook_of % (cell % (b'""', output % deep_object))}
    if notebook is not None:
        marked = copy.deepcopy(notebook)
        marked.metadata["deep"] = "DEEP"
        bombs["deep_metadata"] = nbformat.writes(marked).encode().replace(b'"DEEP"', b"[" * 500 + b"]" * 500)
    return bombs
