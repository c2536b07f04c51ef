"""What an instructor downloaded, made into one submission per student, and a submitted file made into a notebook.

Accepted layouts (after unzipping, and after stepping into a single wrapping folder such as the
one a learning-management system puts around everything):

* ``<student_id>.ipynb`` — one file per student; any other file (``<student_id>.pdf``) is a
  submission too, and will be reported as "not a notebook";
* ``<student_id>.zip`` — a student who zipped their work: unpacked (safely) like a folder;
* ``<student_id>/<any name>.ipynb`` — one folder per student, notebooks at any depth;
* nbgrader's ``submitted/<student_id>/<assignment>/<notebook>.ipynb``.

The student id is the file name without its extension, or the folder name, exactly as written
(NFC-normalised, so macOS and Windows spellings of "José" agree). Hidden files, ``__MACOSX`` and
``.ipynb_checkpoints`` are ignored. When a student's folder holds several notebooks, the one named
like the assignment's notebook wins, then the one that has most of the assignment's cells.
"""
from __future__ import annotations

import json
import unicodedata
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from . import safezip
from . import status as st
from .preprocessors import NotGradable


@dataclass
class Submission:
    student_id: str
    path: Path | None  # the file to grade; None when there is nothing to grade
    origin: str  # where it came from, relative to what the instructor passed
    status: str | None = None  # known before grading (e.g. a folder without any notebook)
    notes: list[str] = field(default_factory=list)


def _visible(path: Path) -> list[Path]:
    try:
        children = sorted(path.iterdir(), key=lambda p: p.name)
    except OSError:
        return []
    return [child for child in children
            if not child.name.startswith(".") and not safezip.is_junk([child.name]) and not child.is_symlink()]


def _student_id_from_file(path: Path) -> str:
    name = path.name
    for suffix in (".ipynb", ".zip"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    stem = Path(name).stem
    return stem or name


def _notebooks_under(folder: Path) -> list[Path]:
    found = []
    todo = [folder]
    while todo:
        current = todo.pop()
        for child in _visible(current):
            if child.is_dir():
                todo.append(child)
            elif child.suffix.lower() == ".ipynb" and child.is_file():
                found.append(child)
    return sorted(found)


def unwrap(root: Path) -> Path:
    """Step into folders that merely wrap the class (``export/``, ``submissions/``, ``submitted/``)."""
    for _ in range(10):
        entries = _visible(root)
        if (root / "submitted").is_dir():
            return root / "submitted"
        if len(entries) != 1 or not entries[0].is_dir():
            return root
        inner = _visible(entries[0])
        looks_like_class = (
            (entries[0] / "submitted").is_dir()
            or sum(1 for p in inner if p.is_dir()) >= 2
            or sum(1 for p in inner if p.is_file() and p.suffix.lower() in (".ipynb", ".zip")) >= 2
        )
        if not looks_like_class:
            return root
        root = entries[0]
    return root


class NotebookChooser:
    """Picks the notebook to grade among several in one student's folder."""

    def __init__(self, notebook_name: str, assignment: str, grade_ids=()):
        self.notebook_name = notebook_name
        self.assignment = assignment
        self.grade_ids = set(grade_ids)

    def _matching_cells(self, path: Path) -> int:
        if not self.grade_ids or path.stat().st_size > 64 << 20:
            return 0
        try:
            cells = json.loads(path.read_bytes()).get("cells", [])
            return len({c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in cells} & self.grade_ids)
        except (ValueError, AttributeError, TypeError, OSError):
            return 0

    def choose(self, folder: Path, notebooks: list[Path]) -> tuple[Path, list[str]]:
        def rank(path: Path):
            relative = path.relative_to(folder)
            return (path.stem == self.notebook_name,
                    self.assignment in relative.parts[:-1],
                    self._matching_cells(path),
                    -len(relative.parts),
                    path.stat().st_mtime)

        best = max(notebooks, key=rank)
        notes = []
        if len(notebooks) > 1:
            others = ", ".join(str(p.relative_to(folder)) for p in notebooks if p != best)
            notes.append(f"graded {best.relative_to(folder)}; also found {others}")
        return best, notes


def discover(root: Path, chooser: NotebookChooser, unpack_dir: Path, truncated=frozenset()) -> list[Submission]:
    """Every submission under *root* (a folder); nested zips are unpacked into *unpack_dir*.

    *truncated* holds files that unzipping cut short (they are reported as too large)."""
    root = unwrap(root)
    found: list[Submission] = []
    for entry in _visible(root):
        origin = str(entry.relative_to(root))
        if entry.is_file():
            student_id = _student_id_from_file(entry)
            if entry.suffix.lower() == ".zip" and zipfile.is_zipfile(entry):
                target = unpack_dir / f"nested-{len(found)}"
                try:
                    extraction = safezip.extract(entry, target)
                except (zipfile.BadZipFile, OSError) as exc:
                    found.append(Submission(student_id, entry, origin, notes=[f"unreadable zip: {exc}"]))
                    continue
                found.append(_from_folder(student_id, target, origin, chooser, extraction.truncated))
            else:
                found.append(Submission(student_id, entry, origin,
                                        status=st.TOO_LARGE if entry in truncated else None))
        elif entry.is_dir():
            found.append(_from_folder(entry.name, entry, origin, chooser, truncated))
    return _unique_ids(found)


def _from_folder(student_id: str, folder: Path, origin: str, chooser: NotebookChooser, truncated) -> Submission:
    notebooks = _notebooks_under(folder)
    if not notebooks:
        files = [p for p in folder.rglob("*") if p.is_file()]
        what = ", ".join(sorted(str(p.relative_to(folder)) for p in files)[:5]) or "nothing"
        return Submission(student_id, None, origin, status=st.NO_NOTEBOOK, notes=[f"no .ipynb file (found {what})"])
    best, notes = chooser.choose(folder, notebooks)
    return Submission(student_id, best, f"{origin}/{best.relative_to(folder)}",
                      status=st.TOO_LARGE if best in truncated else None, notes=notes)


def _unique_ids(found: list[Submission]) -> list[Submission]:
    """NFC-normalise ids and keep them unique, also on case-insensitive file systems (feedback files)."""
    seen: dict[str, int] = {}
    for submission in found:
        student_id = unicodedata.normalize("NFC", submission.student_id)
        key = student_id.casefold()
        if key in seen:
            seen[key] += 1
            student_id = f"{student_id} ({seen[key]})"
            submission.notes.append("another submission has the same student id")
            key = student_id.casefold()
        seen.setdefault(key, 1)
        submission.student_id = student_id
    return sorted(found, key=lambda s: s.student_id)


def open_submissions(path: Path, work: Path) -> tuple[Path, list[str], set[Path]]:
    """A folder to discover in: *path* itself, or the zip unpacked safely into *work*.

    Returns the folder, warnings about zip entries that were skipped, and the files cut short."""
    path = Path(path)
    if path.is_dir():
        return path, [], set()
    if path.is_file() and zipfile.is_zipfile(path):
        extraction = safezip.extract(path, work / "unpacked")
        notes = [f"{name!r} was not unpacked: {why}" for name, why in sorted(extraction.skipped.items())]
        return extraction.root, notes, set(extraction.truncated)
    if path.is_file():
        raise ValueError(f"{path} is neither a folder nor a .zip file")
    raise FileNotFoundError(f"{path} does not exist")


# -- one submitted file ----------------------------------------------------------------------------------

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
