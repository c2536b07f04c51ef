"""One :class:`Result` per student, and what a grading run makes of them: grades.csv, the cache, the summary.

``grades.csv`` has one row per submission found: ``student_id``, ``score``, ``max_score``, ``status``, one column
per graded cell (its ``grade_id``; empty while an answer awaits grading by hand), then ``needs_manual_grade``,
``notes`` and ``submission`` (the file that was graded).

The cache (``.autograde/cache/``) keeps each result under a key made of the submitted bytes, the assignment's
fingerprint and the grading settings, so a rerun reuses it unless ``--force``.
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
from pathlib import Path

from . import status as st

FIXED_COLUMNS = ["student_id", "score", "max_score", "status"]
TRAILING_COLUMNS = ["needs_manual_grade", "notes", "submission"]
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
    gradebook: dict | None = None  # the job's automatic grades, for the class course
    manual: str | None = None  # a digest of the hand grades in the class course
    feedback_manual: str | None = None  # the hand grades the feedback page shows
    seconds: float = 0.0
    kernel_cpu_s: float | None = None
    kernel: str | None = None  # "warm" or "cold"

    @property
    def status(self) -> str:
        return st.most_severe(self.statuses)

    def add(self, status: str | None = None, note: str | None = None) -> None:
        if status and status not in self.statuses:
            self.statuses.append(status)
        if note and note not in self.notes:
            self.notes.append(note)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "Result":
        return cls(**json.loads(text))


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
            [spreadsheet_text(result.student_id), number(result.score), number(result.max_score), result.status]
            + [number(result.cells.get(cell)) for cell in cells]
            + [result.needs_manual_grade, spreadsheet_text(" | ".join(result.notes)),
               spreadsheet_text(result.origin)])
    atomic_write(path, rows.getvalue())


def atomic_write(path: Path, text: str) -> None:
    """Write *path* through a temporary file and a rename: a reader never sees half of it."""
    tmp = _temporary(path)
    tmp.write_text(text, encoding="utf-8")
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

def cache_key(path: str | None, known_status: str | None, fingerprint: str, settings: dict) -> str:
    digest = hashlib.sha256(json.dumps([fingerprint, settings, known_status], sort_keys=True).encode())
    if path:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


class Cache:
    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _path(self, student_id: str) -> Path:
        return self.folder / (hashlib.sha1(student_id.encode("utf-8", "surrogatepass")).hexdigest() + ".json")

    def get(self, student_id: str, key: str) -> Result | None:
        try:
            result = Result.from_json(self._path(student_id).read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            return None
        if result.cache_key != key or result.student_id != student_id or not Path(result.feedback).exists():
            return None
        return result

    def put(self, result: Result) -> None:
        if result.status == st.GRADER_ERROR:
            return  # never reuse a failure of the grader itself
        atomic_write(self._path(result.student_id), result.to_json())


# -- summary ------------------------------------------------------------------------------------

def summary(results: list[Result], max_score: float, seconds: float, jobs: int, reused: int, out: Path,
            assignment: str, isolation: str) -> str:
    lines = [f"Graded {len(results)} submission(s) of {assignment} in {seconds:.1f} s "
             f"({jobs} in parallel{f', {reused} reused from an earlier run' if reused else ''})", ""]
    if isolation == "none":
        lines += ["WARNING: --isolation none: the notebooks ran with your own access to files and network.", ""]
    counts = Counter(r.status for r in results)
    width = max([len("status")] + [len(s) for s in counts])
    lines.append(f"  {'status'.ljust(width)}  count")
    for status in st.SEVERITY[::-1] + sorted(set(counts) - set(st.SEVERITY)):
        if counts.get(status):
            lines.append(f"  {status.ljust(width)}  {counts[status]:5d}")
    scores = [float(r.score) for r in results]
    if scores:
        lines += [""] + _histogram(scores, max_score)
        manual = sum(1 for r in results if r.needs_manual_grade)
        if manual:
            lines.append(f"  {manual} submission(s) have answers to grade by hand (see docs/instructors.md)")
    lines += ["", f"Grades: {out / 'grades.csv'}", f"Feedback: {out / 'feedback'}/<student_id>.html"]
    return "\n".join(lines)


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
