"""What a grading run leaves in ``--out``: grades.csv, feedback pages, the cache, the summary.

``grades.csv`` has one row per submission found: ``student_id``, ``score``, ``max_score``,
``status``, one column per graded cell (its ``grade_id``; empty while an answer awaits grading by
hand), then ``needs_manual_grade``, ``notes`` and ``submission`` (the file that was graded).

The cache (``.autograde/cache/``) keeps each result with a key made of the submitted bytes, the
assignment's fingerprint and the grading settings, so a rerun reuses it unless ``--force``.
"""
from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import os
import shutil
import statistics
from collections import Counter
from pathlib import Path

from . import status as st

FIXED_COLUMNS = ["student_id", "score", "max_score", "status"]
TRAILING_COLUMNS = ["needs_manual_grade", "notes", "submission"]
# Spreadsheets run a cell that begins with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def number(value) -> str:
    if value is None:
        return ""
    value = round(float(value), 4)
    return str(int(value)) if value == int(value) else str(value)


def spreadsheet_text(text: str) -> str:
    """Text that a spreadsheet shows as written: a leading ' keeps a student's "=HYPERLINK(...)" inert."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_grades(path: Path, results: list[dict], cells: list[str]) -> None:
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(FIXED_COLUMNS + cells + TRAILING_COLUMNS)
    for result in sorted(results, key=lambda r: r["student_id"]):
        writer.writerow(
            [spreadsheet_text(result["student_id"]), number(result["score"]), number(result["max_score"]),
             result["status"]]
            + [number(result["cells"].get(cell)) for cell in cells]
            + [result.get("needs_manual_grade", 0), spreadsheet_text(" | ".join(result.get("notes", []))),
               spreadsheet_text(result.get("origin", ""))])
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


def write_status_page(path, student_id: str, assignment: str, status: str, detail: str, max_score: float) -> None:
    """The feedback page of a submission that could not be graded: what went wrong, and the score."""
    e = html.escape
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(assignment)}: feedback for {e(student_id)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:46em;margin:3em auto;line-height:1.5}}
.status{{padding:1em;border-left:4px solid #c33;background:#fdf2f2}}</style></head>
<body><h1>{e(assignment)}</h1><p>Feedback for <strong>{e(student_id)}</strong></p>
<div class="status"><p><strong>Score: 0 / {e(number(max_score))}</strong></p>
<p>Your submission could not be graded: <strong>{e(status)}</strong>.</p><p>{e(detail)}</p></div>
<p>Submit the notebook of this assignment (a <code>.ipynb</code> file saved from Jupyter) and ask your
instructor to grade it again.</p></body></html>
"""
    atomic_write(Path(path), page)


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

    def get(self, student_id: str, key: str) -> dict | None:
        try:
            result = json.loads(self._path(student_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if result.get("cache_key") != key or result.get("student_id") != student_id:
            return None
        if not Path(result.get("feedback", "")).exists():
            return None
        return result

    def put(self, result: dict) -> None:
        if result.get("status") == st.GRADER_ERROR:
            return  # never reuse a failure of the grader itself
        atomic_write(self._path(result["student_id"]), json.dumps(result, ensure_ascii=False))


# -- summary ------------------------------------------------------------------------------------

def summary(results: list[dict], max_score: float, seconds: float, jobs: int, reused: int,
            out: Path, assignment: str) -> str:
    lines = [f"Graded {len(results)} submission(s) of {assignment} in {seconds:.1f} s "
             f"({jobs} in parallel{f', {reused} reused from an earlier run' if reused else ''})", ""]
    counts = Counter(r["status"] for r in results)
    width = max([len("status")] + [len(s) for s in counts])
    lines.append(f"  {'status'.ljust(width)}  count")
    for status in st.SEVERITY[::-1] + sorted(set(counts) - set(st.SEVERITY)):
        if counts.get(status):
            lines.append(f"  {status.ljust(width)}  {counts[status]:5d}")
    scores = [float(r["score"]) for r in results]
    if scores:
        lines += ["", f"  score (of {number(max_score)})   count"]
        bins = 5
        top = max_score or 1.0
        edges = [top * i / bins for i in range(bins + 1)]
        histogram = Counter(min(int(score / top * bins), bins - 1) for score in scores)
        biggest = max(histogram.values())
        for i in range(bins):
            label = f"{number(edges[i])}–{number(edges[i + 1])}"
            bar = "█" * round(20 * histogram.get(i, 0) / biggest)
            lines.append(f"  {label.ljust(18)} {histogram.get(i, 0):5d}  {bar}")
        lines.append(f"  mean {statistics.mean(scores):.2f}, median {number(statistics.median(scores))}, "
                     f"min {number(min(scores))}, max {number(max(scores))}")
        manual = sum(1 for r in results if r.get("needs_manual_grade"))
        if manual:
            lines.append(f"  {manual} submission(s) have answers to grade by hand (see docs/instructors.md)")
    lines += ["", f"Grades: {out / 'grades.csv'}", f"Feedback: {out / 'feedback'}/<student_id>.html"]
    return "\n".join(lines)
