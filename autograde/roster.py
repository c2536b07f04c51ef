"""``--roster FILE``: the class list, so that every student on it gets a row, with a submission or without.

The roster is a CSV (or Blackboard's tab-separated UTF-16 ``.xls``) of one of these kinds, told apart by its header:

* the LMS's own export, whose ids are the ones its submission downloads carry:
  - Canvas's gradebook export ("Student", "ID", ..., "Section", ...): the Canvas user id; its "Points Possible" row
    and Canvas's test student ("Student, Test") are not students;
  - Moodle's grading worksheet ("Identifier", "Full name", ...): the participant id in "Participant 123456";
  - Blackboard's Grade Center download ("Last Name", "First Name", "Username", ...): the username;
* any other CSV with a ``student_id`` (or ``id``, ``username``) column and, if you like, a ``name`` column.

A student on the roster without a submission gets status ``no submission``, a score of 0 (also in the LMS import
files) and a feedback page that says so. A student who handed something in but is not on the roster keeps their row,
with a note. The roster is remembered in ``--out``: later runs into it use it until another ``--roster`` replaces it.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from . import AutogradeError
from .results import atomic_write

SAVED = "roster.json"  # in --out/.autograde
CANVAS_NOT_STUDENTS = ("Points Possible", "Student, Test", "Test Student")
PLAIN_ID_COLUMNS = ("student_id", "id", "username", "user", "sid")


@dataclass(frozen=True)
class Member:
    student_id: str
    name: str = ""
    lms: str | None = None  # the LMS whose export it came from (its import file gets the row); None: the class's


def read_roster(path: Path) -> list[Member]:
    """The students of *path*, in its order; a file of no known kind, or with no student, stops the run."""
    rows = _rows(path)
    header = [cell.strip().lstrip("\ufeff") for cell in rows[0]] if rows else []
    for kind in (_canvas, _moodle, _blackboard, _plain):
        members = kind(header, rows[1:])
        if members is not None:
            break
    else:
        raise AutogradeError(f"{path}: not a roster: its header needs a student_id column (or is that of Canvas's "
                             "gradebook export, Moodle's grading worksheet or Blackboard's Grade Center download)")
    if not members:
        raise AutogradeError(f"{path}: the roster lists no student")
    seen = {}
    for member in members:
        if seen.setdefault(member.student_id.casefold(), member) != member:
            raise AutogradeError(f"{path}: {member.student_id} is listed twice")
    return list(seen.values())


def _rows(path: Path) -> list[list[str]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AutogradeError(f"cannot read the roster {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AutogradeError(f"{path}: the roster is neither UTF-8 nor UTF-16 text") from None
    delimiter = "\t" if text.split("\n", 1)[0].count("\t") > text.split("\n", 1)[0].count(",") else ","
    return [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if any(cell.strip() for cell in row)]


def _column(header: list[str], *names: str) -> int | None:
    folded = [cell.casefold() for cell in header]
    return next((folded.index(name.casefold()) for name in names if name.casefold() in folded), None)


def _cell(row: list[str], index: int | None) -> str:
    return row[index].strip() if index is not None and index < len(row) else ""


def _canvas(header: list[str], rows: list[list[str]]) -> list[Member] | None:
    if header[:2] != ["Student", "ID"]:
        return None
    return [Member(_cell(row, 1), _cell(row, 0), "canvas") for row in rows
            if _cell(row, 1) and _cell(row, 0) not in CANVAS_NOT_STUDENTS]


def _moodle(header: list[str], rows: list[list[str]]) -> list[Member] | None:
    identifier, name = _column(header, "Identifier"), _column(header, "Full name")
    if identifier is None or name is None:
        return None
    return [Member(_cell(row, identifier).removeprefix("Participant").strip(), _cell(row, name), "moodle")
            for row in rows if _cell(row, identifier)]


def _blackboard(header: list[str], rows: list[list[str]]) -> list[Member] | None:
    username, first, last = (_column(header, name) for name in ("Username", "First Name", "Last Name"))
    if username is None or first is None or last is None:
        return None
    return [Member(_cell(row, username), f"{_cell(row, first)} {_cell(row, last)}".strip(), "blackboard")
            for row in rows if _cell(row, username)]


def _plain(header: list[str], rows: list[list[str]]) -> list[Member] | None:
    student, name = _column(header, *PLAIN_ID_COLUMNS), _column(header, "name", "full name", "full_name")
    if student is None:
        return None
    return [Member(_cell(row, student), _cell(row, name)) for row in rows if _cell(row, student)]


def remembered(work: Path, given: Path | None) -> list[Member] | None:
    """The roster of this run: *given* (read, and remembered in *work*), else the one an earlier run remembered."""
    if given is not None:
        return remember(work, read_roster(given))
    saved = work / SAVED
    if not saved.is_file():
        return None
    return [Member(**entry) for entry in json.loads(saved.read_text(encoding="utf-8"))]


def remember(work: Path, members: list[Member]) -> list[Member]:
    """Keep *members* as the roster of later runs into this --out (*work*: its .autograde folder)."""
    atomic_write(work / SAVED, json.dumps([asdict(member) for member in members], ensure_ascii=False))
    return members
