"""One :class:`Result` per student, and what a grading run makes of them: grades.csv, the cache, the summary.

``grades.csv`` has one row per student of the class: ``student_id`` (the LMS's own identifier where the download
has one), ``name``, ``score`` (after any late penalty), ``max_score``, ``status``, one column per graded cell (its
``grade_id``; empty while an answer awaits grading by hand), then ``needs_manual_grade``, ``under_review`` (hand
scores to review, not in ``score``), ``late_penalty``,
``submitted_at`` (the LMS's or the exchange's time, UTC), ``notes`` and ``submission`` (the file that was graded).
It is UTF-8 with a byte-order mark, as Excel needs to show accented names.

The cache (``.autograde/cache/``) keeps each student's latest result under a key made of the submitted bytes and
the grading settings (the assignment's source, the course's configuration, the due date, the limits, the grader's
version: ``run.grading_settings``), so a rerun reuses it unless ``--force``. It is also the class list: a later
batch graded into the same ``--out`` adds to it, and the students it does not hold keep their rows; a result whose
settings changed is graded again from its copy in the class course (``run._again``).
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import shutil
import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import status as st

FIXED_COLUMNS = ["student_id", "name", "score", "max_score", "status"]
TRAILING_COLUMNS = ["needs_manual_grade", "under_review", "late_penalty", "submitted_at", "notes", "submission"]
# Spreadsheets run a cell that begins with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Result:
    """Everything the run knows about one student's submission, from discovery to the class course."""

    student_id: str
    origin: str  # the file that was graded, relative to what the instructor passed
    feedback: str  # the student's feedback page
    max_score: float
    cache_key: str = ""
    statuses: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cells: dict[str, float | None] = field(default_factory=dict)  # grade_id -> score (None: to grade by hand)
    score: float = 0.0
    needs_manual_grade: int = 0
    under_review: float = 0.0  # hand scores to review (the answer or its automatic score changed): not in ``score``
    gradebook: dict | None = None  # the job's automatic grades, for the class course
    manual: str | None = None  # a digest of the hand grades in the class course
    feedback_manual: str | None = None  # the hand grades the feedback page shows
    seconds: float = 0.0
    kernel_cpu_s: float | None = None
    kernel: str | None = None  # "warm" or "cold"
    name: str = ""  # the student's name, where the download carries one
    lms: str = "plain"  # the layout of the download it came from (which LMS import file it goes to)
    submitted_at: str | None = None  # ISO 8601, UTC: the LMS's or the exchange's record (None: unknown)
    late_penalty: float = 0.0  # what nbgrader's late-submission plugin took off (already out of ``score``)
    seconds_late: float = 0.0  # after the due date, by the LMS's or the exchange's time (0: on time, or unknown)
    fingerprint: str = ""  # the assignment's source it was graded against
    grader_version: str = ""
    grading_settings: dict = field(default_factory=dict)  # what decided the grade besides the file (run.py)

    @property
    def status(self) -> str:
        return st.most_severe(self.statuses)

    def add(self, status: str | None = None, note: str | None = None) -> None:
        if status and status not in self.statuses:
            self.statuses.append(status)
        if note and note not in self.notes:
            self.notes.append(note)

    def mark_late(self, due: str | None) -> None:
        """Record how late the submission came, when both its time and the due date (ISO 8601) are known."""
        if not (due and self.submitted_at and later(self.submitted_at, due)):
            return
        self.seconds_late = (instant(self.submitted_at) - instant(due)).total_seconds()
        self.add(note=f"late: {_duration(self.seconds_late)} after the due date ({due})")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "Result":
        return cls(**json.loads(text))


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours) + [f"{minutes} min"] * bool(minutes)
    return " ".join(parts) or "less than a minute"


def number(value) -> str:
    if value is None:
        return ""
    value = round(float(value), 4)
    return str(int(value)) if value == int(value) else str(value)


def spreadsheet_text(text: str) -> str:
    """Text that a spreadsheet shows as written: a leading ' keeps a student's "=HYPERLINK(...)" inert."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_grades(path: Path, results: list[Result], cells: list[str]) -> None:
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(FIXED_COLUMNS + cells + TRAILING_COLUMNS)
    for result in sorted(results, key=lambda r: r.student_id):
        writer.writerow(
            [spreadsheet_text(result.student_id), spreadsheet_text(result.name), number(result.score),
             number(result.max_score), result.status]
            + [number(result.cells.get(cell)) for cell in cells]
            + [result.needs_manual_grade, number(result.under_review or None), number(result.late_penalty or None),
               result.submitted_at or "",
               spreadsheet_text(" | ".join(result.notes)), spreadsheet_text(result.origin)])
    atomic_write(path, "\ufeff" + rows.getvalue())  # the byte-order mark: Excel then reads it as UTF-8


def atomic_write(path: Path, text: str | bytes) -> None:
    """Write *path* (text as UTF-8) through a temporary file and a rename: a reader never sees half of it."""
    tmp = _temporary(path)
    tmp.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    os.replace(tmp, path)


def atomic_copy(source: Path, target: Path) -> None:
    """Copy *source* to *target* through a temporary file and a rename, as :func:`atomic_write` does."""
    tmp = _temporary(target)
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def _temporary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not named after *path*: a student's feedback page may already have the longest name a folder allows.
    return path.with_name(f".{os.getpid()}.tmp")


# -- cache --------------------------------------------------------------------------------------

SETTING_NAMES = {"source": "the assignment's source changed", "config": "the course's nbgrader_config.py changed",
                 "due": "the due date changed", "version": "another version of the grader",
                 "timeout": "--timeout changed", "memory_mb": "--memory changed", "isolation": "--isolation changed",
                 "max_output_bytes": "the output cap changed"}


def changed_settings(old: dict, new: dict) -> str:
    """Why a result graded with the settings *old* is graded again with *new*: the first difference, in words."""
    for name in [*SETTING_NAMES, *sorted(set(old) | set(new))]:
        if old.get(name) != new.get(name):
            return SETTING_NAMES.get(name, f"the setting {name} changed")
    return "its settings changed"


def instant(iso: str) -> datetime:
    """An ISO 8601 time; one without a zone is UTC (as nbgrader's gradebook keeps times)."""
    when = datetime.fromisoformat(iso)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def later(first: str | None, second: str | None) -> bool:
    """Whether the ISO 8601 time *first* is after *second* (False when either is unknown)."""
    return bool(first and second) and instant(first) > instant(second)


def cache_key(path: str | None, known_status: str | None, fingerprint: str, settings: dict) -> str:
    digest = hashlib.sha256(json.dumps([fingerprint, settings, known_status], sort_keys=True).encode())
    if path:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def reusable(result: Result, key: str) -> bool:
    """Whether a cached *result* stands for grading under *key* again: same key, its feedback page still there, and
    no failure of the grader itself."""
    return result.cache_key == key and Path(result.feedback).exists() and result.status != st.GRADER_ERROR


class Cache:
    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _path(self, student_id: str) -> Path:
        return self.folder / (hashlib.sha1(student_id.encode("utf-8", "surrogatepass")).hexdigest() + ".json")

    def latest(self, student_id: str) -> Result | None:
        """The student's result in this --out, whatever it was graded from and with."""
        try:
            result = Result.from_json(self._path(student_id).read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            return None
        return result if result.student_id == student_id else None

    def put(self, result: Result) -> None:
        atomic_write(self._path(result.student_id), result.to_json())

    def set_aside(self, result: Result) -> None:
        """Keep *result* out of the class, in ``set-aside/`` (for the record)."""
        (self.folder / "set-aside").mkdir(exist_ok=True)
        os.replace(self._path(result.student_id), self.folder / "set-aside" / self._path(result.student_id).name)

    def everyone(self) -> list[Result]:
        """Every student this --out has graded, in any run (the latest result of each)."""
        found = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                found.append(Result.from_json(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError):
                continue
        return found


# -- summary ------------------------------------------------------------------------------------

@dataclass
class RunReport:
    """What a grading run did, beyond the results themselves: for the summary."""

    assignment: str
    max_score: float
    out: Path
    jobs: int
    isolation: str = "bwrap"
    isolation_note: str = ""  # what the notebooks ran with, when it is less than bubblewrap's sandbox
    seconds: float = 0.0  # from the command's start, start-up included
    batch: int = 0  # students in this download
    reused: int = 0  # of those, results reused from an earlier run
    earlier: int = 0  # students of earlier batches into this --out, kept
    lms: str = "plain"  # the download's layout
    ignored: list[str] = field(default_factory=list)  # side files that gave no row: "origin (why)"
    exports: list[str] = field(default_factory=list)  # one line per LMS import file written
    dropped: int = 0  # results of an older version of the grader, set aside
    kept_newer: int = 0  # students whose attempt in this download is older than the one an earlier run graded
    regraded: Counter = field(default_factory=Counter)  # why results of earlier runs were graded again: count
    shard: str = ""  # "I/N" when this run graded one part of the class (grade --shard)
    shards: int = 0  # when this is a merge: how many shards it joined
    roster: str = ""  # with a roster: how many students it lists, and how many handed nothing in


_LMS_IDS = {"canvas": ("a Canvas download", "Canvas user ids"),
            "moodle": ("a Moodle download", "Moodle participant ids"),
            "blackboard": ("a Blackboard download", "Blackboard usernames"),
            "gradescope": ("a Gradescope export", "Gradescope SIDs (else e-mail addresses)"),
            "nbgrader": ("nbgrader's submitted/ folder", "nbgrader student ids")}


def summary(results: list[Result], report: RunReport) -> str:
    lines = [_headline(report)]
    if report.earlier:
        lines.append(f"Kept {report.earlier} student(s) graded in earlier batches: grades.csv has "
                     f"{len(results)} row(s)")
    if report.kept_newer:
        lines.append(f"Kept {report.kept_newer} newer attempt(s) graded in an earlier run: this download's attempt "
                     "of those students is older (by the LMS's time)")
    for reason, count in sorted(report.regraded.items()):
        lines.append(f"Graded {count} result(s) of earlier runs again: {reason}")
    if report.dropped:
        lines.append(f"Set aside {report.dropped} result(s) of an older version of the grader: grade those "
                     "submissions again if you still need them")
    if report.lms in _LMS_IDS:
        lines.append(f"Recognised {_LMS_IDS[report.lms][0]}: student ids are {_LMS_IDS[report.lms][1]}")
    if report.roster:
        lines.append(report.roster)
    if report.ignored:
        shown = report.ignored[:8] + ([f"... and {len(report.ignored) - 8} more"] if len(report.ignored) > 8 else [])
        lines += [f"Ignored {len(report.ignored)} side file(s), no row of their own:"] + [f"  {i}" for i in shown]
    lines.append("")
    if report.isolation == "none":
        lines += ["WARNING: --isolation none: the notebooks ran with your own access to files and network.", ""]
    elif report.isolation == "container":
        lines += [f"Isolation: {report.isolation_note} (docs/instructors.md, \"Security model\").", ""]
    lines += _status_table(results)
    scores = [float(r.score) for r in results]
    if scores:
        lines += [""] + _histogram(scores, report.max_score)
        manual = sum(1 for r in results if r.needs_manual_grade)
        if manual:
            lines.append(f"  {manual} submission(s) have answers to grade by hand (see docs/instructors.md)")
        late = sum(1 for r in results if r.seconds_late > 0)
        if late:
            lines.append(f"  {late} submission(s) came after the due date (notes say how late)")
        penalised = sum(1 for r in results if r.late_penalty)
        if penalised:
            lines.append(f"  {penalised} submission(s) lost points to the late-submission penalty")
    lines += ["", f"Grades: {report.out / 'grades.csv'}", f"Feedback: {report.out / 'feedback'}/<student_id>.html"]
    lines += [f"Written: {line}" for line in report.exports]
    return "\n".join(lines)


def _headline(report: RunReport) -> str:
    if report.shards:
        return (f"Merged {report.shards} shard(s) of {report.assignment}: {report.batch} student(s), in "
                f"{report.seconds:.1f} s")
    reused = f", {report.reused} reused from an earlier run" if report.reused else ""
    part = f" (shard {report.shard} of the class)" if report.shard else ""
    return (f"Graded {report.batch} submission(s) of {report.assignment}{part} in {report.seconds:.1f} s "
            f"({report.jobs} in parallel{reused})")


def _status_table(results: list[Result]) -> list[str]:
    counts = Counter(r.status for r in results)
    width = max([len("status")] + [len(s) for s in counts])
    lines = [f"  {'status'.ljust(width)}  count"]
    for status in st.SEVERITY[::-1] + sorted(set(counts) - set(st.SEVERITY)):
        if counts.get(status):
            lines.append(f"  {status.ljust(width)}  {counts[status]:5d}")
    return lines


def _histogram(scores: list[float], max_score: float, bins: int = 5) -> list[str]:
    top = max_score or 1.0
    edges = [top * i / bins for i in range(bins + 1)]
    counts = Counter(min(int(score / top * bins), bins - 1) for score in scores)
    biggest = max(counts.values())
    lines = [f"  score (of {number(max_score)})   count"]
    for i in range(bins):
        label = f"{number(edges[i])}–{number(edges[i + 1])}"
        lines.append(f"  {label.ljust(18)} {counts.get(i, 0):5d}  {'█' * round(20 * counts.get(i, 0) / biggest)}")
    lines.append(f"  mean {statistics.mean(scores):.2f}, median {number(statistics.median(scores))}, "
                 f"min {number(min(scores))}, max {number(max(scores))}")
    return lines
