"""The instructor's course, and the private nbgrader course the grader derives from it.

The instructor's course is this repository: ``nbgrader_config.py`` at the root, the assignment
with its solutions and hidden tests in ``source/<assignment>/``. The grader never writes there.
Instead it builds a *template* course in its work folder, with nbgrader's own GenerateAssignment
run on a copy of ``source/<assignment>``: that yields the gradebook (cells, points, checksums,
hidden tests) and the release version of the notebook, exactly as ``nbgrader generate_assignment``
would. Every submission is then graded in a copy of that template (see :mod:`autograde.worker`).

The template is rebuilt only when the source changes (its fingerprint is a hash of the source
folder, the grader's version and nbgrader's).
"""
from __future__ import annotations

import copy
import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat
import nbgrader
from nbgrader import utils
from nbgrader.api import Gradebook
from nbgrader.converters import GenerateAssignment
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config, PyFileConfigLoader

from . import GRADER_VERSION, AutogradeError
from .feedback import feedback_preprocessors
from .imports import bound_names, imported_modules, used_builtins

IGNORED = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", ".DS_Store", "*.pyc")


def load_course_config(root: Path) -> Config:
    """The course's own nbgrader_config.py (feedback preprocessors, timeouts, course id), if any."""
    path = root / "nbgrader_config.py"
    if not path.exists():
        return Config()
    return PyFileConfigLoader(path.name, str(root)).load_config()


def course_config(base: Config, root: Path, assignment: str, student: str = "*") -> Config:
    """The course's configuration, pointed at another course folder (a template or a job)."""
    config = copy.deepcopy(base)
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = "sqlite:///" + str(root / "gradebook.db")
    config.CourseDirectory.assignment_id = assignment
    config.CourseDirectory.student_id = student
    config.CourseDirectory.notebook_id = "*"
    config.CourseDirectory.groupshared = False
    return config


@dataclass
class GradedCell:
    grade_id: str
    points: float


class Course:
    """``source/<assignment>`` in the instructor's course folder."""

    def __init__(self, root: Path, assignment: str):
        self.root = Path(root).resolve()
        self.assignment = assignment
        self.source = self.root / "source" / assignment
        if not self.source.is_dir():
            available = sorted(p.name for p in (self.root / "source").glob("*") if p.is_dir())
            hint = f" (found: {', '.join(available)})" if available else ""
            raise AutogradeError(f"no assignment {assignment!r} in {self.root / 'source'}{hint}")
        self.config = load_course_config(self.root)
        self.course_id = self.config.CourseDirectory.get("course_id") or "course"
        notebooks = sorted(p for p in self.source.glob("*.ipynb"))
        if len(notebooks) != 1:
            raise AutogradeError(f"{self.source} must hold exactly one notebook, found {len(notebooks)}: "
                                 "the grader expects one notebook per student")
        self.notebook_path = notebooks[0]
        self.notebook = self.notebook_path.stem

    def fingerprint(self) -> str:
        digest = hashlib.sha256(f"{GRADER_VERSION}/{nbgrader.__version__}/{self.course_id}".encode())
        for path in sorted(self.source.rglob("*")):
            relative = path.relative_to(self.source)
            if path.is_file() and not any(part in (".ipynb_checkpoints", "__pycache__") for part in relative.parts):
                digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()[:16]

    def default_timeout(self) -> int:
        for section in ("Execute", "ExecutePreprocessor"):
            value = self.config.get(section, {}).get("timeout")
            if isinstance(value, int) and value > 0:
                return value
        return 60

    def feedback_preprocessors(self) -> list:
        """GenerateFeedback's preprocessors: the course's (else nbgrader's GetGrades), always with HideHiddenTests."""
        return feedback_preprocessors(self.config.get("GenerateFeedback", {}).get("preprocessors"))


class Template:
    """The private nbgrader course every submission is graded in a copy of."""

    def __init__(self, course: Course, root: Path):
        self.course = course
        self.root = Path(root)

    @property
    def gradebook(self) -> Path:
        return self.root / "gradebook.db"

    @property
    def release_path(self) -> Path:
        return self.root / "release" / self.course.assignment / self.course.notebook_path.name

    def prepare(self, log: logging.Logger | None = None) -> "Template":
        fingerprint = self.course.fingerprint()
        stamp = self.root / "fingerprint"
        if not (stamp.exists() and stamp.read_text() == fingerprint and self.gradebook.exists()
                and self.release_path.exists()):
            self._build(log)
            stamp.write_text(fingerprint)
        self.fingerprint = fingerprint
        self._load()
        return self

    def _build(self, log) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        (self.root / "source").mkdir(parents=True)
        shutil.copytree(self.course.source, self.root / "source" / self.course.assignment, ignore=IGNORED)
        config = course_config(self.course.config, self.root, self.course.assignment)
        config.GenerateAssignment.create_assignment = True
        coursedir = CourseDirectory(config=config)
        converter = GenerateAssignment(coursedir=coursedir, config=config,
                                       log=log or logging.getLogger("autograde.nbgrader"))
        try:
            converter.start()  # it returns to the working directory it started in
        except Exception as exc:  # noqa: BLE001 - nbgrader's errors are plain exceptions
            raise AutogradeError(f"nbgrader could not generate {self.course.assignment!r} from its source: {exc}") from exc
        if not self.release_path.exists():
            raise AutogradeError(f"nbgrader did not produce {self.release_path}")

    def _load(self) -> None:
        self.release = nbformat.read(self.release_path, as_version=4)
        source = nbformat.read(self.course.notebook_path, as_version=4)
        self.cells: list[GradedCell] = []
        with Gradebook("sqlite:///" + str(self.gradebook), self.course.course_id) as gb:
            notebook = gb.find_notebook(self.course.notebook, self.course.assignment)
            points = {cell.name: float(cell.max_score) for cell in notebook.grade_cells}
        order = [cell.metadata.nbgrader["grade_id"] for cell in source.cells
                 if "nbgrader" in cell.metadata and "grade_id" in cell.metadata.nbgrader]
        for grade_id in order:
            if grade_id in points:
                self.cells.append(GradedCell(grade_id, points[grade_id]))
        self.max_score = sum(cell.points for cell in self.cells)
        self.grade_ids = [c.metadata.nbgrader["grade_id"] for c in self.release.cells
                          if "nbgrader" in c.metadata and "grade_id" in c.metadata.nbgrader]
        # What the tamper guard protects, from the instructor's code cells (the locked ones: tests,
        # hidden tests included, and given code): the names each binds, the builtins they use, and
        # the modules they import, less those with state that changes as they are used (pyplot's
        # current figure).
        instructor = [cell for cell in source.cells if cell.cell_type == "code" and utils.is_locked(cell)]
        self.pins, builtins = {}, set()
        for cell in instructor:
            grade_id = cell.metadata.nbgrader.get("grade_id")
            if grade_id:
                self.pins[grade_id] = sorted(bound_names(cell.source))
                builtins |= used_builtins(cell.source)
        self.builtin_names = sorted(builtins)
        self.protected_modules = sorted(name for name in imported_modules(cell.source for cell in instructor)
                                        if name.split(".")[0] not in ("matplotlib", "mpl_toolkits", "seaborn"))
