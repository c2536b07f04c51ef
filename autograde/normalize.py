"""Read a submitted file and put the assignment's structure back into it before nbgrader sees it.

:func:`read_submission` tells an empty file, a PDF, broken JSON and a notebook apart, and repairs
the small defects that editors other than JupyterLab leave (missing ``outputs``, source as a list,
no cell ids).

:class:`RestoreCells` is an nbgrader-style preprocessor that makes the submission's nbgrader
structure the instructor's again, whatever the student (or their editor) did to it:

* metadata: every cell that claims one of the assignment's ``grade_id`` gets the release's nbgrader
  metadata back (points, locked, grade, solution, checksum): a student cannot unlock a test, change
  its points or turn it into an answer cell. Claims to ids the assignment does not have are removed.
* duplicates: JupyterLab's copy-paste duplicates nbgrader metadata. For an answer cell the copy the
  student actually worked in keeps the id (nbgrader's own DeduplicateIds keeps the *last* one, which
  may be the untouched stub, scoring a correct student zero); for locked cells the last copy keeps it.
  The other copies stay in the notebook as ordinary cells.
* lost metadata: a locked cell whose metadata is gone (copied into a fresh notebook, opened in an
  editor that drops it) is recognised by its content.
* deleted cells: missing test cells, locked cells and manually graded answers are re-inserted (the
  release version) after the nearest surviving neighbour, in the release's order. Missing plain
  answer cells are *not* re-inserted: the stub would overwrite the student's code found elsewhere.
* converted cells: a test cell turned into Markdown or raw is turned back into code.
* cell ids are made unique and valid (nbformat 4.5).

Edited locked cells keep the student's text here; nbgrader's OverwriteCells, which runs next,
restores their source from the gradebook (with the hidden tests), as it always does. What was
restored is reported, and a restored *test* cell (or locked code cell) makes the status
"cells restored".
"""
from __future__ import annotations

import copy
import json
import re
import uuid

import nbformat
from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Any

from . import status as st

_VALID_ID = re.compile(r"^[a-zA-Z0-9-_]{1,64}$")


class NotGradable(Exception):
    """The file cannot be graded; ``status`` says why (empty file, not a notebook, ...)."""

    def __init__(self, status: str, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def read_submission(data: bytes, filename: str, max_bytes: int = 100 << 20) -> NotebookNode:
    """Parse a submitted file into a v4 notebook, or raise :class:`NotGradable`."""
    is_ipynb = filename.lower().endswith(".ipynb")
    if len(data) > max_bytes:
        raise NotGradable(st.TOO_LARGE, f"{len(data) >> 20} MB, more than the {max_bytes >> 20} MB limit")
    if not data.strip():
        raise NotGradable(st.EMPTY, "the file is empty")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        if is_ipynb:
            raise NotGradable(st.INVALID, "the file is not text (not UTF-8)") from None
        raise NotGradable(st.NOT_NOTEBOOK, f"{filename} is not a Jupyter notebook") from None
    try:
        raw = json.loads(text)
    except ValueError as exc:
        if is_ipynb:
            raise NotGradable(st.INVALID, f"the file is not valid JSON ({exc})") from None
        raise NotGradable(st.NOT_NOTEBOOK, f"{filename} is not a Jupyter notebook") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cells", raw.get("worksheets")), list):
        if is_ipynb:
            raise NotGradable(st.INVALID, "the JSON has no notebook cells")
        raise NotGradable(st.NOT_NOTEBOOK, f"{filename} is not a Jupyter notebook")
    try:
        invalid = {}
        nb = nbformat.reads(text, as_version=4, capture_validation_error=invalid)  # reads validates
        if not invalid:
            return nb
    except Exception:  # noqa: BLE001 - nbformat raises many kinds; we try to repair below
        pass
    try:
        nb = nbformat.from_dict(_repair(raw))
        nbformat.validate(nb)
    except Exception as exc:  # noqa: BLE001
        raise NotGradable(st.INVALID, f"not a valid notebook ({str(exc).splitlines()[0][:200]})") from None
    return nb


def _repair(raw: dict) -> dict:
    """Fix what third-party editors commonly get wrong, for a v4 notebook."""
    if raw.get("nbformat") != 4 or "worksheets" in raw:
        raise ValueError(f"unsupported notebook format {raw.get('nbformat')}")
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {},
          "cells": []}
    for cell in raw.get("cells", []):
        if not isinstance(cell, dict):
            continue
        cell_type = cell.get("cell_type") if cell.get("cell_type") in ("code", "markdown", "raw") else "markdown"
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(str(part) for part in source)
        fixed = {"cell_type": cell_type, "metadata": cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {},
                 "source": str(source), "id": uuid.uuid4().hex[:8]}
        if cell_type == "code":
            fixed["outputs"] = []
            fixed["execution_count"] = None
        nb["cells"].append(fixed)
    return nb


def _nbgrader(cell) -> dict:
    md = cell.get("metadata", {}).get("nbgrader")
    return md if isinstance(md, dict) else {}


def _grade_id(cell):
    grade_id = _nbgrader(cell).get("grade_id")
    return grade_id if isinstance(grade_id, str) else None


def _text(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.replace("\r\n", "\n").strip().splitlines())


def _is_test(md: dict) -> bool:
    return bool(md.get("grade")) and not md.get("solution")


def _is_locked(md: dict) -> bool:
    return bool(md.get("locked")) or _is_test(md)


class RestoreCells(NbGraderPreprocessor):
    """Make the submission's nbgrader cells the release's again (see the module docstring)."""

    release = Any(help="the release notebook (NotebookNode) the students received")

    def preprocess(self, nb, resources):
        report = resources.setdefault("autograde", {}).setdefault("restored", [])
        statuses = resources["autograde"].setdefault("statuses", set())
        release_cells = [cell for cell in self.release.cells if _grade_id(cell)]
        release_by_id = {_grade_id(cell): cell for cell in release_cells}

        def restored(what: str, grade_id: str, serious: bool):
            report.append(f"{what}: {grade_id}")
            if serious:
                statuses.add(st.RESTORED)

        # 1. Foreign or malformed nbgrader metadata is dropped (another assignment's ids, a typo'd id).
        for cell in nb.cells:
            md = cell.get("metadata", {}).get("nbgrader")
            if md is not None and (not isinstance(md, dict) or _grade_id(cell) not in release_by_id):
                del cell.metadata["nbgrader"]

        # 2. Locked cells that lost their metadata are recognised by their content.
        present = {_grade_id(cell) for cell in nb.cells if _grade_id(cell)}
        for grade_id, release_cell in release_by_id.items():
            md = _nbgrader(release_cell)
            if grade_id in present or not _is_locked(md) or not _text(release_cell.source):
                continue
            for cell in nb.cells:
                if "nbgrader" not in cell.metadata and _text(cell.source) == _text(release_cell.source):
                    cell.metadata["nbgrader"] = copy.deepcopy(md)
                    present.add(grade_id)
                    report.append(f"metadata recovered: {grade_id}")
                    break

        # Another assignment may share boilerplate ids ("intro", "imports"): only answers and tests count.
        if not any(_nbgrader(release_by_id[g]).get("solution") or _nbgrader(release_by_id[g]).get("grade")
                   for g in present):
            raise NotGradable(st.WRONG_ASSIGNMENT, "none of this assignment's cells are in the notebook")

        # 3. Duplicates: one cell per grade_id keeps the metadata.
        by_id: dict[str, list] = {}
        for cell in nb.cells:
            if _grade_id(cell):
                by_id.setdefault(_grade_id(cell), []).append(cell)
        for grade_id, cells in by_id.items():
            if len(cells) == 1:
                continue
            release_cell = release_by_id[grade_id]
            keeper = cells[-1]
            if not _is_locked(_nbgrader(release_cell)):
                edited = [cell for cell in cells if _text(cell.source) != _text(release_cell.source)]
                keeper = edited[-1] if edited else cells[-1]
            for cell in cells:
                if cell is not keeper:
                    del cell.metadata["nbgrader"]
            report.append(f"duplicate cells ({len(cells)}) resolved: {grade_id}")

        # 4. The release's metadata and cell type, whatever the submission says.
        for cell in nb.cells:
            grade_id = _grade_id(cell)
            if not grade_id:
                continue
            release_cell = release_by_id[grade_id]
            md = _nbgrader(release_cell)
            serious = _is_test(md) or (_is_locked(md) and release_cell.cell_type == "code")
            mine = _nbgrader(cell)
            for key in ("grade", "solution", "locked", "points", "task"):
                if bool(mine.get(key)) != bool(md.get(key)) or (key == "points" and _points(mine) != _points(md)):
                    restored("metadata restored", grade_id, serious)
                    break
            cell.metadata["nbgrader"] = copy.deepcopy(md)
            if cell.cell_type != release_cell.cell_type:
                _convert(cell, release_cell.cell_type)
                restored("cell type restored", grade_id, serious)
            if _is_locked(md) and _text(cell.source) != _text(release_cell.source):
                restored("edited cell restored", grade_id, serious)
            if _is_locked(md):
                cell.metadata["editable"] = False
                cell.metadata["deletable"] = False

        # 5. Missing cells come back in the release's order, after their nearest surviving neighbour.
        positions = {_grade_id(cell): i for i, cell in enumerate(nb.cells) if _grade_id(cell)}
        for order, release_cell in enumerate(release_cells):
            grade_id = _grade_id(release_cell)
            md = _nbgrader(release_cell)
            if grade_id in positions or not (_is_locked(md) or md.get("grade")):
                continue
            previous = [positions[_grade_id(c)] for c in release_cells[:order] if _grade_id(c) in positions]
            following = [positions[_grade_id(c)] for c in release_cells[order + 1:] if _grade_id(c) in positions]
            index = max(previous) + 1 if previous else (min(following) if following else len(nb.cells))
            cell = copy.deepcopy(release_cell)
            if cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None
            cell["id"] = uuid.uuid4().hex[:8]
            nb.cells.insert(index, cell)
            positions = {_grade_id(c): i for i, c in enumerate(nb.cells) if _grade_id(c)}
            restored("deleted cell restored", grade_id, _is_test(md) or (_is_locked(md) and cell.cell_type == "code"))

        # 6. Unique, valid cell ids (pasted cells may repeat them; other editors omit them).
        seen = set()
        for cell in nb.cells:
            cell_id = cell.get("id")
            if not isinstance(cell_id, str) or not _VALID_ID.match(cell_id) or cell_id in seen:
                cell_id = uuid.uuid4().hex[:8]
                while cell_id in seen:
                    cell_id = uuid.uuid4().hex[:8]
                cell["id"] = cell_id
            seen.add(cell_id)
        nb.nbformat, nb.nbformat_minor = 4, max(nb.get("nbformat_minor", 5), 5)
        return nb, resources


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
