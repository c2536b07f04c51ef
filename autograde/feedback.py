"""Feedback that never reveals hidden tests."""
import re

from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests
from traitlets import Integer

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
REDACTED = "[hidden test line removed]"


class HideHiddenTests(ClearHiddenTests):
    """Remove hidden-test code from test cells, and cut the tracebacks of those cells down to the error itself.

    nbgrader's ClearHiddenTests alone leaves the traceback, which quotes the hidden lines that failed.
    Hidden lines can also reach other outputs: a student's function that prints the stack it was
    called from, ``print(In[7])``, a traceback through a hidden helper. Every output line of every cell
    that contains a line of a hidden region (of at least ``min_redacted_length`` characters) is
    replaced by a marker.

    Unlike ClearHiddenTests this never fails on a student's notebook: delimiters typed into a
    student's own cell, or left unbalanced, are not an error.
    """

    min_redacted_length = Integer(
        10, help="Shorter hidden lines (`pass`, `else:`) are too common to be redacted from outputs").tag(config=True)

    def preprocess(self, nb, resources):
        hidden = set()
        for cell in nb.cells:
            if utils.is_grade(cell) and not utils.is_solution(cell):
                hidden |= self._hidden_lines(cell.source)
        self._hidden = {line for line in hidden if len(line) >= self.min_redacted_length}
        self._pattern = re.compile("|".join(re.escape(line) for line in sorted(self._hidden, key=len, reverse=True))) \
            if self._hidden else None
        nb, resources = super().preprocess(nb, resources)
        if self._pattern is not None:
            for cell in nb.cells:
                for output in cell.get("outputs", []):
                    self._redact_output(output)
        return nb, resources

    def _hidden_lines(self, source):
        lines, inside = set(), False
        for line in source.split("\n"):
            if self.begin_test_delimeter in line:
                inside = True
                lines.add(self.begin_test_delimeter)
            elif self.end_test_delimeter in line:
                inside = False
                lines.add(self.end_test_delimeter)
            elif inside and line.strip():
                lines.add(line.strip())
        return lines

    def _redact(self, text):
        if not isinstance(text, str):
            return text
        out = []
        for line in text.split("\n"):
            plain = _ANSI.sub("", line)
            if plain.strip() in self._hidden or self._pattern.search(plain):
                out.append(REDACTED)
            else:
                out.append(line)
        return "\n".join(out)

    def _redact_output(self, output):
        if "text" in output:
            output["text"] = self._redact(output["text"])
        for mime, value in list(output.get("data", {}).items()):
            if mime.startswith("text/") or mime == "application/javascript":
                output["data"][mime] = self._redact(value)
        if output.get("output_type") == "error":
            output["evalue"] = self._redact(output.get("evalue", ""))
            output["traceback"] = [self._redact(line) for line in output.get("traceback", [])]

    def _remove_hidden_test_region(self, cell):
        try:
            return super()._remove_hidden_test_region(cell)
        except RuntimeError:  # nested or unterminated: hide everything from the first delimiter on
            lines = cell.source.split("\n")
            first = next(i for i, line in enumerate(lines) if self.begin_test_delimeter in line)
            cell.source = "\n".join(lines[:first])
            return True

    def preprocess_cell(self, cell, resources, cell_index):
        if not utils.is_grade(cell) or utils.is_solution(cell):
            return cell, resources  # hidden tests live in test cells only; a student's text is theirs
        had_hidden_tests = self.begin_test_delimeter in cell.source
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if had_hidden_tests:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources


# ---------------------------------------------------------------------------------------------
# Rendering feedback pages quickly: every submission gets one, so the per-page cost matters.
# ---------------------------------------------------------------------------------------------

import jinja2  # noqa: E402
from nbgrader.preprocessors import GetGrades  # noqa: E402
from nbconvert.exporters import HTMLExporter  # noqa: E402
from nbconvert.exporters.templateexporter import TemplateExporter  # noqa: E402

_IMG_WITHOUT_ALT = re.compile(r"<img(?![^>]*\balt=)", re.IGNORECASE)


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
        return html, resources


def prewarm_feedback(config, nb) -> None:
    """Render one page in this process, so that forked workers inherit compiled templates and lexers."""
    import copy

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


def feedback_preprocessors(configured) -> list:
    """The course's feedback preprocessors, with HideHiddenTests added if the course forgot it."""
    chosen = list(configured or [GetGrades])
    if not any(isinstance(pp, type) and issubclass(pp, HideHiddenTests) for pp in chosen):
        at = next((i + 1 for i, pp in enumerate(chosen) if pp is GetGrades), 0)
        chosen.insert(at, HideHiddenTests)
    return chosen
