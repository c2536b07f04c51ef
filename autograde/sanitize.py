"""CleanHTML: what a student wrote or printed cannot run code where the notebook is shown as HTML.

Feedback pages and formgrader render a submission with nbconvert, which puts markdown (rendered by mistune, raw
HTML included) and HTML outputs into the page as they are: a ``<script>``, an ``onerror=``, a ``javascript:`` link
or an ``<iframe>`` would run in the student's feedback page, or in formgrader, with the instructor's Jupyter
session. This preprocessor cleans the notebook before the template sees it, with nh3 (the Rust ammonia sanitiser):

* markdown cells and ``text/markdown`` outputs are rendered here, as nbconvert would render them, and the
  *rendered* HTML is cleaned (cleaning the markdown source would mangle code and miss what markdown produces);
  what is left in the cell is that clean HTML as one CommonMark HTML block, which nbconvert passes through as is;
* ``text/html`` outputs and raw cells are cleaned; JavaScript, widget views, widget state and any output type
  not listed in :attr:`CleanHTML.output_types` are dropped. SVG stays: nbconvert shows it as an ``<img>`` with a
  ``data:`` URL, in which browsers never run scripts.

Headings (with their anchors), tables, lists, code with its highlighting, links and images with ``data:`` URLs
(attachments, plots) stay, and so does math, which is text to MathJax.
"""
from __future__ import annotations

from urllib.parse import urlsplit

import nh3
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Dict, Set, Unicode

HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")


def _safe_url(tag: str, attribute: str, value: str) -> str | None:
    """Images from ``data:`` URLs only: nothing is fetched (in formgrader, an image from the web would tell its
    owner who looks at the submission, and when). ``data:`` URLs only as images: a ``data:`` link opens a page
    that nothing cleaned."""
    if attribute not in ("href", "src", "cite"):
        return value
    inline = urlsplit(value).scheme.lower() == "data"
    return value if inline == ((tag, attribute) == ("img", "src")) else None


def as_html_block(html: str) -> str:
    """Markdown that renders to *html* itself: CommonMark passes an HTML block that starts with ``<div`` through
    verbatim up to the first blank line, and this one is a single line (a line break is the same character
    written as a reference, in text, inside ``<pre>`` and in attribute values alike)."""
    line = html.replace("\r", "&#13;").replace("\n", "&#10;")
    return line if line.startswith("<div") else f"<div>{line}</div>"


class CleanHTML(NbGraderPreprocessor):
    """Clean the HTML of markdown cells, raw cells and outputs; drop the outputs that are code (see the module)."""

    tags = Set(Unicode(), default_value=set(nh3.ALLOWED_TAGS),
               help="HTML elements kept (nh3's default list: no script, style, iframe, object, form, "
                    "meta, base, svg)").tag(config=True)
    attributes = Dict(
        default_value={**{tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()},
                       "*": {"class", "title"}, **{tag: {"id"} for tag in HEADINGS}},
        help="attributes kept, by element ('*': any); never an event handler or a style").tag(config=True)
    output_types = Set(Unicode(), default_value={
        "text/plain", "text/html", "text/markdown", "text/latex", "image/png", "image/jpeg", "image/svg+xml",
        "application/json"}, help="the output types kept; the others (application/javascript, widget views, "
                                  "types the template does not know) are dropped").tag(config=True)

    def preprocess(self, nb, resources):
        self._cleaner = nh3.Cleaner(tags=set(self.tags), attributes={k: set(v) for k, v in self.attributes.items()},
                                    url_schemes=nh3.ALLOWED_URL_SCHEMES | {"data"},
                                    attribute_filter=_safe_url)
        nb.metadata.pop("widgets", None)  # the classic template hands widget state to widget JavaScript
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "markdown":
            cell.source = self._markdown(cell.source, cell.pop("attachments", None))
        elif cell.cell_type == "raw":
            cell.source = self._cleaner.clean(cell.source)
        for output in cell.get("outputs", []):
            self._clean_output(output)
        return cell, resources

    def _markdown(self, source: str, attachments=None) -> str:
        html = MarkdownWithMath(renderer=IPythonRenderer(escape=False, attachments=attachments)).render(source)
        return as_html_block(self._cleaner.clean(html).strip())

    def _clean_output(self, output) -> None:
        data = output.get("data", {})
        for mime in [mime for mime in data if mime not in self.output_types]:
            del data[mime]
        if "text/html" in data:
            data["text/html"] = self._cleaner.clean(data["text/html"])
            if isinstance(output.get("metadata"), dict):  # ("isolated" would put it in an iframe, which cannot load)
                output.metadata.pop("text/html", None)
        if "text/markdown" in data:
            data["text/markdown"] = self._markdown(data["text/markdown"])
