"""Command line of the instructor's grading tool.

    python -m autograde grade SUBMISSIONS --assignment NAME --out DIR [--shard I/N] [GRADING OPTIONS]
    python -m autograde merge SHARD_DIR... --out DIR [--course DIR]
    python -m autograde slurm SUBMISSIONS --assignment NAME --out DIR --shards N [SLURM OPTIONS] [GRADING OPTIONS]
    python -m autograde gradescope --assignment NAME --out autograder.zip [GRADING OPTIONS]

GRADING OPTIONS: [--course DIR] [--jobs N] [--timeout S] [--memory MB] [--force] [--kernel warm|cold]
[--isolation bwrap|container|none] [--lms NAME] [--due TIME] [--extensions CSV] [--roster CSV] [--lms-column HEADER]
[--lms-points P] [--similarity]

Exit codes: 0 when every submission got a row in grades.csv (a zero is a row), 1 when the tool
itself cannot run (no such assignment, unreadable SUBMISSIONS, a merge missing a shard, a Slurm
job that failed under --wait, ...), 2 for a usage error, 130 when interrupted.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from . import AutogradeError
from .options import add_grading_options, default_course_root
from .parts import Shard


GRADE_DESCRIPTION = ("Grade every submission in SUBMISSIONS (a folder or a .zip exported by a learning-management "
                     "system, or nbgrader's submitted/ folder). Writes DIR/grades.csv and DIR/feedback/<student_id>.html.")


def build_parser() -> argparse.ArgumentParser:
    from . import gradescope, shards, slurm

    parser = argparse.ArgumentParser(prog="python -m autograde",
                                     description="Grade a class's Jupyter notebooks with nbgrader, in parallel and safely.")
    commands = parser.add_subparsers(dest="command", required=True)
    grade = commands.add_parser("grade", help="grade every submission in a folder or .zip", description=GRADE_DESCRIPTION)
    grade.add_argument("submissions", type=Path, metavar="SUBMISSIONS")
    grade.add_argument("--out", required=True, type=Path, metavar="DIR", help="where grades and feedback go")
    add_grading_options(grade)
    grade.add_argument("--shard", type=Shard.parse, default=None, metavar="I/N",
                       help="grade only the I-th of N parts of the class (0 <= I < N), for `merge` to join; a "
                            "student's part depends on the student id alone")
    grade.add_argument("--no-progress", action="store_true", help="no progress bar")
    grade.add_argument("--keep-work", action="store_true", help="keep each submission's work folder (debugging)")
    grade.set_defaults(handler=_grade)
    for module in (shards, slurm, gradescope):
        module.add_parser(commands)
    return parser


def main(argv=None) -> int:
    # The summary's time counts from the process's start: imports and the warm kernel server's start-up included.
    import psutil

    started = time.monotonic() - max(0.0, time.time() - psutil.Process().create_time())
    # nbformat's validator imports jsonschema, which builds about 40 grammars for the optional "iri" string format
    # when rfc3987_syntax is installed (about 4 s here, before grading can start). Notebook schemas use no such
    # format; without the module jsonschema simply has no "iri" checker.
    sys.modules.setdefault("rfc3987_syntax", None)
    args = build_parser().parse_args(argv)
    args.started = started
    # nbgrader runs its tools from PATH (alembic, to upgrade a gradebook): use this environment's.
    bin_dir = os.path.dirname(sys.executable)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    try:
        return args.handler(args)
    except (AutogradeError, FileNotFoundError, NotADirectoryError, ValueError, zipfile.BadZipFile,
            PermissionError) as exc:
        print(f"autograde: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("autograde: interrupted", file=sys.stderr)
        return 130


def _grade(args) -> int:
    if not args.submissions.exists():
        raise AutogradeError(f"{args.submissions} does not exist")
    from .sandbox import linux
    from .sandbox.container import choose, keep_from_kernels
    from .sandbox.zygote import WarmKernelServer

    isolation, problem = choose(args.isolation)
    if problem:
        raise AutogradeError(f"cannot grade safely: {problem}")
    linux.become_subreaper()  # whatever a grading process leaves behind lands here, and is killed
    course = args.course or default_course_root(args.assignment)
    work = args.out.resolve() / ".autograde"
    work.mkdir(parents=True, exist_ok=True)
    run_root = tempfile.mkdtemp(prefix="autograde-", dir="/tmp")  # short: Unix socket paths are limited
    if isolation == "container":  # kernels run as users of their own, which only permissions keep out
        keep_from_kernels([course, args.out, args.submissions])
        os.chmod(run_root, 0o711)  # they pass through to their own job's folder, and cannot list the others
    source = course / "source" / args.assignment
    # Started before nbgrader is imported: the server imports torch meanwhile.
    server = WarmKernelServer.for_assignment(source, run_root, work, isolate=isolation == "bwrap") \
        if args.kernel == "warm" and source.is_dir() else None
    try:
        from .run import Options, grade

        grade(Options(submissions=args.submissions, assignment=args.assignment, out=args.out, course=course,
                      run_root=run_root, server=server, jobs=args.jobs, timeout=args.timeout,
                      memory_mb=args.memory, force=args.force, progress=not args.no_progress,
                      keep_work=args.keep_work, isolation=isolation, lms=args.lms, due=args.due,
                      lms_column=args.lms_column, lms_points=args.lms_points, started=args.started,
                      similarity=args.similarity, shard=args.shard, extensions=args.extensions,
                      roster=args.roster))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(run_root, ignore_errors=True)
    return 0
