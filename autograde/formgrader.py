"""``--out/nbgrader/``: an nbgrader course with the whole class, for grading written answers by hand.

Each submission is graded in a job course of its own (:mod:`autograde.worker`); this module
gathers the results into one course that nbgrader's formgrader can open::

    DIR/nbgrader/nbgrader_config.py          (points nbgrader at this folder)
    DIR/nbgrader/source/<assignment>/        (a copy of the instructor's source)
    DIR/nbgrader/gradebook.db                (every student: automatic scores, and what you grade by hand)
    DIR/nbgrader/submitted/<student>/<assignment>/<notebook>.ipynb   (the file the student handed in)
    DIR/nbgrader/autograded/<student>/<assignment>/<notebook>.ipynb

Rules that make reruns safe: automatic scores are (re)written by the grader; manual scores and
comments entered in formgrader are never overwritten. When a new automatic score differs from the
stored one, a cell that had been graded by hand is flagged for review again (as ``nbgrader autograde``
does). ``grades.csv`` is read back from this gradebook, so it shows the manual grades too, and the
feedback pages of students with manual grades or comments are rendered again from it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook

from .course import IGNORED, Template
from .feedback import FeedbackExporter
from .results import Result, atomic_copy, atomic_write

log = logging.getLogger("autograde")

CONFIG = '''\
"""Written by `python -m autograde grade`: this folder is an nbgrader course holding the graded class.

Grade the written answers by hand in formgrader:  cd "{here}" && jupyter lab  (Nbgrader > Formgrader),
then run the same `python -m autograde grade` command again. It uses the instructor's course settings
(course id, exchange, feedback) with this folder as the course root.
"""
import os

c = get_config()  # noqa: F821
INSTRUCTOR_CONFIG = {instructor_config!r}
if os.path.exists(INSTRUCTOR_CONFIG):
    load_subconfig(INSTRUCTOR_CONFIG)  # noqa: F821
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = {course_id!r}
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(c.CourseDirectory.root, "gradebook.db")

from autograde.course import protect  # noqa: E402 - the grading plugins, if the instructor's config lacks them

protect(c)
'''


def student_folder(student_id: str) -> str | None:
    """The student's folder name in the course; None when it could not be one (".", "..")."""
    return None if student_id in (".", "..") or "/" in student_id or "\0" in student_id else student_id


class FormgraderCourse:
    def __init__(self, root: Path, template: Template):
        self.root = root
        self.template = template
        self.course = template.course
        self.db_url = "sqlite:///" + str(root / "gradebook.db")

    def autograded_path(self, student_id: str) -> Path | None:
        folder = student_folder(student_id)
        if folder is None:
            return None
        return self.root / "autograded" / folder / self.course.assignment / f"{self.course.notebook}.ipynb"

    def prepare(self) -> "FormgraderCourse":
        """Create the course, or start a new gradebook when the assignment's source changed."""
        stamp = self.root / ".fingerprint"
        gradebook = self.root / "gradebook.db"
        if gradebook.exists() and (not stamp.exists() or stamp.read_text() != self.template.fingerprint):
            backup = self.root / f"gradebook-{time.strftime('%Y%m%d-%H%M%S')}.db"
            gradebook.rename(backup)
            log.warning("the assignment's source changed: the previous gradebook is kept as %s", backup)
        self.root.mkdir(parents=True, exist_ok=True)
        if not gradebook.exists():
            shutil.copyfile(self.template.gradebook, gradebook)
            stamp.write_text(self.template.fingerprint)
        source = self.root / "source" / self.course.assignment
        shutil.rmtree(source, ignore_errors=True)
        shutil.copytree(self.course.source, source, ignore=IGNORED)
        (self.root / "nbgrader_config.py").write_text(CONFIG.format(
            here=self.root, course_id=self.course.course_id,
            instructor_config=str(self.course.root / "nbgrader_config.py")))
        return self

    def merge(self, results: list[Result]) -> None:
        """Write each graded result into the gradebook, then read its scores back (manual ones included)."""
        assignment, notebook = self.course.assignment, self.course.notebook
        with Gradebook(self.db_url, self.course.course_id) as gb:
            for result in results:
                book = result.gradebook
                if not book or self.autograded_path(result.student_id) is None:
                    continue
                student = result.student_id
                gb.update_or_create_student(student)
                gb.update_or_create_submission(assignment, student)
                submitted = gb.find_submission_notebook(notebook, assignment, student)
                for grade in submitted.grades:
                    if grade.name not in book["grades"]:
                        continue
                    auto, needs_manual = book["grades"][grade.name]
                    if grade.manual_score is None:
                        grade.auto_score = auto
                        grade.needs_manual_grade = bool(needs_manual)
                    elif grade.auto_score != auto:
                        # Graded by hand, and the automatic score moved: review it (nbgrader's rule).
                        grade.auto_score = auto
                        grade.needs_manual_grade = True
                for comment in submitted.comments:
                    if comment.name in book["comments"]:
                        comment.auto_comment = book["comments"][comment.name]
                gb.db.commit()
                read_scores(submitted, result)
                manual = [(grade.name, grade.manual_score, grade.extra_credit)
                          for grade in submitted.grades if grade.manual_score is not None]
                manual += [(comment.name, comment.manual_comment) for comment in submitted.comments
                           if comment.manual_comment]
                result.manual = hashlib.sha1(json.dumps(sorted(map(str, manual))).encode()).hexdigest() \
                    if manual else None

    def render_feedback(self, result: Result) -> None:
        """The student's feedback page, from this gradebook (with the manual grades and comments)."""
        path = self.autograded_path(result.student_id)
        converter = self.template.feedback_converter(self.root, "student", log)
        exporter = FeedbackExporter(config=converter.config)
        for pp in converter.config.GenerateFeedback.preprocessors:
            exporter.register_preprocessor(pp, enabled=True)
        nb = nbformat.read(path, as_version=4)
        resources = {"unique_key": self.course.notebook, "metadata": {"path": str(path.parent)}, "nbgrader": {
            "student": result.student_id, "assignment": self.course.assignment,
            "notebook": self.course.notebook, "db_url": self.db_url}}
        html, _ = exporter.from_notebook_node(nb, resources=resources)
        atomic_write(Path(result.feedback), html)


def read_scores(submitted, result: Result) -> None:
    """A submission notebook's scores in a gradebook into *result*: per cell (None while the cell awaits
    grading by hand), how many await it, and the total less the late penalty."""
    for grade in submitted.grades:  # grade.score: the manual score if any, else the automatic one
        result.cells[grade.name] = None if grade.needs_manual_grade else float(grade.score or 0.0)
    result.needs_manual_grade = sum(bool(grade.needs_manual_grade) for grade in submitted.grades)
    result.score = max(0.0, float(submitted.score) - (submitted.late_submission_penalty or 0.0))


def publish_autograded(source_dir: Path, target_dir: Path) -> None:
    """Replace the student's autograded folder in the class course with a new one (from a worker)."""
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = target_dir.with_name(f".{target_dir.name}.{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source_dir, staging)
    for path in staging.rglob("*"):
        if path.is_file():
            path.chmod(0o644)
    old = target_dir.with_name(f".{target_dir.name}.old.{os.getpid()}")
    if target_dir.exists():
        target_dir.rename(old)
    staging.rename(target_dir)
    shutil.rmtree(old, ignore_errors=True)


def publish_submitted(original: Path, target: Path) -> None:
    """The file the student handed in, byte for byte (nbgrader's release_feedback matches on its hash)."""
    atomic_copy(original, target)
    timestamp = original.parent / "timestamp.txt"
    if timestamp.is_file():
        shutil.copyfile(timestamp, target.parent / "timestamp.txt")
