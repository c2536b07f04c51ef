"""Gradescope's autograder: ``python -m autograde gradescope --assignment NAME --out autograder.zip``.

Gradescope unzips the bundle into ``/autograder/source``, runs ``setup.sh`` once as root when it builds the
image, then for every submission runs ``/autograder/run_autograder`` with the student's upload in
``/autograder/submission`` and reads ``/autograder/results/results.json``. The bundle holds::

    setup.sh, run_autograder   Gradescope's two entry points
    settings.json              what `gradescope` was told at build time (BundleSettings)
    project/                   this grader: pyproject.toml, requirements-grader.lock, autograde/, resnet_course/
    course/                    the course: its nbgrader_config.py and source/<assignment>/ only
    template/                  the template course (gradebook with the hidden tests, release), built once here

Each submission is graded by ``grade`` itself (``python -m autograde grade``), in a --out whose template is the
bundled one, so that no submission pays for nbgrader's GenerateAssignment. The kernels are isolated as in
``grade``: they see neither course/ nor template/ (in container mode, where Gradescope's container refuses
bubblewrap's namespaces, they cannot read them: :mod:`autograde.sandbox.container`). Then :func:`report` turns the grader's Result and the autograded
notebook into Gradescope's results.json: one test per graded cell, with the error's name and message, never a
traceback or a source line (a test with hidden lines is shown only once the instructor publishes the grades).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

from . import status as st
from .options import add_grading_options, default_course_root, grading_argv
from .results import Result

if TYPE_CHECKING:  # nbgrader is imported where it is used: the command line starts without it (see cli.py)
    from .course import Template

SETTINGS = "settings.json"
STUDENT = "submission"  # the one student id inside the container: whoever uploaded, Gradescope knows
PROJECT = Path(__file__).resolve().parent.parent  # the grader's own project, bundled as it is here
# requirements-grader.lock (make lock): requirements.lock's pins for the runtime dependencies, without the test extra.
GRADER_LOCK = "requirements-grader.lock"
PROJECT_FILES = ("pyproject.toml", "README.md", "LICENSE", GRADER_LOCK, "autograde", "resnet_course")
# PyTorch's own index, the one that serves torch's CPU-only wheels: PyPI's Linux torch needs CUDA's libraries.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# What makes sense for one submission in a container; the rest of `grade`'s options are about a class, and --due
# needs a submission time the runtime does not pass on (Gradescope applies its own late-submission settings).
PASSED_ON = ("timeout", "memory", "kernel", "isolation")
# Bytecode and editor leftovers; the fingerprint of course/source must stay the template's (course.Course).
LEFTOVERS = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
MAX_OUTPUT = 2000  # characters of one test's output: a student's exception message can be any size
NOT_A_GRADE = "This is not a grade: your instructor can see what went wrong and will grade your submission again."


@dataclass
class BundleSettings:
    """``settings.json``: what the bundle was built with, for the runtime."""

    assignment: str
    grading: list[str]  # `grade` options chosen at build time (cli.grading_argv)
    isolation: str  # "bwrap" or "none"
    fingerprint: str  # the assignment's source, grader and nbgrader the template was built with

    @classmethod
    def read(cls, path: Path) -> "BundleSettings":
        return cls(**json.loads(path.read_text(encoding="utf-8")))


# -- build -------------------------------------------------------------------------------------------

def add_parser(commands) -> None:
    parser = commands.add_parser(
        "gradescope", help="build Gradescope's autograder .zip for an assignment",
        description="Write the autograder .zip to upload in Gradescope (Configure Autograder, Ubuntu 24.04 base "
                    "image). It grades each submission as `grade` does, with these grading options: --timeout, "
                    "--memory, --kernel and --isolation are passed on; the others have no effect (late "
                    "submissions: Gradescope's own settings). Build it again whenever the assignment's source "
                    "changes.")
    parser.add_argument("--out", required=True, type=Path, metavar="ZIP", help="the autograder bundle to write")
    add_grading_options(parser)
    parser.set_defaults(handler=_build_command)


def _build_command(args) -> int:
    from .course import Course, Template

    course = Course(args.course or default_course_root(args.assignment), args.assignment)
    with tempfile.TemporaryDirectory(prefix="autograde-gradescope-") as tmp:
        template = Template(course, Path(tmp) / "template").prepare()
        settings = BundleSettings(assignment=args.assignment, grading=_passed_on(args), isolation=args.isolation,
                                  fingerprint=template.fingerprint)
        write_bundle(args.out, course, template.root, settings)
        automatic, manual = _points(template)
    print(f"Wrote {args.out} ({args.out.stat().st_size // 1024} KiB) for {args.assignment}.\n"
          f"In Gradescope: a Programming Assignment, Configure Autograder, upload this .zip, base image Ubuntu "
          f"24.04. Autograder points: {automatic:g}."
          + (f" Written answers to grade by hand (add a manual question for each): {manual}." if manual else ""))
    return 0


def _passed_on(args) -> list[str]:
    """`grade` options for the runtime: those of PASSED_ON that differ from their defaults, and --assignment."""
    parser = argparse.ArgumentParser()
    add_grading_options(parser)
    defaults = vars(parser.parse_args(["--assignment", args.assignment]))
    chosen = {name: getattr(args, name) for name in PASSED_ON}
    return grading_argv(argparse.Namespace(**dict(defaults, **chosen)))


def _points(template: Template) -> tuple[float, str]:
    """The automatic points, and the written answers (graded by hand) with their points, in words."""
    manual = {cell.grade_id for cell in _graded_cells(template) if cell.manual}
    automatic = sum(cell.points for cell in template.cells if cell.grade_id not in manual)
    return automatic, ", ".join(f"{c.grade_id} ({_points_words(c.points)})" for c in template.cells
                                if c.grade_id in manual)


def _points_words(points: float) -> str:
    return f"{points:g} point" + ("" if points == 1 else "s")


def write_bundle(out: Path, course, template_root: Path, settings: BundleSettings) -> None:
    """The zip Gradescope unzips into /autograder/source: scripts, settings, project, course, template."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as bundle:
        _add_text(bundle, "setup.sh", setup_sh((PROJECT / GRADER_LOCK).read_text(encoding="utf-8")), executable=True)
        _add_text(bundle, "run_autograder", RUN_AUTOGRADER, executable=True)
        _add_text(bundle, SETTINGS, json.dumps(dataclasses.asdict(settings), indent=1))
        for name in PROJECT_FILES:
            _add_path(bundle, PROJECT / name, f"project/{name}")
        if (course.root / "nbgrader_config.py").exists():
            _add_path(bundle, course.root / "nbgrader_config.py", "course/nbgrader_config.py")
        _add_path(bundle, course.source, f"course/source/{course.assignment}")
        _add_path(bundle, template_root, "template")
    os.replace(partial, out)


def _add_text(bundle: zipfile.ZipFile, name: str, text: str, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = (0o100755 if executable else 0o100644) << 16  # Gradescope runs the scripts as they are
    info.compress_type = zipfile.ZIP_DEFLATED
    bundle.writestr(info, text)


def _add_path(bundle: zipfile.ZipFile, path: Path, name: str) -> None:
    if path.is_file():
        bundle.write(path, name)
        return
    for folder, folders, files in os.walk(path):
        ignored = LEFTOVERS(folder, folders + files)
        folders[:] = sorted(f for f in folders if f not in ignored)
        for file in sorted(set(files) - ignored):
            full = Path(folder) / file
            bundle.write(full, f"{name}/{full.relative_to(path).as_posix()}")


def locked_torch(lock_text: str) -> str:
    """The torch version the lock pins: setup.sh installs that version's CPU build."""
    from packaging.requirements import Requirement

    pins = [Requirement(line) for line in lock_text.splitlines() if line.strip() and not line.startswith("#")]
    versions = {spec.version for pin in pins if pin.name == "torch" for spec in pin.specifier}
    if len(versions) != 1:
        raise ValueError(f"{GRADER_LOCK} must pin one torch version, not {sorted(versions) or 'none'}")
    return versions.pop()


def setup_sh(lock_text: str) -> str:
    """setup.sh for a bundle whose grader lock is lock_text."""
    return SETUP_SH.format(index=TORCH_CPU_INDEX, torch=locked_torch(lock_text), lock=GRADER_LOCK)


# setup_sh fills in {index}, {torch} and {lock}: the script must have no braces of its own.
SETUP_SH = """\
#!/bin/bash
# Gradescope runs this once, as root, when it builds the autograder's image (Ubuntu).
set -euo pipefail
SOURCE=/autograder/source
export DEBIAN_FRONTEND=noninteractive
apt-get update
# bubblewrap isolates every student's kernel, as `python -m autograde grade` does.
apt-get install -y --no-install-recommends python3 python3-venv bubblewrap
# The lock is resolved for Python 3.11 and 3.12 (Ubuntu 24.04's python3 is 3.12; 22.04's 3.10 is too old).
python3 -c 'import sys; sys.exit(None if (3, 11) <= sys.version_info[:2] <= (3, 12) else
    "the grader needs Python 3.11 or 3.12, this image has " + sys.version.split()[0] + ": use Ubuntu 24.04")'
python3 -m venv /autograder/venv
/autograder/venv/bin/python -m pip install --upgrade pip
# torch's CPU build first, from PyTorch's index: PyPI's torch for Linux brings CUDA's libraries (nvidia-* wheels),
# which a grader without a GPU never loads. Its dependencies come from the lock, at the lock's pins. Its version,
# {torch}+cpu, satisfies the lock's torch=={torch} (PEP 440: a pin without a local label ignores the installed
# version's), so the lock's install keeps it.
/autograder/venv/bin/python -m pip install --no-deps --index-url {index} "torch=={torch}"
/autograder/venv/bin/python -m pip install -r "$SOURCE/project/{lock}"
# Editable, as `make setup` does: a regular install would copy resnet_course (the course's reference code) into
# the venv, which every sandbox mounts; an editable one points to project/, which no sandbox sees.
/autograder/venv/bin/python -m pip install --no-deps --no-build-isolation -e "$SOURCE/project"
"""

RUN_AUTOGRADER = """\
#!/bin/bash
# Gradescope runs this for every submission (from /autograder/run_autograder, a copy).
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PYTHON="${AUTOGRADER_PYTHON:-/autograder/venv/bin/python}"
# The bundle's own grader is what runs, whatever else the image has installed.
export PYTHONPATH="$ROOT/source/project"
cd "$ROOT"
exec "$PYTHON" -m autograde.gradescope --root "$ROOT"
"""


# -- run (inside Gradescope's container) ----------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograde.gradescope",
                                     description="Grade the submission in ROOT/submission into "
                                                 "ROOT/results/results.json (what run_autograder runs).")
    parser.add_argument("--root", type=Path, default=Path("/autograder"), metavar="ROOT")
    return run(parser.parse_args(argv).root.resolve())


def run(root: Path) -> int:
    """Grade ROOT/submission; write ROOT/results/results.json. 0 when it holds a grade, 1 when it does not."""
    from .sandbox.container import choose, keep_from_kernels

    results = root / "results" / "results.json"
    try:
        settings = BundleSettings.read(root / "source" / SETTINGS)
        isolation, problem = choose(settings.isolation)
        if problem:
            print(f"autograde: cannot isolate the student's code in this container: {problem}", flush=True)
            GradescopeResults.failure("The autograder could not run safely in this container, so it did not "
                                      "run your notebook. " + NOT_A_GRADE).write(results)
            return 1
        if isolation == "container":  # the bundle holds the solutions and hidden tests
            print("autograde: bubblewrap cannot isolate here: grading in container mode", flush=True)
            keep_from_kernels([root / "source", root / "submission"])
        graded = _grade(root, settings)
        # (report reads the autograded notebook: what the student's kernel printed is in it)
        written = report(graded) if graded is not None and graded.result.status != st.GRADER_ERROR else None
    except Exception:  # noqa: BLE001 - whatever broke, Gradescope must get a results.json that says so
        import traceback

        traceback.print_exc(file=sys.stdout)
        written = None
    if written is None:
        GradescopeResults.failure("The autograder failed while grading your submission. " + NOT_A_GRADE
                                  ).write(results)
        return 1
    written.write(results)
    return 0


@dataclass
class Graded:
    """What ``grade`` made of the one submission."""

    result: Result
    template: Template
    autograded: Path | None  # the autograded notebook; None when the file could not be graded


def _grade(root: Path, settings: BundleSettings) -> Graded | None:
    """``grade`` on this one submission, in ROOT/grading; None when it did not grade it."""
    from .course import Course, Template
    from .formgrader import FormgraderCourse
    from .results import Cache

    work = root / "grading"
    shutil.rmtree(work, ignore_errors=True)  # a fresh container has none; a rerun starts over
    _gather(root / "submission", work / "submissions" / STUDENT)
    out = work / "out"
    shutil.copytree(root / "source" / "template", out / ".autograde" / "template")
    course = Course(root / "source" / "course", settings.assignment)
    if course.fingerprint() != settings.fingerprint:
        print("autograde: the bundled template does not match this image's nbgrader; it is built again for "
              "every submission: build the bundle with the versions of requirements.lock", flush=True)
    else:
        print("autograde: using the bundled template", flush=True)
    # `grade` itself, as the instructor runs it (the command line is the layer above this one).
    code = subprocess.run([sys.executable, "-m", "autograde", "grade", str(work / "submissions"), "--out", str(out),
                           "--course", str(course.root), "--lms", "plain", "--jobs", "1", "--no-progress",
                           *settings.grading], check=False).returncode
    found = [r for r in Cache(out / ".autograde" / "cache").everyone() if r.student_id == STUDENT]
    if code != 0 or not found:
        print(f"autograde: grade exited with {code} and graded {len(found)} submission(s)", flush=True)
        return None
    template = Template(course, out / ".autograde" / "template").prepare()
    autograded = FormgraderCourse(out / "nbgrader", template).autograded_path(STUDENT)
    return Graded(found[0], template, autograded if autograded and autograded.exists() else None)


def _gather(submission: Path, folder: Path) -> None:
    """Everything the student uploaded, as one student's folder for `grade`. Links are left out: one could
    point at the bundle (the source, with its solutions) instead of the student's own work."""
    def links(where, names):
        return [name for name in names if os.path.islink(os.path.join(where, name))]

    folder.parent.mkdir(parents=True, exist_ok=True)
    if submission.is_dir():
        shutil.copytree(submission, folder, ignore=links)
    else:
        folder.mkdir()  # nothing uploaded: `grade` reports "no notebook"


# -- results.json -------------------------------------------------------------------------------------

@dataclass
class TestResult:
    """One test of Gradescope's results.json: one graded cell of the notebook."""

    name: str
    score: float
    max_score: float
    output: str
    visibility: str = "visible"  # "after_published": the test has hidden lines
    status: str | None = None  # "passed" or "failed"; None for written answers, which a person grades


@dataclass
class GradescopeResults:
    """Gradescope's results.json (see the autograder specification's "Output format")."""

    score: float
    output: str
    tests: list[TestResult] = field(default_factory=list)
    output_format: str = "text"
    stdout_visibility: str = "hidden"  # the grader's log: the instructor's, not the student's

    @classmethod
    def failure(cls, output: str) -> "GradescopeResults":
        return cls(score=0.0, output=output)

    def write(self, path: Path) -> None:
        from .results import atomic_write

        data = dataclasses.asdict(self)
        data["tests"] = [{k: v for k, v in test.items() if v is not None} for test in data["tests"]]
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(data, indent=1, ensure_ascii=False))


@dataclass
class GradedCell:
    """What the source notebook says about one graded cell."""

    grade_id: str
    points: float
    part: str  # "Part 2", from the nearest heading above that names one; "" if none
    manual: bool  # a written answer, graded by hand
    hidden: bool  # a test with hidden lines, or none at all that a student runs (judged by the grader alone)


_PART = re.compile(r"^#+\s*(Part\s+[\w.]+)", re.IGNORECASE | re.MULTILINE)


def _graded_cells(template: Template) -> list[GradedCell]:
    import nbformat

    from .preprocessors import HideHiddenTests, grade_id

    delimiter = HideHiddenTests(config=template.course.config).begin_test_delimeter
    source = nbformat.read(template.course.notebook_path, as_version=4)
    points = {cell.grade_id: cell.points for cell in template.cells}
    found, part = [], ""
    for cell in source.cells:
        if cell.cell_type == "markdown" and _PART.search(cell.source):
            part = _PART.search(cell.source).group(1)
        if grade_id(cell) in points:
            md = cell.metadata["nbgrader"]
            found.append(GradedCell(grade_id(cell), points[grade_id(cell)], part, bool(md.get("solution")),
                                    delimiter in cell.source or not _runs_code(cell)))
    return found


def _runs_code(cell) -> bool:
    """Whether a student runs anything in this cell: a written answer, or a code cell with a line that is not a
    comment (a test whose cell only says what the grader checks is judged by the grader alone)."""
    return cell.cell_type != "code" or any(line.strip() and not line.strip().startswith("#")
                                           for line in cell.source.splitlines())


def report(graded: Graded) -> GradescopeResults:
    """results.json for the grader's result: the score it gave, its status and notes, one test per cell."""
    result, config = graded.result, graded.template.course.config
    errors = _errors(graded.autograded, config) if graded.autograded else {}
    cells = _graded_cells(graded.template)
    tests = [_test(cell, result, errors) for cell in cells]
    manual = [cell for cell in cells if cell.manual]
    automatic = sum(test.max_score for test in tests)
    lines = [f"Automatic score: {result.score:g} of {automatic:g} points.", f"Status: {result.status}."]
    if result.status != st.OK:
        lines.append(STATUS_WORDS.get(result.status, "See the notes below."))
    if manual:
        lines.append(f"{len(manual)} written answer(s), worth {_points_words(sum(c.points for c in manual))}, are "
                     "graded by hand by your instructor, in Gradescope's manual grading, not here.")
    if any(cell.hidden for cell in cells):
        lines.append("The tests the grader runs without a visible part show their results once your instructor "
                     "publishes the grades.")
    lines += [f"Note: {note}" for note in _redacted(result.notes, graded.template)]
    return GradescopeResults(score=float(result.score), output="\n".join(lines), tests=tests)


def _redacted(notes: list[str], template: Template) -> list[str]:
    """The grader's notes, written for the instructor, with any hidden-test line redacted as feedback does it
    (a note may quote what a cell printed)."""
    import nbformat

    from .preprocessors import HideHiddenTests

    hider = HideHiddenTests(config=template.course.config)
    hider.preprocess(nbformat.read(template.course.notebook_path, as_version=4), {})  # learns the hidden lines
    return [hider.redact(note) for note in notes]


# What each status means to a student, in a sentence (grades.csv's notes give the details).
STATUS_WORDS = {
    st.EMPTY: "The uploaded file is empty: nothing was graded.",
    st.NO_NOTEBOOK: "No Jupyter notebook (.ipynb) was found in what you uploaded: nothing was graded.",
    st.NOT_NOTEBOOK: "The uploaded file is not a Jupyter notebook (.ipynb): nothing was graded.",
    st.TOO_LARGE: "The uploaded file is too large to grade.",
    st.INVALID: "The notebook could not be read (is it damaged?): nothing was graded.",
    st.WRONG_ASSIGNMENT: "The notebook is not this assignment's: nothing was graded.",
    st.NOT_ATTEMPTED: "Every answer in the notebook is still the one you were given: nothing was answered.",
    st.MEMORY: "Your notebook used more memory than allowed and was stopped; the tests after that scored 0.",
    st.PROCESSES: "Your notebook started too many processes and was stopped; the tests after that scored 0.",
    st.OUTPUT_TOO_LARGE: "A cell's output or value was larger than the grader accepts, so your notebook was stopped; "
                         "the tests after that scored 0.",
    st.TIMED_OUT: "A cell ran longer than allowed and was stopped; the tests after that scored 0.",
    st.KERNEL_DIED: "Your notebook's Python process stopped; the tests after that scored 0.",
    st.TAMPERING: "Code in your notebook interfered with the tests: the tests it touched did not count.",
    st.NEEDS_REVIEW: "Your instructor is reviewing a score given by hand, after the answer changed.",
    st.ANSWER_UNCLEAR: "A written answer could not be found in the notebook; your instructor will look for it.",
    st.RESTORED: "Test or locked cells had been changed or deleted; they were restored before grading.",
}


def _test(cell: GradedCell, result: Result, errors: dict[str, str]) -> TestResult:
    name = f"{cell.part}: {cell.grade_id}" if cell.part else cell.grade_id
    if cell.manual:  # Gradescope's manual questions carry its points, so it counts for nothing here
        words = (f"A written answer, worth {_points_words(cell.points)}: your instructor grades it by hand in "
                 "Gradescope.")
        return TestResult(f"{name} (graded by hand)", 0.0, 0.0, words)
    visibility = "after_published" if cell.hidden else "visible"
    if result.gradebook is None:
        return TestResult(name, 0.0, cell.points, f"Not run: the submission could not be graded ({result.status}).",
                          visibility, "failed")
    score = float(result.cells.get(cell.grade_id) or 0.0)
    if cell.grade_id not in errors and score >= cell.points:
        return TestResult(name, score, cell.points, "Passed.", visibility, "passed")
    words = errors.get(cell.grade_id) or "Failed."
    return TestResult(name, score, cell.points, words[:MAX_OUTPUT], visibility, "failed")


def _errors(autograded: Path, config) -> dict[str, str]:
    """grade_id -> "ErrorName: message" of each graded cell that raised, from the autograded notebook, after the
    feedback's redaction (HideHiddenTests): the name and message only, never the traceback, which quotes code."""
    import nbformat

    from .preprocessors import _ANSI, HideHiddenTests, grade_id

    nb, _ = HideHiddenTests(config=config).preprocess(nbformat.read(autograded, as_version=4), {})
    errors = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if grade_id(cell) and output.get("output_type") == "error":
                message = _ANSI.sub("", f"{output.get('ename', 'Error')}: {output.get('evalue', '')}").strip()
                errors[grade_id(cell)] = message.rstrip(":")
    return errors


if __name__ == "__main__":
    sys.exit(main())
