"""What an instructor downloaded, made into one submission per student, and a submitted file made into a notebook.

A download is recognised by its naming pattern (:mod:`autograde.lms`): Canvas, Moodle, Blackboard, Gradescope,
nbgrader's ``submitted/`` folder, or plain, where any of these works, mixed if need be:

* ``<student_id>.ipynb`` — one file per student; any other file (``<student_id>.pdf``) is a
  submission too, and will be reported as "not a notebook";
* ``<student_id>.zip`` — a student who zipped their work: unpacked (safely) like a folder;
* ``<student_id>/<any name>.ipynb`` — one folder per student, notebooks at any depth.

Discovery steps into a single folder that merely wraps the class (``export/``, ``submissions/``). The student id
is the LMS's own identifier (Canvas user id, Moodle participant id, Blackboard username, Gradescope SID), else the
file name without its extension or the folder name, NFC-normalised so that macOS and Windows spellings of "José"
agree. Hidden files, ``__MACOSX`` and ``.ipynb_checkpoints`` are ignored.

Every student gets exactly one :class:`Submission`: of all their uploads (attempts, and several notebooks in one
folder) the latest notebook of this assignment is graded, by the LMS's own order or time where the download has
one, else by the file's time (a zip entry's time, kept when unzipping); the notes name the others.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NoReturn

import nbformat
from nbformat import NotebookNode

from . import lms
from . import safezip
from . import status as st
from .preprocessors import NotGradable, unique_ids


@dataclass
class Submission:
    """One student's submission, as discovery found it: who, what to grade, and what else they handed in."""

    student_id: str  # the LMS's identifier, else the file or folder name
    path: Path | None  # the file to grade; None when there is nothing to grade
    origin: str  # where it came from, relative to what the instructor passed
    status: str | None = None  # known before grading (e.g. a folder without any notebook)
    detail: str = ""  # why that status
    notes: list[str] = field(default_factory=list)
    name: str = ""  # the student's name, where the download carries one
    lms: str = "plain"  # the download's layout: canvas, moodle, blackboard, gradescope, nbgrader or plain
    submitted_at: datetime | None = None  # the LMS's or the exchange's record of the time (None: unknown)
    attempts: list[str] = field(default_factory=list)  # what else the student handed in, not graded
    exchange_files: dict[str, Path] = field(default_factory=dict)  # nbgrader's exchange files, to carry along


@dataclass
class Found:
    """What discovery found in a download."""

    submissions: list[Submission]
    lms: str  # the layout recognised
    ignored: list[str] = field(default_factory=list)  # side files that gave no row of their own: "origin (why)"


@dataclass
class _Candidate:
    """A file one of a student's attempts holds."""

    path: Path
    origin: str
    attempt: lms.Attempt
    direct: bool  # uploaded as it is (not found inside an uploaded folder or zip)

    def recency(self) -> tuple:
        return _recency(self.attempt, self.path)


def _recency(attempt: lms.Attempt, path: Path | None = None) -> tuple:
    """Later uploads sort higher: the LMS's own order, then its time, then the file's (a zip entry's time)."""
    order = attempt.order if attempt.order is not None else -1
    when = attempt.submitted_at.timestamp() if attempt.submitted_at else 0.0
    try:
        mtime = path.stat().st_mtime if path else 0.0
    except OSError:
        mtime = 0.0
    return order, when, mtime


def _walk(folder: Path) -> list[Path]:
    """Every visible file under *folder*, at any depth."""
    found, todo = [], [folder]
    while todo:
        current = todo.pop()
        for child in lms.visible(current):
            if child.is_dir():
                todo.append(child)
            elif child.is_file():
                found.append(child)
    return sorted(found)


def unwrap(root: Path) -> Path:
    """Step into folders that merely wrap the class (``export/``, ``submissions/``, ``submitted/``)."""
    for _ in range(10):
        if (root / "submitted").is_dir():
            return root / "submitted"
        entries = lms.visible(root)
        if len(entries) != 1 or not entries[0].is_dir() or lms.student_folder_name(entries[0].name):
            return root
        inner = lms.visible(entries[0])
        looks_like_class = (
            (entries[0] / "submitted").is_dir()
            or (entries[0] / lms.GRADESCOPE_METADATA).is_file()
            or sum(1 for p in inner if p.is_dir()) >= 2
            or sum(1 for p in inner if p.is_file() and p.suffix.lower() in (".ipynb", ".zip")) >= 2
            or lms.recognise(entries[0], [(p, p.name) for p in inner]) != "plain"
        )
        if not looks_like_class:
            return root
        root = entries[0]
    return root


class NotebookChooser:
    """Ranks a student's notebooks: this assignment's before others, then the latest upload."""

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
        except Exception:  # noqa: BLE001 - a student's file, read in the run's own process: whatever is wrong with
            return 0  # it (RecursionError for brackets nested 100,000 deep), grading it says so on its own row

    def rank(self, candidate: _Candidate) -> tuple:
        matching = self._matching_cells(candidate.path)
        named = candidate.path.stem == self.notebook_name
        return (matching > 0 or named, candidate.recency(), named, self.assignment in Path(candidate.origin).parts,
                matching, -len(Path(candidate.origin).parts))


class _Expander:
    """A student's attempts as candidate files: folders walked, zips unpacked (safely, once)."""

    def __init__(self, unpack_dir: Path, truncated):
        self.unpack_dir = unpack_dir
        self.truncated = set(truncated)
        self.count = 0

    def candidates(self, attempt: lms.Attempt) -> list[_Candidate]:
        found = []
        for path in attempt.files:
            origin = attempt.origin if len(attempt.files) == 1 else f"{attempt.origin} ({path.name})"
            if path.is_dir():  # (a zip in it is unpacked too: Moodle and Gradescope keep uploads in folders)
                for inner in _walk(path):
                    inner_origin = f"{origin}/{inner.relative_to(path)}"
                    if _is_zip(inner):
                        found += self._unzipped(inner, inner_origin, attempt)
                    else:
                        found.append(_Candidate(inner, inner_origin, attempt, False))
            elif _is_zip(path):
                found += self._unzipped(path, origin, attempt)
            else:
                found.append(_Candidate(path, origin, attempt, True))
        return found

    def _unzipped(self, path: Path, origin: str, attempt: lms.Attempt) -> list[_Candidate]:
        self.count += 1
        target = self.unpack_dir / f"nested-{self.count}"
        try:
            extraction = safezip.extract(path, target)
        except Exception as exc:  # noqa: BLE001 - a student's zip: anything may be wrong with it
            attempt.notes.append(f"unreadable zip {path.name}: {type(exc).__name__}: {str(exc)[:200]}")
            return [_Candidate(path, origin, attempt, True)]
        self.truncated |= extraction.truncated
        return [_Candidate(p, f"{origin}/{p.relative_to(target.resolve())}", attempt, False)
                for p in _walk(target.resolve())]


def _is_zip(path: Path) -> bool:
    return path.suffix.lower() == ".zip" and zipfile.is_zipfile(path)


def discover(root: Path, chooser: NotebookChooser, unpack_dir: Path, truncated=frozenset(),
             layout: str = "auto") -> Found:
    """One submission per student under *root* (a folder); nested zips are unpacked into *unpack_dir*.

    *truncated* holds files that unzipping cut short (they are reported as too large); *layout* forces an LMS's
    naming pattern ("plain": none)."""
    download = lms.read_download(unwrap(root), layout, chooser.assignment)
    by_student: dict[str, list[lms.Attempt]] = {}
    for attempt in download.attempts:  # one student, whatever the case or the Unicode form of their id
        by_student.setdefault(attempt.student_id.casefold(), []).append(attempt)
    expander = _Expander(unpack_dir, truncated)
    submissions = [_one_submission(attempts, chooser, expander) for attempts in by_student.values()]
    return Found(sorted(submissions, key=lambda s: s.student_id), download.lms, download.ignored)


def _one_submission(attempts: list[lms.Attempt], chooser: NotebookChooser, expander: _Expander) -> Submission:
    candidates = [c for attempt in attempts for c in expander.candidates(attempt)]
    notebooks = [c for c in candidates if c.path.suffix.lower() == ".ipynb"]
    uploads = [c for c in candidates if c.direct]
    if notebooks:
        best = max(notebooks, key=chooser.rank)
    elif uploads:  # a PDF, a .py: graded, so that the row says what it is
        best = max(uploads, key=_Candidate.recency)
    else:
        best = None
    latest = best.attempt if best else max(attempts, key=_recency)
    submission = Submission(latest.student_id, best.path if best else None, best.origin if best else latest.origin,
                            name=latest.name or next((a.name for a in attempts if a.name), ""), lms=latest.lms,
                            submitted_at=latest.submitted_at, exchange_files=dict(latest.exchange_files))
    for note in [note for attempt in attempts for note in attempt.notes]:
        if note not in submission.notes:
            submission.notes.append(note)
    if latest.late:
        submission.notes.append(f"{lms.NAMES[latest.lms]} marked it late (its download carries no submission "
                                "time, so no late penalty could be computed here)")
    others = [c.origin for c in notebooks + uploads if best is None or c.path != best.path]
    submission.attempts = sorted(dict.fromkeys(others))
    if best is None:
        found = sorted(c.origin for c in candidates)
        submission.status = st.NO_NOTEBOOK
        submission.detail = f"no .ipynb file (found {', '.join(found[:5])})" if found else "no file was handed in"
    elif best.path in expander.truncated:
        submission.status = st.TOO_LARGE
        submission.detail = "the file was cut short while unzipping: it is larger than the size limit"
    if submission.attempts and best is not None:
        more = len(submission.attempts) - 5
        shown = submission.attempts[:5] + ([f"{more} more"] if more > 0 else [])
        submission.notes.insert(0, f"graded {best.origin}; also found {', '.join(shown)}")
    return submission


def open_submissions(path: Path, work: Path) -> tuple[Path, list[str], set[Path], list[str]]:
    """A folder to discover in: *path* itself, or the zip unpacked safely into *work*.

    Returns the folder, warnings about zip entries that were skipped, the files cut short, and the junk left out."""
    path = Path(path)
    if path.is_dir():
        return path, [], set(), []
    if path.is_file() and zipfile.is_zipfile(path):
        extraction = safezip.extract(path, work / "unpacked")
        notes = [f"{name!r} was not unpacked: {why}" for name, why in sorted(extraction.skipped.items())]
        junk = [f"{name} (operating-system junk)" for name in extraction.junk]
        return extraction.root, notes, set(extraction.truncated), junk
    if path.is_file():
        raise ValueError(f"{path} is neither a folder nor a .zip file")
    raise FileNotFoundError(f"{path} does not exist")


# -- one submitted file ----------------------------------------------------------------------------------

MAX_DEPTH = 100  # lists and objects in one another: editors write about ten; nbformat fails at a few hundred


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
        _not_gradable(filename, is_ipynb, "the file is not text (not UTF-8)")
    raw = _parse_json(text, filename, is_ipynb)
    if not isinstance(raw, dict) or not isinstance(raw.get("cells", raw.get("worksheets")), list):
        _not_gradable(filename, is_ipynb, "the JSON has no notebook cells")
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


def _not_gradable(filename: str, is_ipynb: bool, why: str) -> NoReturn:
    """An .ipynb file that is no notebook is an invalid notebook (*why*); any other file is not a notebook."""
    if is_ipynb:
        raise NotGradable(st.INVALID, why)
    raise NotGradable(st.NOT_NOTEBOOK, f"{filename} is not a Jupyter notebook")


def _parse_json(text: str, filename: str, is_ipynb: bool):
    """The JSON value in *text*, nested at most MAX_DEPTH deep: deeper, Python's JSON parser (past ~1,000 levels)
    and the code that reads a notebook after it (nbformat, nbgrader) raise RecursionError."""
    try:
        raw = json.loads(text)
        too_deep = _deeper_than(raw, MAX_DEPTH)
    except RecursionError:
        too_deep = True
    except ValueError as exc:
        _not_gradable(filename, is_ipynb, f"the file is not valid JSON ({exc})")
    if too_deep:
        _not_gradable(filename, is_ipynb, f"the file's JSON is nested more than {MAX_DEPTH} levels deep")
    return raw


def _deeper_than(value, limit: int) -> bool:
    """Whether *value* (parsed JSON) holds lists and objects nested more than *limit* deep (level by level: no
    recursion)."""
    level = [value]
    for _ in range(limit):
        level = [child for item in level if isinstance(item, (dict, list))
                 for child in (item.values() if isinstance(item, dict) else item)]
    return any(isinstance(item, (dict, list)) for item in level)


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
                 "source": str(source)}
        if cell_type == "code":
            fixed["outputs"] = []
            fixed["execution_count"] = None
        nb["cells"].append(fixed)
    unique_ids(nb)
    return nb
