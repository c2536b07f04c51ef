import base64
import hashlib
import html
import re
import shutil
import subprocess
from collections import Counter

import nbformat
import pytest
from nbconvert.exporters import HTMLExporter
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from nbgrader.converters import GenerateFeedback
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import GetGrades

from autograde.course import load_course_config
from autograde.feedback import AwaitingHandGrading, NameGradedCells, graded_cell_names
from autograde.preprocessors import HideHiddenTests
from autograde.sanitize import CleanHTML, as_html_block
from autograde_fixtures import (MINI, PNG, PYTHON, REPO, SVG, Page, answers_from_source, fill, formgrader_page,
                                hostile_feedback_page, release_and_answers, tool_env, what_could_run, write)

RESOURCES = {"nbgrader": {"score": 0, "max_score": 1, "late_penalty": 0, "notebook": "mini"}}

HIDDEN_CELL = """assert add(1, 1) == 2, "add(1, 1) must be 2"
### BEGIN HIDDEN TESTS
assert add(-5, 2) == -3, "add must handle negative numbers"
### END HIDDEN TESTS"""


def grade_cell(source, outputs):
    cell = new_code_cell(source, outputs=outputs)
    cell.metadata.nbgrader = {"grade": True, "grade_id": "test_add", "points": 1, "solution": False,
                              "locked": True, "schema_version": 3}
    return cell


def test_hidden_code_and_traceback_lines_disappear_but_the_message_stays():
    error = new_output("error", ename="AssertionError", evalue="add must handle negative numbers",
                       traceback=["Traceback", "----> 3 assert add(-5, 2) == -3, ...", "AssertionError: add must"])
    nb = new_notebook(cells=[grade_cell(HIDDEN_CELL, [error])])
    nb, _ = HideHiddenTests().preprocess(nb, {})
    cell = nb.cells[0]
    assert "add(-5, 2)" not in cell.source and "add(1, 1)" in cell.source
    (output,) = cell.outputs
    assert output.traceback == ["AssertionError: add must handle negative numbers"]
    assert "add(-5, 2)" not in nbformat.writes(nb)


def test_cells_without_hidden_tests_keep_their_traceback():
    error = new_output("error", ename="NameError", evalue="name 'add' is not defined",
                       traceback=["Traceback", "----> 1 add(1, 1)", "NameError: ..."])
    nb = new_notebook(cells=[grade_cell("assert add(1, 1) == 2", [error])])
    nb, _ = HideHiddenTests().preprocess(nb, {})
    assert len(nb.cells[0].outputs[0].traceback) == 3


# -- Student HTML and markdown cannot run code (CleanHTML, FeedbackExporter's policy) ----------------------------

def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@pytest.fixture(scope="module")
def hostile_page(tmp_path_factory):
    path = hostile_feedback_page(tmp_path_factory.mktemp("course"))
    return path, path.read_text(encoding="utf-8")


@pytest.mark.slow
def test_formgrader_shows_the_hostile_notebook_cleaned(hostile_page, monkeypatch):
    """Formgrader's own page has scripts and a form; the submission adds none, nor anything else that runs."""
    course = hostile_page[0].parents[3]
    release, answers = release_and_answers(course)
    write(fill(release, answers), course / "autograded" / "bob" / MINI / f"{MINI}.ipynb")
    honest = Counter(what_could_run(Page(formgrader_page(course, "bob", monkeypatch))))
    hostile = formgrader_page(course, "alice", monkeypatch)
    assert Counter(what_could_run(Page(hostile))) == honest
    assert "__pwned" not in "".join(Page(hostile).scripts) and "<b>table</b>" in hostile


@pytest.mark.slow
def test_plain_generate_feedback_with_the_course_config_cleans_a_hostile_notebook(hostile_page):
    page = Page(hostile_page[1])
    assert what_could_run(page) == []
    assert "window.__pwned" not in "".join(page.scripts)
    assert not any(tag == "script" and "src" in attrs for tag, attrs in page.elements)


@pytest.mark.slow
def test_a_hostile_notebook_keeps_what_a_notebook_needs(hostile_page):
    text = hostile_page[1]
    page = Page(text)
    assert ("h1", {"id": "Residual-blocks"}) in page.elements  # the heading, with its anchor
    assert "$y = \\mathrm{ReLU}(F(x) + x)$" in text and "$$x^2 + 1$$" in text  # math, for MathJax
    assert "<table>" in text and '<div class="highlight"><pre><span></span><span class="k">def</span>' in text
    images = [attrs.get("src") for tag, attrs in page.elements if tag == "img"]
    assert f"data:image/png;base64,{PNG}" in images
    assert f"data:image/svg+xml;base64,{base64.b64encode(SVG.encode()).decode()}" in images  # never run
    assert text.count("<b>table</b>") == 3


@pytest.mark.slow
def test_the_page_allows_only_its_own_scripts_and_loads_nothing(hostile_page):
    page = Page(hostile_page[1])
    policy = page.policy()
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'none'" and directives["base-uri"] == "'none'"
    assert directives["form-action"] == "'none'" and directives["img-src"] == "data:"
    assert sorted(directives["script-src"].split()) == sorted(sha256(script) for script in page.scripts)
    first_script = next(i for i, (tag, _) in enumerate(page.elements) if tag == "script")
    assert page.elements.index(("meta", {"http-equiv": "Content-Security-Policy", "content": policy})) < first_script
    assert "cdnjs" not in hostile_page[1] and "MathJax.Hub" in "".join(page.scripts)


def test_cleaning_comes_after_the_redaction_of_hidden_lines():
    """A hidden line redacted from HTML cleaned before could leave an attribute open and turn the student's text
    into attributes. The course's order cleans what the redaction left."""
    hidden = "assert add(2, 3) == 5"
    cell = grade_cell(f"### BEGIN HIDDEN TESTS\n{hidden}\n### END HIDDEN TESTS", [new_output(
        "display_data", data={"text/html": f'<img alt="x\n{hidden}" src="data:image/png;base64,{PNG}">\n'
                                           '<span title=" onerror=alert(1) y">z</span>'})])
    cell.metadata.nbgrader.update(score=0.0, comment=None)  # (what GetGrades adds)
    config = load_course_config(REPO)
    converter = GenerateFeedback(coursedir=CourseDirectory(config=config), config=config)
    gradebook = (GetGrades, AwaitingHandGrading)  # (no gradebook here)
    preprocessors = [pp for pp in converter.preprocessors if pp not in gradebook]
    assert preprocessors.index(CleanHTML) > preprocessors.index(HideHiddenTests)
    exporter = converter.exporter_class(parent=converter, config=converter.config)  # as nbgrader makes it
    for pp in preprocessors:
        exporter.register_preprocessor(pp)
    text, _ = exporter.from_notebook_node(new_notebook(cells=[cell]), resources=RESOURCES)
    assert what_could_run(Page(text)) == [] and "hidden test line removed" in text


def test_markdown_comes_back_from_nbconvert_as_the_clean_html():
    """The clean HTML of a markdown cell is one CommonMark HTML block, which nbconvert's renderer passes as is:
    blank lines and carriage returns (in code, in attribute values) do not end it."""
    clean = '<pre>a\n\n  b\r\r</pre><p title="x\n\ny">$x < y$</p>\n\n<img src="data:image/png;base64,AA">'
    block = as_html_block(clean)
    assert "\n" not in block and "\r" not in block and html.unescape(block) == f"<div>{clean}</div>"
    assert HTMLExporter().markdown2html({}, block).rstrip("\n") == block


# -- The summary: each graded cell named, answers awaiting grading by hand said so --------------------------------

def _graded(cell, grade_id, **nbgrader):
    cell.metadata.nbgrader = {"grade": True, "grade_id": grade_id, "points": 1, "solution": False, "locked": True,
                              "schema_version": 3, **nbgrader}
    return cell


def test_each_graded_cell_is_named_by_its_part_and_what_it_checks():
    nb = new_notebook(cells=[
        new_markdown_cell("# Assignment\n\n## Part 1: sizes\nWrite `size`.\n```python\n# not a heading\n```"),
        _graded(new_code_cell("# Visible tests: the basics.\nassert size(1) == 1"), "test_size_visible"),
        _graded(new_code_cell('"""Sizes of odd kernels.\n\nMore."""\nassert size(3) == 1'), "test_size_odd"),
        _graded(new_code_cell("assert size(2) == 1"), "test_size_even"),  # stock: no comment
        _graded(new_code_cell("# Visible tests: the basics.\nassert size(7) == 7"), "test_size_seven"),
        _graded(new_code_cell("### BEGIN HIDDEN TESTS\n# secret: size(5) == 1\nassert size(5) == 1\n"
                              "### END HIDDEN TESTS"), "test_size-hidden"),
        new_markdown_cell("## Part 2: **why** it works"),
        _graded(new_markdown_cell("# My heading\nBecause."), "written", solution=True, locked=False, points=2),
        _graded(new_code_cell("%time assert size(1) == 1"), "test_after_the_answer"),
        _graded(new_markdown_cell("### Plot the sizes\nAnd say what you see."), "plot", task=True, grade=False),
    ])
    assert graded_cell_names(nb) == {
        "test_size_visible": "Part 1: sizes — Visible tests: the basics (test size visible)",  # (twice the same)
        "test_size_seven": "Part 1: sizes — Visible tests: the basics (test size seven)",
        "test_size_odd": "Part 1: sizes — Sizes of odd kernels",
        "test_size_even": "Part 1: sizes — test size even",
        "test_size-hidden": "Part 1: sizes — test size hidden",  # (never the hidden tests' own comment)
        "written": "Part 2: why it works — written answer",
        "test_after_the_answer": "Part 2: why it works — test after the answer",  # (the answer is the student's)
        "plot": "Part 2: why it works — Plot the sizes"}
    alone = new_notebook(cells=[_graded(new_markdown_cell("x"), "q1_why", solution=True, locked=False)])
    assert graded_cell_names(alone) == {"q1_why": "written answer: q1 why"}


def _render(nb, resources, *preprocessors):
    config = load_course_config(REPO)
    converter = GenerateFeedback(coursedir=CourseDirectory(config=config), config=config)
    exporter = converter.exporter_class(parent=converter, config=converter.config)  # as nbgrader makes it
    for pp in preprocessors:
        exporter.register_preprocessor(pp)
    return exporter.from_notebook_node(nb, resources=resources)[0]


def test_names_from_the_submission_are_escaped_and_forged_ones_never_show():
    """Without a release or source notebook, the headings come from the submission: the student's text."""
    heading = '<img src=x onerror="window.__pwned=1">'
    cell = grade_cell("assert add(1, 1) == 2", [])
    cell.metadata.nbgrader.update(score=1.0, comment=None, feedback_name="<b>Full marks</b>")
    nb = new_notebook(cells=[new_markdown_cell(f"## {heading}"), cell])
    text = _render(nb, RESOURCES, NameGradedCells, CleanHTML)
    toc = text[text.index('<div id="toc">'):text.index("</ol>")]
    assert "&lt;img src=x onerror=" in toc and "Full marks" not in text
    assert what_could_run(Page(text)) == []


# The course's own assignment: plain `nbgrader generate_feedback` in a course with the course's nbgrader_config.py.
ASSIGNMENT = "residual_blocks"


def _generate_feedback(root):
    done = subprocess.run([str(PYTHON), "-m", "nbgrader", "generate_feedback", ASSIGNMENT, "--force"], cwd=root,
                          env=tool_env(PYTHONPATH=str(REPO)), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return (root / "feedback" / "alice" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def residual_blocks_course(tmp_path_factory):
    """The reference solution of residual_blocks, autograded as nbgrader records it: every test passed, the written
    answer awaits grading by hand."""
    from nbgrader.api import Gradebook

    root = tmp_path_factory.mktemp("course")
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    shutil.copytree(REPO / "source" / ASSIGNMENT, root / "source" / ASSIGNMENT, ignore=shutil.ignore_patterns(
        "grading"))
    subprocess.run([str(PYTHON), "-m", "nbgrader", "generate_assignment", ASSIGNMENT, "--force"], cwd=root,
                   env=tool_env(PYTHONPATH=str(REPO)), check=True, capture_output=True)
    source = nbformat.read(root / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    release = nbformat.read(root / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    autograded = root / "autograded" / "alice" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    write(fill(release, answers_from_source(source)), autograded)
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", "resnet-skip-connections") as gb:
        gb.add_student("alice")
        for grade in gb.add_submission(ASSIGNMENT, "alice").notebooks[0].grades:
            if grade.name != "written_answer":
                grade.auto_score, grade.needs_manual_grade = grade.max_score, False
        gb.db.commit()
    return root


def _summary(page: str) -> list[str]:
    """The summary's lines as the reader sees them."""
    toc = page[page.index('<div id="toc">'):page.index("</ol>")]
    return [html.unescape(" ".join(re.sub(r"<[^>]+>", "", item).split())) for item in re.findall(r"<li.*?</li>", toc)]


@pytest.mark.slow  # nbgrader releases and grades the real assignment first
def test_the_summary_of_the_real_assignment_names_every_test(residual_blocks_course):
    page = _generate_feedback(residual_blocks_course)
    summary = _summary(page)
    assert len(summary) == 26 and "Test cell" not in page
    assert "Part 1: the size of a convolution's output — Visible tests: the basics (Score: 1.0 / 1.0)" in summary
    assert ("Part 2: the shortcut — Checked when you submit: the identity shortcut (no parameters, output = input, "
            "gradient passes, any device) (Score: 1.0 / 1.0)") in summary
    assert ("Part 3: the residual block — Checked when you submit: the shortcut is added, and the ReLU comes after "
            "the addition (Score: 1.0 / 1.0)") in summary
    assert "Part 7: why the shortcut helps — written answer (Score: awaiting hand grading (2.0 points))" in summary
    assert f"{ASSIGNMENT} (Score: 25.0 / 27.0; 2.0 points await hand grading)" in page
    assert "Score: awaiting hand grading (2.0 points)" in page[page.index('name="written_answer"'):]  # at the cell
    assert "0.0 / 2.0" not in page


@pytest.mark.slow  # nbgrader releases and grades the real assignment first
def test_a_hand_grade_shows_once_feedback_is_generated_again(residual_blocks_course):
    """What formgrader records when the instructor grades the written answer (after the test above)."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{residual_blocks_course / 'gradebook.db'}", "resnet-skip-connections") as gb:
        grade = gb.find_grade("written_answer", ASSIGNMENT, ASSIGNMENT, "alice")
        grade.manual_score, grade.needs_manual_grade = 1.5, False
        gb.db.commit()
    page = _generate_feedback(residual_blocks_course)
    assert "Part 7: why the shortcut helps — written answer (Score: 1.5 / 2.0)" in _summary(page)
    assert f"{ASSIGNMENT} (Score: 26.5 / 27.0)" in page and "awaiting" not in page
