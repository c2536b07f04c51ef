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
from datetime import datetime
from pathlib import Path

from . import AutogradeError
from .lms import LAYOUTS


def _positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def _when(text: str) -> datetime:
    """A due date: ISO 8601 or "2026-03-01 23:59"; without a zone, this machine's local time."""
    import dateutil.parser

    try:
        return dateutil.parser.parse(text).astimezone()
    except (ValueError, OverflowError) as exc:
        raise argparse.ArgumentTypeError(f"not a date and time: {text} ({exc})") from None


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
    grade.add_argument("--shard", type=shards.Shard.parse, default=None, metavar="I/N",
                       help="grade only the I-th of N parts of the class (0 <= I < N), for `merge` to join; a "
                            "student's part depends on the student id alone")
    grade.add_argument("--no-progress", action="store_true", help="no progress bar")
    grade.add_argument("--keep-work", action="store_true", help="keep each submission's work folder (debugging)")
    grade.set_defaults(handler=_grade)
    for module in (shards, slurm, gradescope):
        module.add_parser(commands)
    return parser


# The options of `grade` that say how to grade (not what, nor where): the commands that run `grade` for you
# (slurm, gradescope) take them too and pass them on with grading_argv().
GRADING_OPTIONS = ("assignment", "course", "jobs", "timeout", "memory", "force", "kernel", "isolation", "lms", "due",
                   "lms_column", "lms_points", "similarity", "extensions", "roster")


def add_grading_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--assignment", required=True, metavar="NAME", help="the assignment in source/NAME")
    parser.add_argument("--course", type=Path, default=None, metavar="DIR",
                        help="the nbgrader course folder (default: here, or this repository)")
    parser.add_argument("--jobs", type=_positive(int), default=0, metavar="N",
                        help="submissions graded in parallel (default: one per core)")
    parser.add_argument("--timeout", type=_positive(int), default=None, metavar="S",
                        help="seconds per cell (default: the course's Execute.timeout, else 60)")
    parser.add_argument("--memory", type=_positive(int), default=2048, metavar="MB",
                        help="memory cap per submission, all its processes together (default: 2048, like mybinder.org)")
    parser.add_argument("--force", action="store_true", help="grade again even what an earlier run already graded")
    parser.add_argument("--kernel", choices=["warm", "cold"],
                        default="warm" if sys.platform.startswith("linux") else "cold",
                        help="warm: fork kernels from a process that imported torch once (default); "
                             "cold: start every kernel from scratch, as nbgrader does")
    parser.add_argument("--isolation", choices=["bwrap", "container", "none"], default="bwrap",
                        help="bwrap: the operating system isolates every notebook from your files, the network and "
                             "each other (default; needs Linux and bubblewrap; in a container that refuses "
                             "bubblewrap's namespaces, a grader running as root takes container mode by itself); "
                             "container: each notebook runs as a user of its own (needs root); none: notebooks run "
                             "with your own access (only for code you trust); the summary and every row's notes "
                             "say when it was not bwrap")
    parser.add_argument("--lms", choices=["auto", *LAYOUTS, "plain"], default="auto",
                        help="the LMS the download comes from (default: recognised by its file names); plain: the "
                             "file or folder name is the student id")
    parser.add_argument("--due", type=_when, default=None, metavar="TIME",
                        help="the due date, for nbgrader's late-penalty plugin (default: the assignment's due date in "
                             "the course's gradebook); without a time zone, local time")
    parser.add_argument("--lms-column", default=None, metavar="HEADER",
                        help="the assignment's column in the LMS import files, as the LMS's own export writes it, "
                             "e.g. 'Residual blocks (12345)' for Canvas (default: the assignment's name)")
    parser.add_argument("--lms-points", type=_positive(float), default=None, metavar="P",
                        help="the points the assignment is out of in the LMS; the import files scale scores to it "
                             "(default: the assignment's own points)")
    parser.add_argument("--extensions", type=Path, default=None, metavar="CSV",
                        help="students' own due dates: a CSV of student ids and due dates (docs/instructors.md, "
                             "\"Late work\"); needs the assignment's due date")
    parser.add_argument("--roster", type=Path, default=None, metavar="CSV",
                        help="the class list (a CSV with a student_id column, Canvas's gradebook export or Moodle's "
                             "grading worksheet): every student on it gets a row, 'no submission' and 0 if they "
                             "handed nothing in; later runs into --out remember it")
    parser.add_argument("--similarity", action="store_true",
                        help="also write similarity.csv and similarity.html: pairs of submissions far more alike than "
                             "the class's other pairs, side by side for a person to look at (grades are never changed)")


def grading_argv(args: argparse.Namespace) -> list[str]:
    """The grading options in *args* as command-line words for `grade`, absolute paths, defaults left out."""
    defaults = vars(build_parser().parse_args(["grade", "-", "--out", "-", "--assignment", "-"]))
    words = []
    for name in GRADING_OPTIONS:
        value = getattr(args, name)
        if value is None or (value == defaults[name] and name != "assignment"):
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            words.append(flag)
        else:
            text = value.isoformat() if isinstance(value, datetime) else \
                str(value.resolve()) if isinstance(value, Path) else str(value)
            words += [flag, text]
    return words


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


def default_course_root(assignment: str) -> Path:
    """The course folder: the current folder if it has the assignment, else this repository."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (candidate / "source" / assignment).is_dir():
            return candidate
    return Path.cwd()
