"""Feedback pages: nbgrader's, rendered fast (every submission gets one), and the page of a file that could not
be graded. Hidden tests are kept out by :class:`autograde.preprocessors.HideHiddenTests`, the student's HTML is
cleaned by :class:`autograde.sanitize.CleanHTML`, and each page runs no script but its own MathJax (:func:`lock_down`).
"""
from __future__ import annotations

import base64
import copy
import functools
import hashlib
import html
import importlib.resources
import re
from pathlib import Path

import jinja2
from nbconvert.exporters import HTMLExporter
from nbconvert.exporters.templateexporter import TemplateExporter

from .results import atomic_write, number

_IMG_WITHOUT_ALT = re.compile(r"<img(?![^>]*\balt=)", re.IGNORECASE)
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
    """nbgrader's feedback page, rendered without HTMLExporter's BeautifulSoup pass.

    That pass re-parses the whole page (which inlines Bootstrap's CSS) to add ``alt`` text to images
    and ``tabindex`` to JupyterLab-template cells; on nbgrader's feedback template (classic) only the
    ``alt`` text applies, which a regular expression adds for a tenth of the cost.
    """

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
