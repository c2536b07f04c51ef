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
import zipfile
from html.parser import HTMLParser
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
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "grading"]
c.Execute.timeout = 30
c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]
'''

HIDDEN_MARK = "double must work for integer tensors"

# The mini assignment's probes and judges (see docs/instructors.md, "Writing probes and judges").
MINI_PROBES = """\
import torch

from autograde.probing import attempt, need


def inputs(seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(5, generator=generator), torch.randint(-50, 50, (4,), generator=generator)


def test_visible(namespace, seed):
    double = need(namespace, "double")
    floats, _ = inputs(seed)
    return {"floats": attempt("double(x)", double, floats)}


def test_hidden(namespace, seed):
    double = need(namespace, "double")
    floats, integers = inputs(seed)
    return {"floats": attempt("double(x)", double, floats), "integers": attempt("double(n)", double, integers),
            "empty": list(attempt("double(torch.zeros(1))", double, torch.zeros(1)).shape)}
"""
MINI_JUDGES = f"""\
import numpy as np

from autograde.judging import check


def test_visible(student, reference, seed):
    check(np.allclose(student.array("floats"), reference.array("floats")), "double(x) should be 2 * x")
    return "double doubles"


def test_hidden(student, reference, seed):
    check(student.items("empty") == [1], "double(torch.zeros(1)) should keep the shape (1,)")
    check(np.allclose(student.array("floats"), reference.array("floats")), "double(x) should be 2 * x")
    integers = student.array("integers")
    check(integers.dtype.kind == "i" and np.array_equal(integers, reference.array("integers")), "{HIDDEN_MARK}")
    return "double doubles floats and integers"
"""


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
            grade_id="test_hidden", grade=True, locked=True, points=2),  # (judged: its own lines never run)
        new_markdown_cell("Why is doubling linear?"),
        _md(new_markdown_cell("### BEGIN SOLUTION\nBecause 2(a+b) = 2a+2b.\n### END SOLUTION"),
            grade_id="written", grade=True, solution=True, points=1),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    return nb


EARLIER_SEED = 777  # the seed of an "earlier run", whose observations the forgeries replay


def captured_mini(course: Path, answers: dict[str, str]) -> tuple[dict, dict]:
    """What a forger could have kept from an earlier run of the mini course: the probes' observations of a correct
    answer under EARLIER_SEED, and a table of that run's inputs with the right results (see autograde_cheats)."""
    import torch

    from autograde.judging import Grading

    grading = Grading(course / "source" / MINI / "grading")
    namespace = {"torch": torch}
    exec(answers["double"], namespace)  # noqa: S102 - the course's own reference answer
    captured = {test: grading.observe_here(test, namespace, EARLIER_SEED) for test in ("test_visible", "test_hidden")}
    floats, integers = grading.probes.inputs(EARLIER_SEED)
    table = {repr([values.tolist()]): (2 * values).tolist() for values in (floats, integers)}
    return captured, table


def make_course(root: Path, protected: bool = False, judged: bool = True) -> Path:
    """A course folder with source/mini/mini.ipynb and release/mini/mini.ipynb (made by nbgrader). *protected*:
    its nbgrader_config.py adds the grading plugins, so that plain `nbgrader autograde` uses them too. *judged*:
    the assignment has probes and judges (source/mini/grading/); without, it is graded the stock way."""
    root.mkdir(parents=True, exist_ok=True)
    plugins = "from autograde.course import protect\nprotect(c)\n" if protected else ""
    (root / "nbgrader_config.py").write_text(_COURSE_CONFIG + plugins)
    (root / "source" / MINI).mkdir(parents=True, exist_ok=True)
    nbformat.write(mini_source(), root / "source" / MINI / f"{MINI}.ipynb")
    if judged:
        (root / "source" / MINI / "grading").mkdir()
        (root / "source" / MINI / "grading" / "probes.py").write_text(MINI_PROBES)
        (root / "source" / MINI / "grading" / "judges.py").write_text(MINI_JUDGES)
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


def gradescope_root(bundle: Path, root: Path, files: dict) -> Path:
    """*root* laid out as Gradescope lays out /autograder: the bundle unzipped into ROOT/source, run_autograder
    copied to ROOT, the upload in ROOT/submission (each of *files*: a notebook, bytes, or a Path to link to)."""
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(root / "source")
    for script in ("run_autograder", "setup.sh"):  # zipfile drops the modes; Gradescope keeps them
        (root / "source" / script).chmod(0o755)
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    (root / "submission").mkdir()
    for file_name, content in files.items():
        target = root / "submission" / file_name
        if isinstance(content, Path):
            target.symlink_to(content)
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            nbformat.write(content, target)
    return root


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    import csv

    with open(path, newline="", encoding="utf-8-sig") as f:  # (grades.csv begins with a byte-order mark)
        return {row["student_id"]: row for row in csv.DictReader(f)}


# -- A feedback page from a hostile notebook ------------------------------------------------------------------------

PWNED = "window.__pwned = 'ran'; document.title = 'pwned'"
# Each would run script, load something, navigate or submit, if it reached the page as it is.
HOSTILE_MARKDOWN = "\n\n".join([
    f"<script>{PWNED}</script>",
    f"<img src=x onerror=\"{PWNED}\">",
    f"<svg onload=\"{PWNED}\"><script>{PWNED}</script></svg>",
    f"[link](javascript:{PWNED.replace(' ', '')}) <a href=\"javascript:{PWNED}\">a</a>",
    f"<a href=\"data:text/html,<script>{PWNED}</script>\">data link</a>",
    f"<iframe srcdoc=\"<script>parent.__pwned = 'frame'</script>\"></iframe>",
    "<object data=\"data:text/html,x\"></object><embed src=\"data:text/html,x\">",
    "<meta http-equiv=\"refresh\" content=\"0; url=https://example.invalid/\">",
    "<base href=\"https://example.invalid/\">",
    "<form action=\"https://example.invalid/\"><input name=\"q\"><button>send</button></form>",
    f"<details open ontoggle=\"{PWNED}\">details</details>",
    "<img src=\"https://example.invalid/pixel.png\">",
])
LEGIT_MARKDOWN = ("# Residual blocks\n\nThe block computes $y = \\mathrm{ReLU}(F(x) + x)$, and\n\n"
                  "$$\\frac{a}{b} = \\lfloor 15.5 \\rfloor + 1$$\n\n| layer | size |\n|---|---|\n| conv | 16 |\n\n"
                  "```python\ndef f(x):\n\n    return x < 2\n```\n")
# A 1x1 PNG, as matplotlib's outputs are: an image with a data: URL.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
SVG = (f"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"20\" height=\"20\" onload=\"{PWNED}\">"
       f"<script>{PWNED}</script><circle cx=\"10\" cy=\"10\" r=\"8\" fill=\"red\"/></svg>")


def hostile_outputs() -> list:
    """What a student's code can display: HTML, JavaScript, SVG, markdown, widgets; and a plot."""
    from nbformat.v4 import new_output

    html = f"<b>table</b><script>{PWNED}</script><img src=x onerror=\"{PWNED}\">"
    return [
        new_output("display_data", data={"text/html": html, "text/plain": "table"}),
        new_output("display_data", data={"text/html": html}, metadata={"text/html": {"isolated": True}}),
        new_output("execute_result", data={"text/html": html, "text/plain": "x"}, execution_count=1),
        new_output("display_data", data={"application/javascript": PWNED, "text/plain": "js"}),
        new_output("display_data", data={"image/svg+xml": SVG}),
        new_output("display_data", data={"text/markdown": HOSTILE_MARKDOWN}),
        new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {
            "model_id": "1", "version_major": 2, "version_minor": 0}, "text/plain": "VBox()"}),
        new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"}),
        new_output("display_data", data={"text/latex": "$$x^2 + 1$$"}),
    ]


# The same, displayed by a student's code in the grading kernel.
HOSTILE_CODE = (
    "from IPython.display import HTML, SVG, Javascript, Markdown, display\n"
    f"display(HTML({'<b>table</b><script>' + PWNED + '</script>'!r}))\n"
    f"display(Javascript({PWNED!r}))\n"
    f"display(SVG({SVG!r}))\n"
    f"display(Markdown({HOSTILE_MARKDOWN!r}))\n"
)


def hostile_feedback_page(root: Path, config: Path = REPO / "nbgrader_config.py") -> Path:
    """Plain `nbgrader generate_feedback`, with the course's nbgrader_config.py, of a submission whose cells and
    outputs try everything in HOSTILE_MARKDOWN and hostile_outputs(); returns the feedback page."""
    from nbgrader.api import Gradebook

    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(config, root / "nbgrader_config.py")
    source = mini_source()
    source.cells.insert(0, new_markdown_cell(LEGIT_MARKDOWN + "\n\n" + HOSTILE_MARKDOWN))
    write(source, root / "source" / MINI / f"{MINI}.ipynb")
    nbgrader = [str(PYTHON), "-m", "nbgrader"]
    env = tool_env(PYTHONPATH=str(REPO))
    subprocess.run([*nbgrader, "generate_assignment", MINI, "--force"], cwd=root, env=env, check=True,
                   capture_output=True)
    release, answers = release_and_answers(root)
    submission = fill(release, {**answers, "written": HOSTILE_MARKDOWN})
    submission.cells[cell_index(submission, "double")].outputs = hostile_outputs()
    submission.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    write(submission, root / "autograded" / "alice" / MINI / f"{MINI}.ipynb")
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", "resnet-skip-connections") as gb:
        gb.add_student("alice")
        gb.add_submission(MINI, "alice")
    done = subprocess.run([*nbgrader, "generate_feedback", MINI], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return root / "feedback" / "alice" / MINI / f"{MINI}.html"


class Page(HTMLParser):
    """A page as a browser's parser reads it: its elements with their attributes, and its scripts' text."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.elements, self.scripts, self._script = [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag == "script":
            self._script = []

    def handle_data(self, data):
        if self._script is not None:
            self._script.append(data)

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.scripts.append("".join(self._script))
            self._script = None

    def policy(self) -> str:
        return next(attrs["content"] for tag, attrs in self.elements
                    if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy")


def what_could_run(page: Page) -> list:
    """Everything in *page* that could run script, load, navigate or submit, beside the page's own scripts."""
    found = []
    for tag, attrs in page.elements:
        found += [(tag, name) for name in attrs if name.startswith("on")]
        found += [(tag, name, value) for name, value in attrs.items() if name in ("href", "src", "action")
                  and value and (value.strip().lower().startswith(("javascript:", "http"))
                                 or (tag, name) == ("a", "href") and value.startswith("data:"))]
        if tag in ("iframe", "object", "embed", "form", "base", "input", "button", "svg", "math") or \
                tag == "meta" and "http-equiv" in attrs and attrs["http-equiv"] != "Content-Security-Policy":
            found.append(tag)
    return found


def formgrader_page(course: Path, student: str, monkeypatch) -> str:
    """Formgrader's page for *student*'s submission, rendered by the exporter that formgrader's own code builds from
    the nbgrader_config.py of *course*, as when Jupyter starts in that folder."""
    import types

    from nbgrader.server_extensions.formgrader.formgrader import FormgradeExtension

    monkeypatch.chdir(course)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(course / ".jupyter"))  # (not this machine's own settings)
    formgrader = FormgradeExtension()
    formgrader.root_dir = str(course)
    formgrader.initialize([])
    webapp = types.SimpleNamespace(settings={})
    formgrader.init_tornado_settings(webapp)
    notebook = course / "autograded" / student / MINI / f"{MINI}.ipynb"
    html, _ = webapp.settings["nbgrader_exporter"].from_filename(str(notebook), resources={  # as its handler does
        "assignment_id": MINI, "notebook_id": MINI, "submission_id": "1", "index": 0, "total": 1, "base_url": "",
        "student": student, "last_name": None, "first_name": None, "notebook_path": str(notebook)})
    return html


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
