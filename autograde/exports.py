"""The grade file each learning-management system imports, written beside grades.csv.

One file per LMS the class's downloads came from, with the rows of that LMS's students only, keyed by the LMS's
own identifier (:mod:`autograde.lms`):

* ``canvas_grades.csv`` for Canvas's Gradebook "Import": the columns Student, ID, SIS User ID, SIS Login ID,
  Section, then the assignment's column, and a "Points Possible" row (Canvas creates the assignment with those
  points when the column matches none). Canvas matches students by ID (the Canvas user id) first, and the
  assignment by the column's "Name (id)" or its title (``app/models/gradebook_importer.rb`` in canvas-lms: the
  header row must start with "Student" and "ID" and its student columns end with "Section"). UTF-8 with a
  byte-order mark: Canvas's importer finds "Student" in a first cell that carries the mark, and Excel needs the
  mark to read UTF-8 names.
* ``moodle_grades.csv`` for Moodle's assignment "Upload grading worksheet" (assignfeedback_offline): the columns
  it looks up by their English names, "Identifier" ("Participant {participant id}"), "Grade" and "Last modified
  (grade)" (a grade is skipped when Moodle's own is more recent, unless you tick "Allow updating records that have
  been modified more recently in Moodle than in the spreadsheet"), with "Full name" and "Maximum Grade" for the
  reader. UTF-8 with a byte-order mark, as Moodle's own worksheet download: Moodle's CSV reader strips the mark.
* ``blackboard_grades.xls`` for Blackboard Learn's Grade Center "Work Offline > Upload": the format of Blackboard's
  own "Work Offline > Download", tab-delimited text in UTF-16 with a byte-order mark under an ``.xls`` name, which
  Blackboard recommends for uploads and Excel opens as it is. Students are matched by "Username"; the column by the
  ``|{column id}`` at the end of its header (without one, Blackboard adds a new text column).

A row waits, and is left out of these files, while an answer awaits grading by hand or the grader itself failed:
uploading a partial score would show students a grade that is not theirs. The summary says which rows wait.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import status as st
from .results import Result, atomic_write, number, spreadsheet_text


@dataclass
class Column:
    """The assignment's column in the LMS's gradebook."""

    header: str  # "Residual blocks (12345)" for Canvas, "Residual blocks [Total Pts: 10 Score] |123456" for Blackboard
    points: float  # the points it is out of in the LMS; scores are scaled to it
    max_score: float  # the points the grader gives it

    def score(self, result: Result) -> str:
        scale = self.points / self.max_score if self.max_score else 1.0
        return number(result.score * scale)


def waiting(result: Result) -> str | None:
    """Why *result* must not reach an LMS yet, or None."""
    if result.status == st.GRADER_ERROR:
        return "grader error"
    if result.needs_manual_grade:
        return "awaiting hand grading"
    return None


def canvas(rows: list[Result], column: Column) -> bytes:
    header = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column.header]
    lines = [header, ["Points Possible", "", "", "", "", number(column.points)]]
    lines += [[spreadsheet_text(r.name), r.student_id, "", "", "", column.score(r)] for r in rows]
    return _csv(lines, ",").encode("utf-8-sig")


def moodle(rows: list[Result], column: Column, now: datetime) -> bytes:
    header = ["Identifier", "Full name", "Grade", "Maximum Grade", "Last modified (grade)"]
    # PHP's strtotime() reads ISO 8601 with its offset, whatever the server's time zone.
    modified = now.isoformat(timespec="seconds")
    lines = [header] + [[f"Participant {r.student_id}", spreadsheet_text(r.name), column.score(r),
                         number(column.points), modified] for r in rows]
    return _csv(lines, ",").encode("utf-8-sig")


def blackboard(rows: list[Result], column: Column) -> bytes:
    # As Blackboard's own download: text in quotes, numbers bare, CR LF line ends.
    lines = [[_quoted("Username"), _quoted(column.header)]] + [[_quoted(r.student_id), column.score(r)] for r in rows]
    text = "".join("\t".join(line) + "\r\n" for line in lines)
    return b"\xff\xfe" + text.encode("utf-16-le")


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _csv(lines: list[list[str]], delimiter: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerows(lines)  # RFC 4180, as Excel writes
    return buffer.getvalue()


FILES = {"canvas": "canvas_grades.csv", "moodle": "moodle_grades.csv", "blackboard": "blackboard_grades.xls"}


def write_exports(out: Path, results: list[Result], assignment: str, max_score: float, header: str | None = None,
                  points: float | None = None, now: datetime | None = None) -> list[str]:
    """Write the import file of every LMS the class came from; one line per file for the summary."""
    column = Column(header or assignment, points or max_score, max_score)
    now = now or datetime.now().astimezone()
    lines = []
    for lms, filename in FILES.items():
        rows = sorted((r for r in results if r.lms == lms), key=lambda r: r.student_id)
        if not rows:
            continue
        ready = [r for r in rows if waiting(r) is None]
        data = moodle(ready, column, now) if lms == "moodle" else canvas(ready, column) if lms == "canvas" \
            else blackboard(ready, column)
        atomic_write(out / filename, data)
        waits = [f"{r.student_id} ({waiting(r)})" for r in rows if waiting(r)]
        lines.append(f"{out / filename}: {len(ready)} row(s)"
                     + (f"; not yet in it: {', '.join(waits)}" if waits else ""))
    return lines
