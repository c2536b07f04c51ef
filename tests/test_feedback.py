import base64
import hashlib
import html
from collections import Counter

import nbformat
import pytest
from nbconvert.exporters import HTMLExporter
from nbformat.v4 import new_code_cell, new_notebook, new_output
from nbgrader.converters import GenerateFeedback
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import GetGrades

from autograde.course import load_course_config
from autograde.preprocessors import HideHiddenTests
from autograde.sanitize import CleanHTML, as_html_block
from autograde_fixtures import (MINI, PNG, REPO, SVG, Page, fill, formgrader_page, hostile_feedback_page,
                                release_and_answers, what_could_run, write)

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
    preprocessors = [pp for pp in converter.preprocessors if pp is not GetGrades]  # (no gradebook here)
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
