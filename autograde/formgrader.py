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
stored one, or the student's answer in a cell graded by hand is not the one that was graded (a new
submission), the cell is flagged for review again, as ``nbgrader autograde`` flags every cell graded by
hand when it grades a submission again (the checksums of the answers last merged are kept in
``.answers.json``). ``grades.csv`` is read back from this gradebook, so it shows the manual grades
too, and the feedback pages of students with manual grades or comments are rendered again from it.

Each submission carries what nbgrader's exchange needs: ``timestamp.txt`` (the submission time, which
also drives late penalties) and ``submission_secret.txt`` (from the exchange), so that ``nbgrader
generate_feedback`` and ``release_feedback`` work here. A submission that came from an LMS has no
secret: it gets one nobody holds (its feedback goes back through the LMS), so that release_feedback still
works for the rest of the class.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import nbformat
from nbgrader import utils as nbgrader_utils
from nbgrader.api import Gradebook

from . import status as st
from .course import IGNORED, Template, naive_utc
from .feedback import FeedbackExporter
from .results import Result, atomic_copy, atomic_write, instant

log = logging.getLogger("autograde")
REVIEW = "graded by hand, then the answer or its automatic score changed: review "
TIMESTAMP, SECRET = "timestamp.txt", "submission_secret.txt"

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

    def submitted_path(self, student_id: str) -> Path | None:
        """The copy of the file the student's graded attempt came from (byte for byte, see :func:`publish`)."""
        folder = student_folder(student_id)
        if folder is None:
            return None
        return self.root / "submitted" / folder / self.course.assignment / f"{self.course.notebook}.ipynb"

    def prepare(self) -> "FormgraderCourse":
        """Create the course, or start a new gradebook when the assignment's source changed."""
        stamp = self.root / ".fingerprint"
        gradebook = self.root / "gradebook.db"
        if gradebook.exists() and (not stamp.exists() or stamp.read_text() != self.template.fingerprint):
            backup = self.root / f"gradebook-{time.strftime('%Y%m%d-%H%M%S')}.db"
            gradebook.rename(backup)
            (self.root / ".answers.json").unlink(missing_ok=True)
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

    def merge(self, results: list[Result], duedate: datetime | None = None) -> None:
        """Write each graded result into the gradebook, then read its scores back (manual ones included)."""
        answers_path = self.root / ".answers.json"
        try:
            answers = json.loads(answers_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            answers = {}
        with Gradebook(self.db_url, self.course.course_id) as gb:
            gb.update_or_create_assignment(self.course.assignment, duedate=naive_utc(duedate))
            for result in results:
                if result.gradebook and self.autograded_path(result.student_id) is not None:
                    self._merge_one(gb, result, answers)
        atomic_write(answers_path, json.dumps(answers, sort_keys=True))

    def _merge_one(self, gb: Gradebook, result: Result, answers: dict) -> None:
        assignment, notebook, student, book = self.course.assignment, self.course.notebook, result.student_id, \
            result.gradebook
        gb.update_or_create_student(student)
        timestamp = datetime.fromisoformat(book["timestamp"]) if book.get("timestamp") else None
        due = result.grading_settings.get("due")
        class_due = gb.find_assignment(assignment).duedate
        extension = naive_utc(instant(due)) - class_due if due and class_due else None
        gb.update_or_create_submission(assignment, student, timestamp=naive_utc(timestamp),
                                       extension=extension or None)
        submitted = gb.find_submission_notebook(notebook, assignment, student)
        graded_answers, new_answers = answers.get(student, {}), book.get("answers", {})
        for grade in submitted.grades:
            if grade.name not in book["grades"]:
                continue
            auto, needs_manual = book["grades"][grade.name]
            changed = graded_answers.get(grade.name, new_answers.get(grade.name)) != new_answers.get(grade.name)
            if grade.manual_score is None:
                grade.auto_score = auto
                grade.needs_manual_grade = bool(needs_manual)
            elif grade.auto_score != auto or changed:
                # Graded by hand, and the automatic score or the answer itself moved: review it (nbgrader's rule).
                grade.auto_score = auto
                grade.needs_manual_grade = True
        for comment in submitted.comments:
            if comment.name in book["comments"]:
                comment.auto_comment = book["comments"][comment.name]
        submitted.late_submission_penalty = book.get("late_penalty")
        gb.db.commit()
        answers[student] = new_answers
        read_scores(submitted, result)
        manual = [(grade.name, grade.manual_score, grade.extra_credit)
                  for grade in submitted.grades if grade.manual_score is not None]
        manual += [(comment.name, comment.manual_comment) for comment in submitted.comments if comment.manual_comment]
        result.manual = hashlib.sha1(json.dumps(sorted(map(str, manual))).encode()).hexdigest() if manual else None

    def render_feedback(self, result: Result) -> None:
        """The student's feedback page, from this gradebook (with the manual grades and comments)."""
        path = self.autograded_path(result.student_id)
        converter = self.template.feedback_converter(self.root, "student", log)
        exporter = FeedbackExporter(parent=converter, config=converter.config)  # as GenerateFeedback makes it
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
    grading by hand), how many await it, the late penalty, and the total less that penalty."""
    for grade in submitted.grades:  # grade.score: the manual score if any, else the automatic one
        result.cells[grade.name] = None if grade.needs_manual_grade else float(grade.score or 0.0)
    result.needs_manual_grade = sum(bool(grade.needs_manual_grade) for grade in submitted.grades)
    result.late_penalty = float(submitted.late_submission_penalty or 0.0)
    # A hand score under review is kept aside, not counted: until a person looks, the cell has its automatic score.
    review = [grade for grade in submitted.grades if grade.manual_score is not None and grade.needs_manual_grade]
    result.under_review = sum(float(grade.score or 0.0) for grade in review)
    interim = sum(float(grade.auto_score or 0.0) for grade in review)
    result.score = max(0.0, float(submitted.score) - result.under_review + interim - result.late_penalty)
    result.notes = [note for note in result.notes if not note.startswith(REVIEW)]  # as the gradebook says now
    result.statuses = [status for status in result.statuses if status != st.NEEDS_REVIEW]
    if review:
        result.add(st.NEEDS_REVIEW, REVIEW + ", ".join(grade.name for grade in review) + " in formgrader")


def answer_checksums(nb) -> dict[str, str]:
    """nbgrader's checksum of every answer graded by hand (its source and metadata), by grade_id."""
    return {cell.metadata.nbgrader["grade_id"]: nbgrader_utils.compute_checksum(cell) for cell in nb.cells
            if nbgrader_utils.is_grade(cell) and nbgrader_utils.is_solution(cell)}


def nbgrader_timestamp(iso: str) -> str:
    """An ISO 8601 time as nbgrader's exchange writes timestamp.txt."""
    return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")



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


@dataclass
class Submitted:
    """One graded submission, as the class course receives it from a worker."""

    original: Path  # the file the student handed in
    autograded: Path  # the job course's autograded folder
    notebook_file: str  # "<notebook>.ipynb"
    submitted_at: str | None = None  # ISO 8601: the LMS's or the exchange's time
    exchange_files: dict[str, Path] = field(default_factory=dict)  # timestamp.txt, submission_secret.txt


def publish(root: Path, student: str, assignment: str, submission: Submitted) -> None:
    """The student's submitted and autograded folders in the class course, with what nbgrader's exchange needs."""
    submitted_dir = root / "submitted" / student / assignment
    autograded_dir = root / "autograded" / student / assignment
    publish_autograded(submission.autograded, autograded_dir)
    # Byte for byte: the file the student handed in.
    atomic_copy(submission.original, submitted_dir / submission.notebook_file)
    files = {name: path.read_bytes() for name, path in submission.exchange_files.items()}
    if TIMESTAMP not in files and submission.submitted_at:
        files[TIMESTAMP] = nbgrader_timestamp(submission.submitted_at).encode()
    for name in (TIMESTAMP, SECRET):
        (submitted_dir / name).unlink(missing_ok=True)  # nothing left over from an earlier submission
        if name in files:
            atomic_write(submitted_dir / name, files[name])
    # release_feedback reads both beside every feedback page: what the exchange did not give is made up here, a
    # time of grading and a secret nobody holds (such a student gets feedback through the LMS, not the exchange).
    files.setdefault(TIMESTAMP, datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC").encode())
    files.setdefault(SECRET, secrets.token_hex(64).encode())
    for name, data in files.items():
        atomic_write(autograded_dir / name, data)
