"""Grading a class: stock sequential ``nbgrader autograde`` against ``python -m autograde grade``.

Both grade the same copies of the reference solution (the release notebook with the source's answers
filled in), side by side in one run, each in a fresh folder:

* stock: ``nbgrader autograde`` in a temporary nbgrader course (``submitted/<id>/<assignment>/``);
* this tool, warm kernels (the default) and cold kernels (``--kernel cold``), one job per core.

Times are wall-clock; CPU is user+system of every process involved (kernels included), from
``RUSAGE_CHILDREN``. The tool's numbers include building its template course and writing feedback,
which stock autograde does not do.
"""
from __future__ import annotations

import copy
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from resnet_course.cores import available_cores

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENT = os.environ.get("BENCH_ASSIGNMENT", "residual_blocks")
COPIES = int(os.environ.get("BENCH_COPIES", "12"))
_MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)


def reference_submission(course: Path, assignment: str, notebook: str) -> nbformat.NotebookNode:
    """The release notebook with every answer cell filled in from the source (what a perfect student hands in)."""
    source = nbformat.read(course / "source" / assignment / notebook, as_version=4)
    release_path = course / "release" / assignment / notebook
    release = nbformat.read(release_path, as_version=4) if release_path.exists() else copy.deepcopy(source)
    answers = {c.metadata["nbgrader"]["grade_id"]: _MARKERS.sub("", c.source) for c in source.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    for cell in release.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return release


def _measure(command, cwd, env) -> tuple[float, float, subprocess.CompletedProcess]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done


def _count_rows(grades: Path) -> tuple[int, set[str]]:
    import csv

    with open(grades, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return len(rows), {f"{r['score']}/{r['max_score']} {r['status']}" for r in rows}


def run(course: Path = REPO, assignment: str = ASSIGNMENT, copies: int = COPIES) -> str:
    python = sys.executable
    bin_dir = str(Path(python).parent)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ.get('PATH', '')}")
    nbgrader = shutil.which("nbgrader", path=env["PATH"]) or "nbgrader"
    notebook = next((course / "source" / assignment).glob("*.ipynb")).name
    submission = reference_submission(course, assignment, notebook)
    cores = available_cores()  # the grader's own count: its default --jobs
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        tmp = Path(tmp)
        # Stock nbgrader: its own course folder, no config file (so nothing of this repository's).
        stock = tmp / "stock"
        shutil.copytree(course / "source" / assignment, stock / "source" / assignment)
        flags = [f"--CourseDirectory.root={stock}", f"--CourseDirectory.db_url=sqlite:///{stock}/gradebook.db",
                 "--CourseDirectory.course_id=bench", "--Execute.timeout=60"]
        subprocess.run([nbgrader, "generate_assignment", assignment, "--force", *flags], cwd=stock, env=env,
                       check=True, capture_output=True)
        folder = tmp / "class"
        folder.mkdir()
        for i in range(copies):
            submitted = stock / "submitted" / f"s{i:02d}" / assignment
            submitted.mkdir(parents=True)
            nbformat.write(submission, submitted / notebook)
            nbformat.write(submission, folder / f"s{i:02d}.ipynb")
        stock_wall, stock_cpu, done = _measure([nbgrader, "autograde", assignment, "--force", *flags], stock, env)
        if done.returncode != 0:
            raise RuntimeError(f"stock nbgrader autograde failed:\n{done.stderr[-3000:]}")

        rows = []
        for label, extra in (("this tool, warm kernels", []), ("this tool, cold kernels", ["--kernel", "cold"])):
            out = tmp / f"out-{len(rows)}"
            wall, cpu, done = _measure([python, "-m", "autograde", "grade", str(folder), "--assignment", assignment,
                                        "--out", str(out), "--course", str(course), "--no-progress", *extra],
                                       REPO, env)
            if done.returncode != 0:
                raise RuntimeError(f"autograde failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
            count, outcomes = _count_rows(out / "grades.csv")
            rows.append((label, wall, cpu, count, outcomes))

    lines = ["## Grading a class", "",
             f"{copies} copies of the reference solution of `{assignment}`, graded side by side in one run "
             f"(`python -m benchmarks grading`, {cores} cores). CPU is user+system time of every process "
             "involved, kernels included.", "",
             "| grader | wall time | speed-up | CPU time | CPU per submission | result |",
             "|---|---:|---:|---:|---:|---|",
             f"| stock `nbgrader autograde` (sequential) | {stock_wall:.1f} s | 1.0× | {stock_cpu:.1f} s "
             f"| {stock_cpu / copies:.2f} s | {copies} graded |"]
    for label, wall, cpu, count, outcomes in rows:
        lines.append(f"| `python -m autograde grade` — {label}, {cores} jobs | {wall:.1f} s | "
                     f"{stock_wall / wall:.1f}× | {cpu:.1f} s | {cpu / copies:.2f} s | "
                     f"{count} rows: {', '.join(sorted(outcomes))} |")
    lines += ["", "The tool's times include building its private copy of the assignment's gradebook, writing the "
              "feedback pages and the tamper guard; warm kernels are forked from a process that imported torch "
              "once, so each submission skips the ~3 CPU-seconds of starting Python and importing torch."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
