"""Grade a class on a Slurm cluster: ``python -m autograde slurm``.

It writes two batch scripts into ``DIR/slurm/`` and submits them:

* ``grade.sbatch``, an array job with one task per shard: task I runs ``grade --shard I/N --out DIR/shards/I``
  (see :mod:`autograde.shards`) with the CPUs, memory and time each task asked for;
* ``merge.sbatch``, submitted with ``--dependency=afterok:<the array>``, so that it starts only once every task
  succeeded; it runs ``merge DIR/shards/0 ... --out DIR``, which writes what one unsharded run would have.

The scripts are plain, commented shell that an instructor can read, edit and submit again by hand (for instance
one failed shard: ``sbatch --array=K DIR/slurm/grade.sbatch``, then ``sbatch DIR/slurm/merge.sbatch``).
The jobs run this machine's Python (sys.executable) and this checkout of the grader on absolute paths, so the
submissions, --out, the course and the Python environment must be on a file system every node shares.

``--wait`` follows the merge job until it ends. A merge whose dependency can never be met (a task failed) stays
pending for ever with the reason DependencyNeverSatisfied, unless the cluster cancels such jobs: either way the
command cancels it, names the shards that failed and their students, and exits 1.
"""
from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import AutogradeError
from .options import add_grading_options, default_course_root, grading_argv, positive
from .parts import MANIFEST
from .shards import check_shards

POLL_SECONDS = 3.0  # squeue/scontrol are cheap; a merge takes far longer than this
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
         "DEADLINE", "REVOKED", "SPECIAL_EXIT"}


@dataclass(frozen=True)
class Resources:
    """What each array task asks Slurm for, and site options for both jobs."""

    cpus_per_task: int
    mem_per_task_mb: int
    time: str | None  # Slurm's own formats ("HH:MM:SS", "D-HH", ...); None: the partition's default
    partition: str | None
    sbatch_options: tuple[str, ...] = ()  # e.g. --account=cs101, written as #SBATCH lines into both scripts


@dataclass(frozen=True)
class Plan:
    """One class graded on the cluster: everything the two scripts need, absolute."""

    python: str
    package_root: Path  # the folder holding this autograde package: the jobs import this very code
    submissions: Path
    out: Path
    course: Path
    assignment: str
    shards: int
    grading: tuple[str, ...]  # grading options for `grade`, as words (--jobs comes from Slurm)
    similarity: bool  # over the whole class, so in the merge
    resources: Resources

    @property
    def folder(self) -> Path:
        return self.out / "slurm"

    def shard_dir(self, index: int | str) -> Path:
        return self.out / "shards" / str(index)


# -- command line --------------------------------------------------------------------------------------------

def add_parser(commands) -> None:

    slurm = commands.add_parser(
        "slurm", help="grade on a Slurm cluster: one array task per shard, then a merge",
        description="Grade SUBMISSIONS on a Slurm cluster: writes DIR/slurm/grade.sbatch (an array job, one shard "
                    "of the class per task) and DIR/slurm/merge.sbatch (joins the shards into DIR once every task "
                    "succeeded), and submits both. SUBMISSIONS, DIR, the course and this Python environment must "
                    "be on a file system every node of the cluster shares: the jobs use their absolute paths.")
    slurm.add_argument("submissions", type=Path, metavar="SUBMISSIONS")
    slurm.add_argument("--out", required=True, type=Path, metavar="DIR", help="where grades and feedback go (shared)")
    slurm.add_argument("--shards", required=True, type=positive(int), metavar="N",
                       help="parts of the class, one array task each")
    slurm.add_argument("--cpus-per-task", type=positive(int), default=None, metavar="C",
                       help="CPUs per task, and submissions graded at once in it (default: --jobs, else 2)")
    slurm.add_argument("--mem-per-task", type=positive(int), default=None, metavar="MB",
                       help="memory per task (default: C times --memory, plus 1024 for the warm kernel server)")
    slurm.add_argument("--time", default=None, metavar="HH:MM:SS", help="time limit per task (default: the "
                                                                       "partition's)")
    slurm.add_argument("--partition", default=None, metavar="P", help="the Slurm partition (default: the cluster's)")
    slurm.add_argument("--sbatch-option", action="append", default=[], metavar="OPT", dest="sbatch_options",
                       help="another sbatch option for both jobs, e.g. --sbatch-option=--account=cs101 (repeatable)")
    slurm.add_argument("--dry-run", action="store_true", help="write the scripts and print the sbatch commands only")
    slurm.add_argument("--wait", action="store_true",
                       help="wait for the merge; exit 0 only if it wrote DIR/grades.csv, else name the failed shards")
    add_grading_options(slurm)
    slurm.set_defaults(handler=_slurm_command)


def _slurm_command(args) -> int:
    plan = plan_from_args(args)
    grade_path, merge_path = write_scripts(plan)
    if args.dry_run:
        print(f"# Wrote {grade_path} and {merge_path}. To submit them:")
        print(submit_commands(grade_path, merge_path))
        return 0
    submitted = time.time()
    array_id = sbatch([str(grade_path)])
    try:
        merge_id = sbatch([f"--dependency=afterok:{array_id}", str(merge_path)])
    except AutogradeError as exc:  # the array runs anyway: say how to finish by hand
        raise AutogradeError(f"{exc}\nThe grading array job {array_id} was submitted; submit the merge by hand: "
                             f"sbatch --dependency=afterok:{array_id} {shlex.quote(str(merge_path))}") from None
    print(f"Submitted the grading array job {array_id} ({plan.shards} tasks) and the merge job {merge_id}.\n"
          f"Logs: {plan.folder / 'logs'}; results: {plan.out}")
    if not args.wait:
        print(f"If a task fails the merge never starts: `scancel {merge_id}`, grade that shard again (see "
              f"docs/instructors.md) and submit {merge_path} once more.")
        return 0
    return wait_for_merge(plan, array_id, merge_id, submitted)


def plan_from_args(args) -> Plan:
    from . import __file__ as package_file

    if not args.submissions.exists():
        raise AutogradeError(f"{args.submissions} does not exist")
    course = (args.course or default_course_root(args.assignment)).resolve()
    # --jobs is the task's CPU count, read from Slurm in the job; --similarity only makes sense over the class;
    # --course is always written out, so that the scripts do not depend on the folder they are submitted from.
    shard_args = argparse.Namespace(**{**vars(args), "jobs": 0, "similarity": False, "course": course})
    cpus = args.cpus_per_task or args.jobs or 2
    resources = Resources(cpus_per_task=cpus, mem_per_task_mb=args.mem_per_task or cpus * args.memory + 1024,
                          time=args.time, partition=args.partition, sbatch_options=tuple(args.sbatch_options))
    for option in resources.sbatch_options:
        if not option.startswith("-") or "\n" in option:
            raise AutogradeError(f"--sbatch-option {option!r}: expected one sbatch option such as --account=cs101")
    return Plan(python=sys.executable, package_root=Path(package_file).resolve().parent.parent,
                submissions=args.submissions.resolve(), out=args.out.resolve(), course=course,
                assignment=args.assignment, shards=args.shards, grading=tuple(grading_argv(shard_args)),
                similarity=args.similarity, resources=resources)


# -- the scripts -------------------------------------------------------------------------------------------------

def _directive(option: str, value: object) -> str:
    """An #SBATCH line. Slurm reads these itself (no shell): a value in double quotes may hold spaces, and a
    backslash escapes the next character."""
    text = str(value)
    if "\n" in text:
        raise AutogradeError(f"{option}: a line break cannot go into an #SBATCH line ({text!r})")
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'#SBATCH {option}="{escaped}"'


def _log_pattern(folder: Path, name: str) -> str:
    """A log path for --output: '%' starts Slurm's replacement symbols (%A the array job, %a the task), so a
    '%' of the path itself is doubled; a backslash would switch the symbols off."""
    if "\\" in str(folder):
        raise AutogradeError(f"{folder}: Slurm cannot write logs to a path with a backslash; choose another --out")
    return str(folder).replace("%", "%%") + "/" + name


def _site_directives(plan: Plan) -> list[str]:
    lines = [_directive("--partition", plan.resources.partition)] if plan.resources.partition else []
    return lines + [f"#SBATCH {option}" for option in plan.resources.sbatch_options]


def _environment(plan: Plan) -> list[str]:
    # Jobs usually inherit the submitting shell's environment, but a site (or SBATCH_EXPORT=NONE) may not: say
    # what grading needs. nbgrader runs `alembic` from PATH; PYTHONPATH makes the jobs import this checkout.
    bin_dir = shlex.quote(str(Path(plan.python).parent))
    return [f'export PATH={bin_dir}:"$PATH"',
            f'export PYTHONPATH={shlex.quote(str(plan.package_root))}"${{PYTHONPATH:+:$PYTHONPATH}}"']


def grade_script(plan: Plan) -> str:
    res = plan.resources
    command = [plan.python, "-m", "autograde", "grade", str(plan.submissions), "--out"]
    words = " ".join(map(shlex.quote, command)) + " " + shlex.quote(str(plan.out / "shards")) + '/"$task" \\\n' \
        + f'    --shard "$task/{plan.shards}" --jobs "${{SLURM_CPUS_PER_TASK:-1}}" --no-progress \\\n    ' \
        + " ".join(map(shlex.quote, plan.grading))
    lines = [
        "#!/bin/bash",
        f"# Grades one part of the class of {plan.assignment!r} per array task: task I grades shard I/{plan.shards}",
        f"# into {plan.shard_dir('I')}. Written by `python -m autograde slurm` on {datetime.now():%Y-%m-%d %H:%M}.",
        "# Submit again by hand: `sbatch grade.sbatch` (every part) or `sbatch --array=K grade.sbatch` (part K),",
        "# then `sbatch merge.sbatch` once every part has finished.",
        "#SBATCH --job-name=autograde-grade",
        f"#SBATCH --array=0-{plan.shards - 1}",
        "#SBATCH --ntasks=1",
        f"#SBATCH --cpus-per-task={res.cpus_per_task}",
        f"#SBATCH --mem={res.mem_per_task_mb}",  # megabytes; each submission is also capped by --memory
        *([_directive("--time", res.time)] if res.time else []),
        _directive("--output", _log_pattern(plan.folder / "logs", "grade-%A_%a.log")),
        *_site_directives(plan),
        "",
        "set -euo pipefail",
        'task="${SLURM_ARRAY_TASK_ID:?submit this script with sbatch: it is an array job, one task per shard}"',
        *_environment(plan),
        "# --jobs: grade as many submissions at once as this task has CPUs.",
        f"exec {words}",
        "",
    ]
    return "\n".join(lines)


def merge_script(plan: Plan) -> str:
    # The shard folders are named one by one (not shards/*): folders left by an earlier run with another
    # --shards would otherwise be merged in, and a missing one is then named by the merge.
    shard_words = " ".join(shlex.quote(str(plan.shard_dir(i))) for i in range(plan.shards))
    command = [plan.python, "-m", "autograde", "merge"]
    tail = ["--out", str(plan.out), "--course", str(plan.course)] + (["--similarity"] if plan.similarity else [])
    lines = [
        "#!/bin/bash",
        f"# Joins the {plan.shards} shards of {plan.assignment!r} into {plan.out}: grades.csv, feedback/, nbgrader/",
        "# and the LMS import files, as one unsharded run writes them. `python -m autograde slurm` submits it with",
        "# --dependency=afterok:<the grading array job>; by hand, submit it once every shard has finished.",
        "#SBATCH --job-name=autograde-merge",
        "#SBATCH --ntasks=1",
        "#SBATCH --cpus-per-task=1",
        f"#SBATCH --mem={max(2048, plan.resources.mem_per_task_mb // plan.resources.cpus_per_task)}",
        *([_directive("--time", plan.resources.time)] if plan.resources.time else []),
        _directive("--output", _log_pattern(plan.folder / "logs", "merge-%j.log")),
        *_site_directives(plan),
        "",
        "set -euo pipefail",
        *_environment(plan),
        "exec " + " ".join(map(shlex.quote, command)) + " \\\n    " + shard_words + " \\\n    "
        + " ".join(map(shlex.quote, tail)),
        "",
    ]
    return "\n".join(lines)


def write_scripts(plan: Plan) -> tuple[Path, Path]:
    (plan.folder / "logs").mkdir(parents=True, exist_ok=True)
    (plan.out / "shards").mkdir(parents=True, exist_ok=True)
    paths = plan.folder / "grade.sbatch", plan.folder / "merge.sbatch"
    for path, text in zip(paths, (grade_script(plan), merge_script(plan))):
        path.write_text(text, encoding="utf-8")
        path.chmod(0o755)
    return paths


def submit_commands(grade_path: Path, merge_path: Path) -> str:
    """The two submissions as shell lines that work by hand: the merge waits for the whole array."""
    return (f"array=$(sbatch --parsable {shlex.quote(str(grade_path))})\n"
            f"sbatch --parsable --dependency=afterok:\"${{array%%;*}}\" {shlex.quote(str(merge_path))}")


def sbatch(words: list[str]) -> str:
    """Submit; the job id. --parsable prints "id" or "id;cluster"."""
    done = _slurm_tool(["sbatch", "--parsable", *words])
    return done.stdout.strip().split(";")[0]


def _slurm_tool(command: list[str]) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError:
        raise AutogradeError(f"{command[0]} not found: run this on a machine that can submit Slurm jobs") from None
    if done.returncode != 0:
        raise AutogradeError(f"{shlex.join(command)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


# -- waiting -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class JobState:
    """One record of `scontrol show job`: a job, or one task of an array (or a range of its pending tasks)."""

    job_id: str
    task: str | None  # ArrayTaskId: "3", or "2-5" for tasks not started yet; None for a plain job
    state: str  # PENDING, RUNNING, COMPLETED, FAILED, ...
    reason: str  # why it is pending, e.g. DependencyNeverSatisfied
    exit_code: str  # "status:signal"


def job_states(job_id: str) -> list[JobState] | None:
    """What Slurm knows of a job now: [] once it has forgotten the job (some minutes after its end, MinJobAge),
    None when the controller could not be asked (asked again at the next poll)."""
    done = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True)
    if done.returncode != 0:
        return [] if "Invalid job id" in done.stderr else None
    records = []
    for line in done.stdout.splitlines():
        # Only these fields: values such as WorkDir may hold spaces, these never do.
        fields = dict(re.findall(r"(?:^|\s)(JobId|ArrayTaskId|JobState|Reason|ExitCode)=(\S*)", line))
        if "JobState" in fields:
            records.append(JobState(fields.get("JobId", job_id), fields.get("ArrayTaskId"), fields["JobState"],
                                    fields.get("Reason", ""), fields.get("ExitCode", "")))
    return records


def wait_for_merge(plan: Plan, array_id: str, merge_id: str, submitted: float) -> int:
    """Poll until the merge job ends: 0 if it wrote grades.csv, else 1 with the failed shards named."""
    print(f"Waiting for the merge job {merge_id} (Ctrl-C stops waiting, not the jobs)...", flush=True)
    merge = None
    while True:
        states = job_states(merge_id)
        if states is not None:
            merge = states[0] if states else None
            if merge is None or merge.state in ENDED:
                break
            if merge.state == "PENDING" and merge.reason == "DependencyNeverSatisfied":
                # A task of the array failed: the merge would wait for ever (unless the cluster kills such jobs).
                _slurm_tool(["scancel", merge_id])
                print(f"autograde slurm: a grading task failed, so the merge job {merge_id} could never start: "
                      "cancelled it.", file=sys.stderr)
                report_failed_shards(plan, array_id)
                return 1
        time.sleep(POLL_SECONDS)
    grades = plan.out / "grades.csv"
    # Slurm forgets a job some minutes after its end: then the fresh grades.csv is the evidence (with some
    # slack for a shared file system's clock).
    wrote = grades.is_file() and grades.stat().st_mtime >= submitted - 60
    if wrote and (merge is None or (merge.state == "COMPLETED" and merge.exit_code == "0:0")):
        print(f"Merged: {grades}")
        return 0
    what = f"ended {merge.state} (exit code {merge.exit_code})" if merge else "ended without writing grades.csv"
    print(f"autograde slurm: the merge job {merge_id} {what}; its log: {plan.folder / 'logs'}/merge-{merge_id}.log",
          file=sys.stderr)
    report_failed_shards(plan, array_id)
    return 1


def report_failed_shards(plan: Plan, array_id: str) -> None:
    """Name the array tasks that did not succeed, and the shards missing or unfinished with their students."""

    for task in job_states(array_id) or []:
        if task.state == "COMPLETED":
            continue
        log = plan.folder / "logs" / f"grade-{array_id}_{task.task}.log"
        print(f"autograde slurm: shard {task.task}/{plan.shards} (array task {array_id}_{task.task}): {task.state}"
              + (f", exit code {task.exit_code}; its log: {log}" if task.state in ENDED else ""), file=sys.stderr)
    present = [plan.shard_dir(i) for i in range(plan.shards) if (plan.shard_dir(i) / MANIFEST).is_file()]
    try:
        if present:
            check_shards(present)
    except AutogradeError as exc:
        print(f"autograde slurm: {exc}", file=sys.stderr)
    print(f"autograde slurm: grade a failed shard K again with `sbatch --array=K {plan.folder / 'grade.sbatch'}`, "
          f"then `sbatch {plan.folder / 'merge.sbatch'}` (tasks still running are left to finish).", file=sys.stderr)
