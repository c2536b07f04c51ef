"""Grading a class: stock sequential ``nbgrader autograde`` against ``python -m autograde grade``, isolation on.

Both grade the same copies of the reference solution (the release notebook with the source's answers filled in),
side by side in one run, each in a fresh folder:

* stock: ``nbgrader autograde`` in a temporary nbgrader course with no configuration (stock Execute, no sandbox),
  on the same assignment with the same tests written the stock way: each test cell's hidden lines run the test's
  probe and its judge in the student's kernel (what this tool runs in the kernel and in its own process);
* this tool with its defaults (every kernel isolated by bubblewrap, warm kernels, one job per core), and with
  cold kernels (``--kernel cold``: every kernel a fresh bubblewrap sandbox and Python).

Times are wall-clock; CPU is user+system of every process involved, from ``RUSAGE_CHILDREN``, plus for this tool
each kernel's own CPU as its supervisor measured it (a kernel ends in a PID namespace of its own, and its time does
not reach the grading run's ``RUSAGE_CHILDREN``).
The tool's numbers include building its template course and writing feedback pages, which stock autograde does
not do. Where each submission's time goes is read from the tool's own job logs (``--keep-work``).
"""
from __future__ import annotations

import copy
import datetime
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook

from resnet_course.cores import available_cores

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENT = os.environ.get("BENCH_ASSIGNMENT", "residual_blocks")
COPIES = int(os.environ.get("BENCH_COPIES", "16"))
TARGET = 4.0  # the speed-up over stock nbgrader this tool aims for, with isolation on
_MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)
# Phases of one job, from the lines nbgrader logs: (name, the line that ends it).
PHASES = [("set-up and sanitizing", "Autograding "), ("kernel: start, the notebook, its tests", "Writing "),
          ("feedback page", "Writing "), ("scores, class course, clean-up", None)]


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


def _outcomes(grades: Path) -> tuple[int, set[str]]:
    import csv

    with open(grades, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return len(rows), {f"{r['score']}/{r['max_score']} {r['status']}" for r in rows}


# The hidden lines that make a judged test a stock one: probe and judge in the kernel (stock nbgrader copies the
# grading/ folder beside the notebook, where the kernel imports it).
IN_KERNEL_TEST = """
### BEGIN HIDDEN TESTS
import json as _json
import grading.judges as _judges
from autograde.judging import Observations as _Observations, decode as _decode
from autograde.probing import observe as _observe
_seen = _decode(_json.loads(_json.dumps(_observe(_judges.probes, {grade_id!r}, globals(), 12345))))
assert "stopped" not in _seen, _seen
_judges.{grade_id}(_Observations(_seen), _Observations(_seen), 12345)
### END HIDDEN TESTS"""


def _stock_source(course: Path, assignment: str, notebook: str, stock: Path) -> None:
    """The assignment for stock nbgrader: its judged tests as in-kernel tests (see IN_KERNEL_TEST)."""
    shutil.copytree(course / "source" / assignment, stock / "source" / assignment)
    path = stock / "source" / assignment / notebook
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        md = cell.metadata.get("nbgrader", {})
        if (stock / "source" / assignment / "grading").is_dir() and md.get("grade") and not md.get("solution") \
                and cell.cell_type == "code":
            cell.source += IN_KERNEL_TEST.format(grade_id=md["grade_id"])
    nbformat.write(nb, path)


def _stock(course: Path, assignment: str, notebook: str, submission, tmp: Path, env) -> tuple[float, float]:
    nbgrader = shutil.which("nbgrader", path=env["PATH"]) or "nbgrader"
    stock = tmp / "stock"
    _stock_source(course, assignment, notebook, stock)
    flags = [f"--CourseDirectory.root={stock}", f"--CourseDirectory.db_url=sqlite:///{stock}/gradebook.db",
             "--CourseDirectory.course_id=bench", "--Execute.timeout=60"]
    subprocess.run([nbgrader, "generate_assignment", assignment, "--force", *flags], cwd=stock, env=env,
                   check=True, capture_output=True)
    for i in range(COPIES):
        submitted = stock / "submitted" / f"s{i:02d}" / assignment
        submitted.mkdir(parents=True)
        nbformat.write(submission, submitted / notebook)
    wall, cpu, done = _measure([nbgrader, "autograde", assignment, "--force", *flags], stock, env)
    if done.returncode != 0:
        raise RuntimeError(f"stock nbgrader autograde failed:\n{done.stderr[-3000:]}")
    with Gradebook(f"sqlite:///{stock}/gradebook.db", "bench") as gb:
        scores = {s.student.id: s.score for s in gb.find_assignment(assignment).submissions}
    if len(set(scores.values())) != 1:  # every copy is the same: a difference would be a broken baseline
        raise RuntimeError(f"stock nbgrader scored the same submission differently: {scores}")
    return wall, cpu, next(iter(scores.values()))


def _phases(log: Path) -> list[float]:
    """Seconds of each logged phase of PHASES (all but the last) in one job's grading.log."""
    stamps = []
    for line in log.read_text(encoding="utf-8").splitlines():
        match = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO (.*)", line)
        if match:
            stamps.append((datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f"), match.group(2)))
    marks, at = [stamps[0][0]], 0
    for _, ends_with in PHASES[:-1]:
        at = next(i for i in range(at + 1, len(stamps)) if stamps[i][1].startswith(ends_with))
        marks.append(stamps[at][0])
    return [(b - a).total_seconds() for a, b in zip(marks, marks[1:])]


def _tool(folder: Path, course: Path, assignment: str, out: Path, extra: list[str], env):
    command = [sys.executable, "-m", "autograde", "grade", str(folder), "--assignment", assignment, "--out", str(out),
               "--course", str(course), "--no-progress", "--keep-work", *extra]
    wall, cpu, done = _measure(command, REPO, env)
    if done.returncode != 0:
        raise RuntimeError(f"autograde failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    kernels = sum(json.loads(path.read_text())["kernel_cpu_s"] or 0.0
                  for path in (out / ".autograde" / "cache").glob("*.json"))
    return wall, cpu + kernels, _outcomes(out / "grades.csv")


def run(course: Path = REPO, assignment: str = ASSIGNMENT) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    notebook = next((course / "source" / assignment).glob("*.ipynb")).name
    submission = reference_submission(course, assignment, notebook)
    cores = available_cores()  # the grader's own count: its default --jobs
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        tmp = Path(tmp)
        stock_wall, stock_cpu, stock_score = _stock(course, assignment, notebook, submission, tmp, env)
        folder = tmp / "class"
        folder.mkdir()
        for i in range(COPIES):
            nbformat.write(submission, folder / f"s{i:02d}.ipynb")
        rows, phases, whole = [], [], []
        for label, extra in (("isolated, warm kernels (the default)", []),
                             ("isolated, cold kernels (`--kernel cold`)", ["--kernel", "cold"])):
            out = tmp / f"out-{len(rows)}"
            rows.append((label, *_tool(folder, course, assignment, out, extra, env)))
            if not phases:
                phases = [_phases(log) for log in sorted((out / ".autograde" / "jobs").glob("*/grading.log"))]
                whole = [json.loads(path.read_text())["seconds"] for path in (out / ".autograde" / "cache").glob("*.json")]
                cells = statistics.median(_cell_seconds(path) for path in (out / "nbgrader" / "autograded").rglob("*.ipynb"))
    report = _report(stock_wall, stock_cpu, stock_score, rows, phases, whole, cores, assignment)
    return report + "\n\n" + _floor(cells, stock_wall, rows[0][1], cores)


def _cell_seconds(path: Path) -> float:
    """Seconds the kernel spent in the notebook's own cells: nbclient's execute_input to execute_reply of each."""
    total = 0.0
    for cell in nbformat.read(path, as_version=4).cells:
        timing = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            start, end = (datetime.datetime.fromisoformat(timing[k].replace("Z", "+00:00"))
                          for k in ("iopub.execute_input", "shell.execute_reply"))
            total += (end - start).total_seconds()
    return total


def _floor(cells: float, stock_wall: float, wall: float, cores: int) -> str:
    """What the notebook's own compute leaves to win: no grader runs a class faster than its cells on every core."""
    floor = COPIES * cells / cores
    return (f"The notebook's own cells (answers, the tests' probes, the training runs and plots it asks for) took "
            f"a median {cells:.2f} s per submission in the tool's warm kernels (nbclient's timestamps in the autograded "
            f"notebooks). With {cores} kernels at once no grader can grade the class in less than {floor:.1f} s, "
            f"so the best possible speed-up over stock nbgrader here is {stock_wall / floor:.1f}×; the tool's "
            f"time beyond that floor, start-up included, was {wall - floor:.1f} s.")


def _report(stock_wall, stock_cpu, stock_score, rows, phases, whole, cores, assignment) -> str:
    lines = ["## Grading a class", "",
             f"{COPIES} copies of the reference solution of `{assignment}`, graded side by side in one run "
             f"(`python -m benchmarks grading`, {cores} cores). CPU is user+system time of every process involved, "
             "kernels included. Stock nbgrader runs its kernels without any sandbox, and runs the same tests inside "
             "the student's kernel (each test's probe and judge in the test cell's hidden lines); this tool isolates "
             "every kernel with bubblewrap, runs the probes there and the judges in its own process, and its time "
             "includes the reference kernel that runs the probes on the source's answers once per run.", "",
             "| grader | wall time | speed-up | CPU time | CPU per submission | result |",
             "|---|---:|---:|---:|---:|---|",
             f"| stock `nbgrader autograde` (sequential) | {stock_wall:.1f} s | 1.0× | {stock_cpu:.1f} s "
             f"| {stock_cpu / COPIES:.2f} s | {COPIES} graded, {stock_score:g} each |"]
    for label, wall, cpu, (count, outcomes) in rows:
        lines.append(f"| `python -m autograde grade`, {label}, {cores} jobs | {wall:.1f} s | {stock_wall / wall:.1f}× "
                     f"| {cpu:.1f} s | {cpu / COPIES:.2f} s | {count} rows: {', '.join(sorted(outcomes))} |")
    speedup = stock_wall / rows[0][1]
    lines += ["", f"Speed-up with isolation on and the defaults: **{speedup:.1f}×** stock nbgrader "
                  f"(target {TARGET:.0f}×: {'met' if speedup >= TARGET else 'not met'})."]
    if phases:
        lines += ["", "Where one submission's time goes with the defaults (median over the jobs, wall seconds in "
                      "its worker; jobs run in parallel, so these add up to more than the run's time per submission):",
                  "", "| phase | median (s) |", "|---|---:|"]
        medians = [statistics.median(p[i] for p in phases) for i in range(len(PHASES) - 1)]
        medians.append(max(0.0, statistics.median(whole) - sum(medians)))
        lines += [f"| {name} | {median:.2f} |" for (name, _), median in zip(PHASES, medians)]
        lines.append(f"| whole job | {statistics.median(whole):.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
