"""Late work: the course's late-penalty plugin, and per-student due dates (extensions).

**The plugin.** nbgrader asks its late-submission plugin for a penalty whenever a submission's time is after its
due date. :class:`LatePenalty` is a plugin whose rule is written as options in ``nbgrader_config.py``, without
Python::

    c.AssignLatePenalties.plugin_class = "autograde.late.LatePenalty"
    c.LatePenalty.per = "day"                 # or "hour": every period started after the due date counts whole
    c.LatePenalty.percent_per_period = 10     # of the score the notebook earned; or points_per_period = 1
    c.LatePenalty.max_percent = 50            # never more than half of the score
    c.LatePenalty.grace_minutes = 15          # up to 15 minutes late: no penalty (later: counted from the due date)

It works the same in plain ``nbgrader autograde``, formgrader and ``python -m autograde grade``; the grader's
cache key includes these options, so a change re-grades by itself.

**Extensions.** ``--extensions FILE`` is a CSV of student ids and due dates. nbgrader keeps an extension on each
submission (the assignment's due date plus a time); the grader gives each such student's job that due date, and
the class course records the extension, so formgrader shows the same lateness.
"""
from __future__ import annotations

import csv
import math
from datetime import datetime
from pathlib import Path

import dateutil.parser
from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Enum, Float, validate

from . import AutogradeError

PERIOD_SECONDS = {"hour": 3600, "day": 86400}


class LatePenalty(LateSubmissionPlugin):
    """A penalty per started hour or day late, as a percentage of the score or in points, with a cap and a grace
    period. With nbgrader's own ``penalty_method = "zero"`` set, that rule wins."""

    per = Enum(("hour", "day"), default_value="day", help="the period a penalty is counted in").tag(config=True)
    percent_per_period = Float(0.0, help="percent of the notebook's score taken off per period").tag(config=True)
    points_per_period = Float(0.0, help="points taken off per period").tag(config=True)
    max_percent = Float(100.0, help="the most a penalty takes, in percent of the score").tag(config=True)
    grace_minutes = Float(0.0, help="lateness up to this many minutes costs nothing").tag(config=True)

    @validate("percent_per_period", "points_per_period", "max_percent", "grace_minutes")
    def _not_negative(self, proposal):
        if proposal["value"] < 0:
            raise ValueError(f"LatePenalty.{proposal['trait'].name} cannot be negative: {proposal['value']}")
        return proposal["value"]

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float | None:
        if self.penalty_method == "zero":
            return super().late_submission_penalty(student_id, score, total_seconds_late)
        penalty = late_penalty(score, total_seconds_late, self.per, self.percent_per_period, self.points_per_period,
                               self.max_percent, self.grace_minutes)
        self.log.info("late by %.0f s: penalty %s of %s", total_seconds_late, penalty, score)
        return penalty


def late_penalty(score: float, seconds_late: float, per: str, percent: float, points: float, max_percent: float,
                 grace_minutes: float) -> float:
    """The points a notebook scoring *score* loses for coming *seconds_late* after its due date."""
    if seconds_late <= 0 or seconds_late <= grace_minutes * 60:
        return 0.0
    periods = math.ceil(seconds_late / PERIOD_SECONDS[per])  # an hour and a minute late: two hours started
    penalty = periods * (score * percent / 100 + points)
    return round(min(penalty, score * max_percent / 100, score), 6)


def read_extensions(path: Path) -> dict[str, datetime]:
    """Student id -> due date, from a CSV whose first two columns are the student id and the due date (a header
    row is optional; a date without a zone is this machine's local time). A bad row stops the run before it grades
    anything, and says which row."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [row for row in csv.reader(f) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise AutogradeError(f"cannot read the extensions file {path}: {exc}") from None
    if rows and _is_header(rows[0]):
        rows = rows[1:]
    extensions = {}
    for number, row in enumerate(rows, start=1):
        if len(row) < 2 or not row[0].strip():
            raise AutogradeError(f"{path}, row {number}: expected a student id and a due date, got {row}")
        try:
            due = dateutil.parser.parse(row[1].strip()).astimezone()
        except (ValueError, OverflowError):
            raise AutogradeError(f"{path}, row {number}: not a date and time: {row[1]!r}") from None
        student = row[0].strip()
        if student in extensions and extensions[student] != due:
            raise AutogradeError(f"{path}: two due dates for {student}")
        extensions[student] = due
    return extensions


def _is_header(row: list[str]) -> bool:
    # Recognised by its words, not by a failed date: a mistyped date in the first row must stop the run.
    return len(row) > 1 and any(word in row[1].lower() for word in ("due", "date", "deadline", "extension"))
