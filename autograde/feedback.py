"""Feedback pages: nbgrader's, rendered fast (every submission gets one), and the page of a file that could not
be graded. Hidden tests are kept out by :class:`autograde.preprocessors.HideHiddenTests`, the student's HTML is
cleaned by :class:`autograde.sanitize.CleanHTML`, and each page runs no script but its own MathJax (:func:`lock_down`).

The page is the course's template (templates/course_feedback.html.j2, on top of nbgrader's): its summary names
each graded cell (:class:`NameGradedCells`) and says which answers await grading by hand
(:class:`AwaitingHandGrading`) where nbgrader's says "Test cell" and scores them 0.
"""
from __future__ import annotations

import ast
import base64
import collections
import copy
import functools
import hashlib
import html
import importlib.resources
import os
import re
from pathlib import Path

import jinja2
import nbformat
from nbconvert.exporters import HTMLExporter
from nbconvert.exporters.templateexporter import TemplateExporter
from nbgrader.api import Gradebook
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Integer, default

from .preprocessors import grade_id, nbgrader_metadata
from .results import atomic_write, number

_IMG_WITHOUT_ALT = re.compile(r"<img(?![^>]*\balt=)", re.IGNORECASE)
TEMPLATES = Path(__file__).parent / "templates"
COURSE_TEMPLATE = "course_feedback.html.j2"
# What nbconvert's mathjax() macro writes into the page's head: MathJax from a CDN, and its configuration.
_CDN_MATHJAX = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.DOTALL)
# MathJax 2 turns the TeX into MathML, which browsers draw themselves: no fonts or other files to load (the page's
# policy forbids any request; HTML-CSS, which MathJax starts all the same, is told to look for none). Delimiters
# as nbconvert's configuration has them; Safe.js filters what TeX may put into the page, as nbconvert asks.
MATHJAX_CONFIG = r"""window.MathJax = {
  menuSettings: {renderer: "NativeMML"}, showMathMenu: false, messageStyle: "none",
  "HTML-CSS": {availableFonts: [], webFont: null, imageFont: null},
  tex2jax: {inlineMath: [["$", "$"], ["\\(", "\\)"]], displayMath: [["$$", "$$"], ["\\[", "\\]"]],
            processEscapes: true, processEnvironments: true},
  TeX: {equationNumbers: {autoNumber: "AMS", useLabelIds: true}}
};"""
MATHJAX_FILES = ("MathJax.js", "config/TeX-AMS-MML_HTMLorMML-full.js", "extensions/Safe.js")


class _SharedBytecodeCache(jinja2.BytecodeCache):
    """Compiled templates kept in this process's memory: compiled once before the grader forks its
    workers, every worker's fresh exporter loads them instead of compiling them again."""

    store: dict = {}

    def load_bytecode(self, bucket):
        data = self.store.get(bucket.key)
        if data is not None:
            bucket.bytecode_from_string(data)

    def dump_bytecode(self, bucket):
        self.store[bucket.key] = bucket.bytecode_to_string()


class FeedbackExporter(HTMLExporter):
    """nbgrader's feedback page with the course's summary, rendered without HTMLExporter's BeautifulSoup pass.

    The page is templates/course_feedback.html.j2, which extends nbgrader's feedback template (the one GenerateFeedback
    configures): chosen here, by the exporter every path of the course uses, so that plain ``nbgrader
    generate_feedback``, the grading tool and its class course render the same page.

    The BeautifulSoup pass re-parses the whole page (which inlines Bootstrap's CSS) to add ``alt`` text to images
    and ``tabindex`` to JupyterLab-template cells; on nbgrader's feedback template (classic) only the
    ``alt`` text applies, which a regular expression adds for a tenth of the cost.
    """

    @default("template_file")
    def _course_template_file(self):
        return COURSE_TEMPLATE

    @default("template_paths")
    def _course_template_paths(self):
        # The course's folder first; it holds no index.html.j2, so that the course's page extends nbgrader's.
        return [str(TEMPLATES), *super()._template_paths()]

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = _SharedBytecodeCache()
        return environment

    def from_notebook_node(self, nb, resources=None, **kw):
        langinfo = nb.metadata.get("language_info", {})
        lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
        from nbconvert.filters.highlight import Highlight2HTML
        from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

        highlight_code = self.filters.get("highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self))
        resources = self._init_resources(resources)
        self.register_filter("highlight_code", highlight_code)
        self.register_filter("filter_data_type", WidgetsDataTypeFilter(
            notebook_metadata=self._nb_metadata, parent=self, resources=resources))
        html, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
        html = _IMG_WITHOUT_ALT.sub('<img alt="No description has been provided for this image"', html)
        return lock_down(html), resources


# -- The summary's names and hand grading ---------------------------------------------------------------------

_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_HIDDEN = "BEGIN HIDDEN TESTS"  # nbgrader's delimiter: nothing from here on names a test


def readable(cell_id: str) -> str:
    """A grade id as words: ``test_make_shortcut_identity`` -> "test make shortcut identity"."""
    return re.sub(r"[_\s-]+", " ", cell_id).strip()


def _last_heading(markdown: str) -> str | None:
    """The last heading of a markdown cell (ATX, outside code blocks), without its markup."""
    found, fenced = None, False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and (match := _HEADING.match(line)):
            found = match.group(1).replace("`", "").replace("**", "").strip() or found
    return found


def what_it_checks(source: str) -> str | None:
    """What a test cell checks, in its author's words: the first line of its leading comment or docstring, from
    the lines before any hidden tests (whose comments are the instructor's only)."""
    visible = source.split(_HIDDEN)[0]
    first = next((line.strip() for line in visible.splitlines() if line.strip()), "")
    if first.startswith("#"):
        text = first.lstrip("#").strip()
    else:
        try:
            text = (ast.get_docstring(ast.parse(visible)) or "").strip().split("\n")[0]
        except (SyntaxError, ValueError):  # IPython magics, or a cell cut at the hidden tests
            text = ""
    return text.rstrip(".").strip() or None


def scored_id(cell) -> str | None:
    """The grade id of a cell the page scores (a test, an answer graded by hand, a task); None for other cells."""
    md = nbgrader_metadata(cell)
    return grade_id(cell) if md.get("grade") or md.get("task") else None


def _what(cell, md: dict, part: str | None) -> str:
    cell_id = md["grade_id"]
    if md.get("grade") and not md.get("solution"):
        return what_it_checks(cell.source) or readable(cell_id)
    kind = "task" if md.get("task") else "written answer" if cell.cell_type == "markdown" else "code answer"
    what = (md.get("task") and _last_heading(cell.source)) or kind  # (a task's text is the instructor's)
    return f"{what}: {readable(cell_id)}" if part is None and what == kind else what  # tells two answers apart


def graded_cell_names(nb, limit: int = 240) -> dict[str, str]:
    """grade id -> a name for every scored cell (test, answer graded by hand, task): the nearest heading above
    it, the part of the assignment, and what it is or checks (:func:`what_it_checks`, else its id as words)."""
    names, part = {}, None
    for cell in nb.cells:
        md = nbgrader_metadata(cell)
        if scored_id(cell):
            what = _what(cell, md, part)
            names[md["grade_id"]] = f"{part} — {what}" if part else what
        elif cell.cell_type == "markdown" and not md.get("solution"):
            part = _last_heading(cell.source) or part  # (an answer's text is the student's, never a part)
    seen = collections.Counter(names.values())  # two tests of a part with the same comment: told apart by id
    for cell_id, name in names.items():
        name = f"{name} ({readable(cell_id)})" if seen[name] > 1 else name
        names[cell_id] = name if len(name) <= limit else name[:limit - 1].rstrip() + "…"
    return names


class NameGradedCells(NbGraderPreprocessor):
    """Names each graded cell for the feedback page (``nbgrader.feedback_name``), by :func:`graded_cell_names`.

    Names come from the assignment as the instructor wrote it, the release notebook (else the source one) of the
    course, not from the submission, whose headings are the student's to edit; a course with neither names them
    from the notebook being rendered (after HideHiddenTests). Every graded cell's name is set here: a name the
    submission carries in its metadata never shows."""

    name_limit = Integer(240, help="Longer names are cut, with an ellipsis").tag(config=True)

    def preprocess(self, nb, resources):
        names = graded_cell_names(self._assignment(resources) or nb, self.name_limit)
        for cell in nb.cells:
            if cell_id := scored_id(cell):
                cell.metadata.nbgrader["feedback_name"] = names.get(cell_id, readable(cell_id))
        return nb, resources

    def _assignment(self, resources):
        info = resources.get("nbgrader", {})
        if "assignment" not in info or "notebook" not in info:
            return None
        coursedir = CourseDirectory(parent=self)
        for step in (coursedir.release_directory, coursedir.source_directory):
            path = os.path.join(coursedir.format_path(step, ".", info["assignment"]), f"{info['notebook']}.ipynb")
            if os.path.isfile(path):
                return nbformat.read(path, as_version=4)
        return None


class AwaitingHandGrading(NbGraderPreprocessor):
    """Marks the cells that await grading by hand (``nbgrader.awaiting_hand_grading``, from the gradebook), so that
    the page says so instead of scoring them 0, and counts their points (``resources["nbgrader"]["awaiting"]``).

    Runs after GetGrades, whose total it corrects as grades.csv counts it: a hand score under review (the answer
    changed since) is not counted meanwhile; the cell's automatic score, if any, is."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            submitted = gb.find_submission_notebook(info["notebook"], info["assignment"], info["student"])
            waiting = {grade.name: (float(grade.score or 0.0), float(grade.auto_score or 0.0), float(grade.max_score))
                       for grade in submitted.grades if grade.needs_manual_grade}
        for cell in nb.cells:
            if cell_id := scored_id(cell):
                cell.metadata.nbgrader["awaiting_hand_grading"] = cell_id in waiting
        info["score"] = info["score"] - sum(score - auto for score, auto, _ in waiting.values())
        info["awaiting"] = sum(points for _, _, points in waiting.values())
        return nb, resources


@functools.cache
def _mathjax() -> tuple[str, str]:
    """The scripts that load MathJax into a page, from the jupyter-server-mathjax package (MathJax 2.7, ~430 kB,
    inlined: a page handed back alone, through an LMS or nbgrader's exchange, has no folder beside it), and the
    Content-Security-Policy that lets exactly these scripts run."""
    static = importlib.resources.files("jupyter_server_mathjax") / "static"
    scripts = [MATHJAX_CONFIG] + [(static / name).read_text(encoding="utf-8") for name in MATHJAX_FILES]
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()}'"
                      for code in scripts)
    policy = (f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; img-src data:; "
              "base-uri 'none'; form-action 'none'")
    return "".join(f"<script>{code}</script>\n" for code in scripts), policy


def lock_down(page: str) -> str:
    """*page* with a Content-Security-Policy first in its head, and a local MathJax instead of the CDN's.

    The policy allows no script but the page's own MathJax (by hash), no request (images are data: URLs), no
    frame, form or <base>: if student HTML ever got past :class:`~autograde.sanitize.CleanHTML`, it could
    still run nothing and send nothing. Without a network the page shows the same, math included."""
    scripts, policy = _mathjax()
    page = page.replace("<head>", f'<head>\n<meta http-equiv="Content-Security-Policy" content="{policy}">', 1)
    return _CDN_MATHJAX.sub(lambda _: scripts, page, count=1)


def prewarm_feedback(config, nb) -> None:
    """Render one page in this process, so that forked workers inherit compiled templates and lexers."""
    nb = copy.deepcopy(nb)
    nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3", "codemirror_mode": {
        "name": "ipython", "version": 3}, "file_extension": ".py", "mimetype": "text/x-python"}
    for cell in nb.cells:  # what nbgrader's GetGrades adds before rendering
        nbgrader = cell.metadata.get("nbgrader")
        if nbgrader is not None:
            nbgrader.setdefault("score", 0.0)
            nbgrader.setdefault("points", 0.0)
            nbgrader.setdefault("comment", None)
    exporter = FeedbackExporter(config=config)
    exporter.from_notebook_node(nb, resources={"nbgrader": {"score": 0, "max_score": 0, "late_penalty": 0}})


def write_status_page(path, student_id: str, assignment: str, status: str, detail: str, max_score: float) -> None:
    """The feedback page of a submission that could not be graded: what went wrong, and the score."""
    e = html.escape
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(assignment)}: feedback for {e(student_id)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:46em;margin:3em auto;line-height:1.5}}
.status{{padding:1em;border-left:4px solid #c33;background:#fdf2f2}}</style></head>
<body><h1>{e(assignment)}</h1><p>Feedback for <strong>{e(student_id)}</strong></p>
<div class="status"><p><strong>Score: 0 / {e(number(max_score))}</strong></p>
<p>Your submission could not be graded: <strong>{e(status)}</strong>.</p><p>{e(detail)}</p></div>
<p>Submit the notebook of this assignment (a <code>.ipynb</code> file saved from Jupyter) and ask your
instructor to grade it again.</p></body></html>
"""
    atomic_write(Path(path), page)
