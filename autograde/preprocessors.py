"""The course's nbgrader preprocessors that protect grading, configured in ``nbgrader_config.py``.

* :class:`RestoreCells` (Autograde's sanitize step) makes a submission's nbgrader structure the release's again,
  whatever the student or their editor did to it, so that every test runs and counts as the instructor wrote it.
* :class:`HideHiddenTests` (GenerateFeedback) keeps hidden tests and the instructor's solutions out of feedback.

The third plugin, :class:`autograde.execute.JudgedExecute`, runs the notebook; what the plugins noticed goes
into the notebook's metadata under ``autograde`` (see :func:`report`), which the grading tool reads back. The
submitted file's own ``autograde`` metadata is discarded first, so a student cannot forge it.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import os
import re

from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from nbgrader import utils
from nbgrader.api import Gradebook
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor
from traitlets import Any, Integer

from . import status as st

METADATA_KEY = "autograde"
_VALID_ID = re.compile(r"^[a-zA-Z0-9-_]{1,64}$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
REDACTED = "[hidden test line removed]"


class NotGradable(Exception):
    """The file cannot be graded; ``status`` says why (empty file, not a notebook, wrong assignment, ...)."""

    def __init__(self, status: str, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def report(nb: NotebookNode) -> dict:
    """What the grading plugins recorded in *nb*: {"statuses": [...], "notes": [...], ...}."""
    return nb.metadata.setdefault(METADATA_KEY, {"statuses": [], "notes": []})


def add_to_report(nb: NotebookNode, status: str | None = None, note: str | None = None) -> None:
    found = report(nb)
    if status and status not in found["statuses"]:
        found["statuses"].append(status)
    if note and note not in found["notes"]:
        found["notes"].append(note)


# -- RestoreCells ----------------------------------------------------------------------------------

def nbgrader_metadata(cell) -> dict:
    """A cell's nbgrader metadata; {} when it has none, or something else than a dict."""
    md = cell.get("metadata", {}).get("nbgrader")
    return md if isinstance(md, dict) else {}


def grade_id(cell) -> str | None:
    value = nbgrader_metadata(cell).get("grade_id")
    return value if isinstance(value, str) else None


def _text(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.replace("\r\n", "\n").strip().splitlines())


def is_graded(cell) -> bool:
    """Whether *cell* is something the assignment grades: an answer, a test or a task."""
    return any(nbgrader_metadata(cell).get(key) for key in ("solution", "grade", "task"))


def _is_test(md: dict) -> bool:
    return bool(md.get("grade")) and not md.get("solution")


def _is_locked(md: dict) -> bool:
    return bool(md.get("locked")) or _is_test(md)


def _serious(release_cell) -> bool:
    """Restoring this cell changes what is graded: a test, or locked code the tests rely on."""
    md = nbgrader_metadata(release_cell)
    return _is_test(md) or (_is_locked(md) and release_cell.cell_type == "code")


NOT_THIS_ASSIGNMENT = "none of this assignment's cells are in the notebook"


def is_other_assignment(nb: NotebookNode, release: NotebookNode) -> bool:
    """Whether *nb* holds none of the answer, test or task cells of *release* (matched by id or, for locked cells
    that lost their metadata, by content), where the release has some: boilerplate ids ("intro") do not count. A
    notebook the release gives nothing to grade (a reading notebook) is never another assignment's."""
    release_by_id = {grade_id(cell): cell for cell in release.cells if grade_id(cell)}
    graded = {g for g, cell in release_by_id.items() if is_graded(cell)}
    if not graded or any(grade_id(cell) in graded for cell in nb.cells):
        return False
    texts = {_text(cell.source) for cell in nb.cells}
    return not any(_is_locked(nbgrader_metadata(release_by_id[g])) and _text(release_by_id[g].source) in texts
                   for g in graded)


def is_untouched(nb: NotebookNode, release: NotebookNode) -> bool:
    """Whether every answer cell of *release* is in *nb* as the release has it (the notebook as handed out)."""
    answers = {grade_id(cell): _text(cell.source) for cell in release.cells if nbgrader_metadata(cell).get("solution")}
    found = {grade_id(cell): _text(cell.source) for cell in nb.cells if grade_id(cell) in answers}
    return bool(answers) and found == answers


def check_assignment(nb: NotebookNode, release: NotebookNode) -> None:
    """Raise NotGradable when *nb* is another assignment's (:func:`is_other_assignment`): the grading tool's rule,
    which gives such a file its row status and grades nothing."""
    if is_other_assignment(nb, release):
        raise NotGradable(st.WRONG_ASSIGNMENT, NOT_THIS_ASSIGNMENT)


class RestoreCells(NbGraderPreprocessor):
    """Make the submission's nbgrader cells the release's again, in the release's order where cells are missing.

    * metadata: a cell that claims one of the assignment's ``grade_id`` gets the release's nbgrader metadata back
      (points, locked, grade, solution): a student cannot unlock a test, change its points or make it an answer;
      claims to ids the assignment does not have are removed;
    * lost metadata: a locked cell whose metadata is gone (copied into a fresh notebook, opened in an editor that
      drops it) is recognised by its content; an answer graded by hand, by its place: the one cell of its type
      between its surviving neighbours that is not the release's own text. When several cells could be it, the
      release's cell comes back empty-handed, to be graded by hand, and the status "answer to find" says where
      to look (it is never scored as "no response");
    * duplicates: JupyterLab's copy-paste copies nbgrader metadata. For an answer cell the copy the student worked
      in keeps the id (nbgrader's DeduplicateIds keeps the *last*, which may be the untouched stub); for locked
      cells the last copy keeps it; the others stay in the notebook as ordinary cells;
    * converted cells: a test cell turned into Markdown or raw is code again;
    * deleted cells: tests, locked cells and hand-graded answers come back (the release version) after their
      nearest surviving neighbour. Plain answer cells do not: a stub would overwrite the student's code;
    * cell ids are made unique and valid (nbformat 4.5), new ones derived from the cell's place and content;
    * another assignment's notebook (none of this one's graded cells) is restored and graded all the same, as
      nbgrader would grade it (its tests fail), with the status "wrong assignment".

    The release comes from the course's release folder; without one, from the gradebook, whose cells have no
    order: deleted cells then come back at the end, and answers are not looked for by their place.

    Edited locked cells keep the student's text here: nbgrader's OverwriteCells, which runs next, restores them
    from the gradebook (hidden tests included). What was restored goes into the notebook's ``autograde``
    metadata; restoring a test or locked code cell adds the status "cells restored".
    """

    release = Any(None, allow_none=True, help="the release notebook; by default read from the course's "
                                              "release folder").tag(config=True)

    def preprocess(self, nb, resources):
        nb.metadata.pop(METADATA_KEY, None)  # only the plugins write it
        release, in_order = (self.release, True) if self.release is not None else self._release_notebook(resources)
        other = is_other_assignment(nb, release)
        if other:  # graded as nbgrader grades it; the report and the log say why it scores 0
            add_to_report(nb, st.WRONG_ASSIGNMENT, NOT_THIS_ASSIGNMENT)
            notebook = (resources.get("nbgrader") or {}).get("notebook", "notebook")
            self.log.warning("%s: %s", notebook, NOT_THIS_ASSIGNMENT)
        release_cells = [cell for cell in release.cells if grade_id(cell)]
        by_id = {grade_id(cell): cell for cell in release_cells}
        self._nb = nb
        self._drop_foreign_metadata(nb, by_id)
        self._recover_metadata(nb, by_id)
        if in_order and not other:  # finding a lost answer by its neighbours needs the release's order and cells
            self._recover_answers(nb, release_cells, {_text(cell.source) for cell in release.cells})
        self._resolve_duplicates(nb, by_id)
        self._restore_metadata(nb, by_id)
        self._reinsert_missing(nb, release_cells, in_order)
        unique_ids(nb)
        nb.nbformat, nb.nbformat_minor = 4, max(nb.get("nbformat_minor", 5), 5)
        return nb, resources

    def _release_notebook(self, resources) -> tuple[NotebookNode, bool]:
        """The release notebook, from the course's release folder; without one (the release is made elsewhere, or
        was removed), the assignment's cells as the gradebook records them, in an order it does not record."""
        import nbformat

        info = resources["nbgrader"]
        coursedir = CourseDirectory(parent=self)
        folder = coursedir.format_path(coursedir.release_directory, ".", info["assignment"])
        path = f"{folder}/{info['notebook']}.ipynb"
        if os.path.isfile(path):
            return nbformat.read(path, as_version=4), True
        return release_from_gradebook(info["db_url"], info["assignment"], info["notebook"]), False

    def _restored(self, what: str, cell_id: str, serious: bool) -> None:
        found = report(self._nb)
        found.setdefault("restored", []).append(f"{what}: {cell_id}")
        if serious:
            add_to_report(self._nb, status=st.RESTORED)

    @staticmethod
    def _drop_foreign_metadata(nb, by_id) -> None:
        """Another assignment's ids, a typo'd id, malformed metadata: the cell becomes an ordinary cell."""
        for cell in nb.cells:
            md = cell.get("metadata", {}).get("nbgrader")
            if md is not None and (not isinstance(md, dict) or grade_id(cell) not in by_id):
                del cell.metadata["nbgrader"]

    def _recover_metadata(self, nb, by_id) -> None:
        present = {grade_id(cell) for cell in nb.cells if grade_id(cell)}
        for cell_id, release_cell in by_id.items():
            md = nbgrader_metadata(release_cell)
            if cell_id in present or not _is_locked(md) or not _text(release_cell.source):
                continue
            for cell in nb.cells:
                if "nbgrader" not in cell.metadata and _text(cell.source) == _text(release_cell.source):
                    cell.metadata["nbgrader"] = copy.deepcopy(md)
                    report(nb).setdefault("restored", []).append(f"metadata recovered: {cell_id}")
                    break

    def _recover_answers(self, nb, release_cells, release_texts: set[str]) -> None:
        positions = {grade_id(cell): i for i, cell in enumerate(nb.cells) if grade_id(cell)}
        for order, release_cell in enumerate(release_cells):
            cell_id, md = grade_id(release_cell), nbgrader_metadata(release_cell)
            if cell_id in positions or not (md.get("grade") and md.get("solution")):
                continue
            before = [positions[grade_id(c)] for c in release_cells[:order] if grade_id(c) in positions]
            after = [positions[grade_id(c)] for c in release_cells[order + 1:] if grade_id(c) in positions]
            start, end = (max(before) + 1 if before else 0), (min(after) if after else len(nb.cells))
            found = [cell for cell in nb.cells[start:end] if "nbgrader" not in cell.metadata
                     and cell.cell_type == release_cell.cell_type and _text(cell.source)
                     and _text(cell.source) not in release_texts]
            if len(found) == 1:
                found[0].metadata["nbgrader"] = copy.deepcopy(md)
                report(nb).setdefault("restored", []).append(f"metadata recovered: {cell_id} (found by its place)")
                positions = {grade_id(cell): i for i, cell in enumerate(nb.cells) if grade_id(cell)}
            elif found:
                report(nb).setdefault("answers_lost", []).append(cell_id)
                add_to_report(nb, st.ANSWER_UNCLEAR, f"{cell_id} lost its nbgrader metadata and {len(found)} cells "
                                                     f"(cells {start + 1} to {end} of the submitted notebook) could "
                                                     "be the answer: grade it by hand from the submitted notebook")

    def _resolve_duplicates(self, nb, by_id) -> None:
        copies: dict[str, list] = {}
        for cell in nb.cells:
            if grade_id(cell):
                copies.setdefault(grade_id(cell), []).append(cell)
        for cell_id, cells in copies.items():
            if len(cells) == 1:
                continue
            release_cell = by_id[cell_id]
            keeper = cells[-1]
            if not _is_locked(nbgrader_metadata(release_cell)):
                edited = [cell for cell in cells if _text(cell.source) != _text(release_cell.source)]
                keeper = edited[-1] if edited else cells[-1]
            for cell in cells:
                if cell is not keeper:
                    del cell.metadata["nbgrader"]
            self._restored(f"duplicate cells ({len(cells)}) resolved", cell_id, False)

    def _restore_metadata(self, nb, by_id) -> None:
        """The release's metadata and cell type, whatever the submission says."""
        for cell in nb.cells:
            cell_id = grade_id(cell)
            if not cell_id:
                continue
            release_cell = by_id[cell_id]
            md, mine = nbgrader_metadata(release_cell), nbgrader_metadata(cell)
            serious = _serious(release_cell)
            if any(bool(mine.get(key)) != bool(md.get(key)) for key in ("grade", "solution", "locked", "task")) \
                    or _points(mine) != _points(md):
                self._restored("metadata restored", cell_id, serious)
            cell.metadata["nbgrader"] = copy.deepcopy(md)
            if cell.cell_type != release_cell.cell_type:
                _convert(cell, release_cell.cell_type)
                self._restored("cell type restored", cell_id, serious)
            if _is_locked(md):
                if _text(cell.source) != _text(release_cell.source):
                    self._restored("edited cell restored", cell_id, serious)
                cell.metadata["editable"] = False
                cell.metadata["deletable"] = False

    def _reinsert_missing(self, nb, release_cells, in_order: bool) -> None:
        """Deleted tests, locked cells and hand-graded answers come back after their nearest surviving neighbour
        in the release; at the end when the release's order is unknown (as nbgrader's own ``add_missing_cells``)."""
        positions = {grade_id(cell): i for i, cell in enumerate(nb.cells) if grade_id(cell)}
        for order, release_cell in enumerate(release_cells):
            cell_id, md = grade_id(release_cell), nbgrader_metadata(release_cell)
            if cell_id in positions or not (_is_locked(md) or md.get("grade")):
                continue
            previous = [positions[grade_id(c)] for c in release_cells[:order] if grade_id(c) in positions]
            following = [positions[grade_id(c)] for c in release_cells[order + 1:] if grade_id(c) in positions]
            index = max(previous) + 1 if previous else (min(following) if following else len(nb.cells))
            cell = copy.deepcopy(release_cell)
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
            nb.cells.insert(index if in_order else len(nb.cells), cell)  # its release id, made unique afterwards
            positions = {grade_id(c): i for i, c in enumerate(nb.cells) if grade_id(c)}
            self._restored("deleted cell restored", cell_id, _serious(release_cell))


def release_from_gradebook(db_url: str, assignment: str, notebook: str) -> NotebookNode:
    """A release notebook's nbgrader cells as nbgrader's gradebook records them (its source cells, their points and
    kinds), sorted by grade id: the gradebook keeps no order."""
    with Gradebook(db_url) as gb:
        recorded = gb.find_notebook(notebook, assignment)
        points = {cell.name: cell.max_score for cell in [*recorded.grade_cells, *recorded.task_cells]}
        solutions = {cell.name for cell in recorded.solution_cells}
        tasks = {cell.name for cell in recorded.task_cells}
        cells = []
        for source in sorted(recorded.source_cells, key=lambda cell: cell.name):
            name = source.name
            md = {"grade_id": name, "locked": bool(source.locked), "solution": name in solutions,
                  "grade": name in points and name not in tasks, "task": name in tasks, "points": points.get(name, 0),
                  "schema_version": 3}
            make = new_code_cell if source.cell_type == "code" else new_markdown_cell
            cell = make(source.source or "", metadata={"nbgrader": md})
            del cell["id"]  # given one from its content where it is inserted
            cells.append(cell)
    return new_notebook(cells=cells)


def unique_ids(nb) -> None:
    """Unique, valid cell ids (pasted cells repeat them; other editors omit them). A new id is derived from the
    cell's place and content, so that grading the same file twice gives the same notebook."""
    seen = set()
    for index, cell in enumerate(nb["cells"]):
        cell_id, attempt = cell.get("id"), 0
        while not isinstance(cell_id, str) or not _VALID_ID.match(cell_id) or cell_id in seen:
            content = f"{index}/{attempt}/{cell.get('cell_type')}/{cell.get('source', '')}"
            cell_id = hashlib.sha256(content.encode()).hexdigest()[:8]
            attempt += 1
        cell["id"] = cell_id
        seen.add(cell_id)


def _points(md: dict) -> float:
    try:
        return float(md.get("points", 0) or 0)
    except (TypeError, ValueError):
        return -1.0


def _convert(cell, cell_type: str) -> None:
    cell.cell_type = cell_type
    if cell_type == "code":
        cell.setdefault("outputs", [])
        cell.setdefault("execution_count", None)
    else:
        cell.pop("outputs", None)
        cell.pop("execution_count", None)


# -- HideHiddenTests --------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _alternatives(lines: tuple) -> re.Pattern:
    """One pattern matching any of *lines*. Compiling it costs ~0.5 s for a real assignment's hidden tests, the
    same for every submission: the grading tool compiles it once before it forks its workers."""
    return re.compile("|".join(re.escape(line) for line in lines))


class HideHiddenTests(ClearHiddenTests):
    """Feedback without hidden tests: their code is removed from test cells, the tracebacks of those cells are cut
    down to the error itself, and any output line that quotes a hidden line is replaced by a marker.

    nbgrader's ClearHiddenTests alone leaves the traceback, which quotes the hidden lines that failed. Hidden lines
    also reach other outputs: a student's function that prints the stack it was called from, ``print(In[7])``,
    a traceback through a hidden helper. Lines shorter than ``min_redacted_length`` (``pass``, ``else:``) are too
    common to redact. Unlike ClearHiddenTests this never fails on a student's notebook: delimiters typed into a
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
        self._pattern = _alternatives(tuple(sorted(self._hidden, key=len, reverse=True))) if self._hidden else None
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

    def redact(self, text: str) -> str:
        """*text* with every line that quotes a hidden test replaced, once :meth:`preprocess` has seen the source
        (for text outside the notebook's outputs, such as the grader's notes)."""
        return self._redact(text) if self._pattern is not None else text

    def _redact(self, text):
        if not isinstance(text, str):
            return text
        out = []
        for line in text.split("\n"):
            plain = _ANSI.sub("", line)
            out.append(REDACTED if plain.strip() in self._hidden or self._pattern.search(plain) else line)
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
