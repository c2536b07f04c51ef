"""The options every command that grades shares (`grade`, `slurm`, `gradescope`), in one place: how they parse,
their defaults, and their command-line form for the `grade` runs that `slurm` and `gradescope` start."""
from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from .lms import LAYOUTS


def positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def when(text: str) -> datetime:
    """A due date: ISO 8601 or "2026-03-01 23:59"; without a zone, this machine's local time."""
    import dateutil.parser

    try:
        return dateutil.parser.parse(text).astimezone()
    except (ValueError, OverflowError) as exc:
        raise argparse.ArgumentTypeError(f"not a date and time: {text} ({exc})") from None


# The options of `grade` that say how to grade (not what, nor where): the commands that run `grade` for you
# (slurm, gradescope) take them too and pass them on with grading_argv().
GRADING_OPTIONS = ("assignment", "course", "jobs", "timeout", "memory", "force", "kernel", "isolation", "lms", "due",
                   "lms_column", "lms_points", "similarity", "extensions", "roster")


def add_grading_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--assignment", required=True, metavar="NAME", help="the assignment in source/NAME")
    parser.add_argument("--course", type=Path, default=None, metavar="DIR",
                        help="the nbgrader course folder (default: here, or this repository)")
    parser.add_argument("--jobs", type=positive(int), default=0, metavar="N",
                        help="submissions graded in parallel (default: one per core)")
    parser.add_argument("--timeout", type=positive(int), default=None, metavar="S",
                        help="seconds per cell (default: the course's Execute.timeout, else 60)")
    parser.add_argument("--memory", type=positive(int), default=2048, metavar="MB",
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
    parser.add_argument("--due", type=when, default=None, metavar="TIME",
                        help="the due date, for nbgrader's late-penalty plugin (default: the assignment's due date in "
                             "the course's gradebook); without a time zone, local time")
    parser.add_argument("--lms-column", default=None, metavar="HEADER",
                        help="the assignment's column in the LMS import files, as the LMS's own export writes it, "
                             "e.g. 'Residual blocks (12345)' for Canvas (default: the assignment's name)")
    parser.add_argument("--lms-points", type=positive(float), default=None, metavar="P",
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
    parser = argparse.ArgumentParser()
    add_grading_options(parser)
    defaults = vars(parser.parse_args(["--assignment", "-"]))
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


def default_course_root(assignment: str) -> Path:
    """The course folder: the current folder if it has the assignment, else this repository."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (candidate / "source" / assignment).is_dir():
            return candidate
    return Path.cwd()
