"""Grading in shards on Slurm: 32 copies of the reference solution as 1, 2 and 4 shards of an array job, then the
merge job, on a one-node Slurm cluster started on this machine (tests/slurm_cluster.py), and what that says about
10,000 submissions on a real cluster.

Each configuration runs ``python -m autograde slurm ... --shards N --wait`` (isolation on, warm kernels) and is
timed from submission to the merge's end. The grading logs give each shard's own time and the merge's; a shard's
time is fitted as start-up + submissions x cost per submission / its cores, and the estimate uses that fit.
"""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from resnet_course.cores import available_cores

from .grading import ASSIGNMENT, REPO, reference_submission

sys.path.insert(0, str(REPO / "tests"))
import slurm_cluster  # noqa: E402 - the tests' one-node cluster, shared with them

COPIES = int(os.environ.get("BENCH_SHARD_COPIES", "32"))
SHARD_COUNTS = (1, 2, 4)
CLASS_SIZE = 10_000
NODE_CORES = 32  # the cores of one node of the cluster the estimate is for (a common HPC node)
_SECONDS = re.compile(r"^(?:Graded (\d+) submission\(s\)|Merged \d+ shard\(s\)).* in ([\d.]+) s", re.MULTILINE)


@dataclass
class Configuration:
    shards: int
    cpus_per_task: int
    wall: float  # submission of the array to the merge's end
    shard_seconds: list[tuple[int, float]]  # per shard: (submissions, seconds of its grading run)
    merge_seconds: float
    rows: int


def _logged(path: Path) -> tuple[int, float]:
    match = _SECONDS.search(path.read_text(encoding="utf-8", errors="replace"))
    if not match:
        raise RuntimeError(f"no summary in {path}:\n{path.read_text(errors='replace')[-2000:]}")
    return int(match.group(1) or 0), float(match.group(2))


def _run(folder: Path, out: Path, shards: int, cpus: int, env: dict) -> Configuration:
    command = [sys.executable, "-m", "autograde", "slurm", str(folder), "--assignment", ASSIGNMENT, "--out", str(out),
               "--course", str(REPO), "--shards", str(shards), "--cpus-per-task", str(cpus), "--wait"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"autograde slurm failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    logs = out / "slurm" / "logs"
    rows = len((out / "grades.csv").read_text(encoding="utf-8").splitlines()) - 1
    return Configuration(shards, cpus, wall, [_logged(log) for log in sorted(logs.glob("grade-*.log"))],
                         _logged(next(logs.glob("merge-*.log")))[1], rows)


def _fit(configurations: list[Configuration]) -> tuple[float, float]:
    """Least squares of shard seconds = start-up + submissions / cores x cost: (start-up s, core-s per submission)."""
    points = [(count / c.cpus_per_task, seconds) for c in configurations for count, seconds in c.shard_seconds]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    slope = statistics.covariance(xs, ys) / statistics.variance(xs)
    return statistics.mean(ys) - slope * statistics.mean(xs), slope


def run() -> str:
    problem = slurm_cluster.unavailable()
    if problem:
        return f"## Grading in shards on Slurm\n\nNot measured on this machine: {problem}.\n"
    cores = available_cores()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    notebook = next((REPO / "source" / ASSIGNMENT).glob("*.ipynb")).name
    submission = reference_submission(REPO, ASSIGNMENT, notebook)
    with tempfile.TemporaryDirectory(prefix="bench-shards-", dir="/tmp") as tmp:
        tmp = Path(tmp)
        folder = tmp / "class"
        folder.mkdir()
        for i in range(COPIES):
            nbformat.write(submission, folder / f"s{i:02d}.ipynb")
        with slurm_cluster.one_node_cluster(tmp / "cluster") as cluster_env:
            configurations = [_run(folder, tmp / f"out-{n}", n, max(1, cores // n), dict(env, **cluster_env))
                              for n in SHARD_COUNTS]
        merge_cost = _merge_cost(tmp / f"out-{SHARD_COUNTS[-1]}", SHARD_COUNTS[-1], env)
    return _report(configurations, merge_cost, cores)


def _merge_cost(out: Path, count: int, env: dict) -> tuple[float, float]:
    """A merge's fixed cost and its cost per student (s): one shard's students merged alone, then all of them."""
    points = []
    for shards in ([out / "shards" / "0"], [out / "shards" / str(i) for i in range(count)]):
        target = out.parent / f"merge-{len(shards)}"
        done = subprocess.run([sys.executable, "-m", "autograde", "merge", *map(str, shards), "--out", str(target),
                               "--course", str(REPO), "--partial"], cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"autograde merge failed:\n{done.stderr[-2000:]}")
        match = re.search(r"Merged \d+ shard\(s\) of .*: (\d+) student\(s\), in ([\d.]+) s", done.stdout)
        points.append((int(match.group(1)), float(match.group(2))))
    (few, few_seconds), (everyone, all_seconds) = points
    per_student = max(0.0, (all_seconds - few_seconds) / (everyone - few))
    return all_seconds - everyone * per_student, per_student


def _report(configurations: list[Configuration], merge_cost: tuple[float, float], cores: int) -> str:
    lines = ["## Grading in shards on Slurm", "",
             f"{COPIES} copies of the reference solution of `{ASSIGNMENT}` graded by `python -m autograde slurm` on a "
             f"one-node Slurm cluster on this machine ({cores} cores; slurm-wlm and munge from Debian), isolation on. "
             "Wall time runs from submitting the array job to the end of the merge job. Throughput is submissions "
             "per core-second of the node.", "",
             "| shards | CPUs per task | wall time | submissions per core-second | slowest shard | merge | rows |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for c in configurations:
        lines.append(f"| {c.shards} | {c.cpus_per_task} | {c.wall:.1f} s | {COPIES / (c.wall * cores):.3f} "
                     f"| {max(s for _, s in c.shard_seconds):.1f} s | {c.merge_seconds:.1f} s | {c.rows} |")
    lines += [""] + _estimate(configurations, merge_cost)
    return "\n".join(lines)


def _estimate(configurations: list[Configuration], merge_cost: tuple[float, float]) -> list[str]:
    startup, per_submission = _fit(configurations)
    merge_fixed, merge_per_student = merge_cost
    merge = merge_fixed + CLASS_SIZE * merge_per_student
    core_hours = CLASS_SIZE * per_submission / 3600
    lines = [f"Fitted over every shard above: a shard's grading run costs **{startup:.1f} s of start-up** (template, "
             f"warm kernel server, torch) plus **{per_submission:.2f} core-seconds per submission**; the merge costs "
             f"{merge_fixed:.1f} s plus {merge_per_student:.3f} s per student, on one core (one shard merged alone, "
             "then all of them).", "",
             f"Estimate for {CLASS_SIZE:,} submissions on nodes of {NODE_CORES} cores (a common HPC node) as fast as this "
             f"machine's, one shard per "
             f"node with `--cpus-per-task {NODE_CORES}`: {core_hours:.1f} core-hours of grading whatever the number "
             "of nodes.", "",
             "| nodes | shards | grading wall time | merge | total wall time |", "|---:|---:|---:|---:|---:|"]
    for nodes in (1, 4, 16, 64):
        grading = startup + CLASS_SIZE * per_submission / (nodes * NODE_CORES)
        lines.append(f"| {nodes} | {nodes} | {grading / 60:.1f} min | {merge / 60:.1f} min "
                     f"| {(grading + merge) / 60:.1f} min |")
    lines += ["", _what_dominates(startup, per_submission, merge)]
    return lines


def _what_dominates(startup: float, per_submission: float, merge: float) -> str:
    grading_wall = [(nodes, startup + CLASS_SIZE * per_submission / (nodes * NODE_CORES)) for nodes in range(1, 1025)]
    crossing = next((nodes for nodes, wall in grading_wall if wall < merge), None)
    where = (f"from {crossing} node(s) on the merge, which runs on one core, takes longer than the grading itself"
             if crossing else "up to 1,024 nodes the grading itself takes longer than the merge")
    return (f"What dominates at that scale: {where}; the shards' start-up ({startup:.0f} s) is paid once per node, "
            "in parallel. Every notebook, feedback page and log crosses the shared file system twice (a shard writes "
            "it, the merge copies it), and each node reads the Python environment from it once per shard (the warm "
            "kernel server imports torch once).")
