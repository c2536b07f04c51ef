"""The instructor's course, the grading configuration, and the template every submission is graded in a copy of.

The instructor's course is an nbgrader course folder: ``nbgrader_config.py`` at its root, the assignment with
its solutions and hidden tests in ``source/<assignment>/``. The grader never writes there. It builds a *template*
in its work folder instead, with nbgrader's own GenerateAssignment run on a copy of ``source/<assignment>``: that
yields the gradebook (cells, points, checksums, hidden tests) and the release notebook, exactly as ``nbgrader
generate_assignment`` would. The template is rebuilt only when the source changes (its fingerprint hashes the
source folder, the grader's version and nbgrader's).

Each submission is graded in a *job course* made from the template: the gradebook and the student's notebook
(with the release's data files), nothing of ``source/``. The course's configuration is used as it is, with the
grading plugins added where the course's own ``nbgrader_config.py`` lacks them (:func:`protect`).
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import nbgrader
import nbgrader.api
from nbconvert.exporters import HTMLExporter
from nbgrader.api import Gradebook
from nbgrader.converters import Autograde, GenerateAssignment, GenerateFeedback
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import Execute, GetGrades, OverwriteCells
from traitlets.config import Config, PyFileConfigLoader

from . import GRADER_VERSION, AutogradeError
from .execute import JudgedExecute, is_test
from .feedback import AwaitingHandGrading, FeedbackExporter, NameGradedCells
from .judging import FOLDER, Grading
from .preprocessors import HideHiddenTests, RestoreCells, grade_id, is_graded
from .sanitize import CleanHTML

IGNORED = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", ".DS_Store", "*.pyc")


@functools.cache
def alembic_head() -> str:
    """The gradebook schema's revision, which nbgrader stamps into every gradebook it creates. nbgrader asks a
    subprocess for it (`alembic heads`: a new Python importing SQLAlchemy, about 3 s here, on every grading run's
    critical path); alembic's own API reads the same answer from nbgrader's migration scripts in-process."""
    from alembic.script import ScriptDirectory
    from nbgrader.dbutil import ALEMBIC_DIR

    return ScriptDirectory(ALEMBIC_DIR).get_current_head()


nbgrader.api.get_alembic_version = alembic_head


def load_course_config(root: Path) -> Config:
    """The course's own nbgrader_config.py (plugins, timeouts, course id, late penalties), if any."""
    path = root / "nbgrader_config.py"
    if not path.exists():
        return Config()
    return PyFileConfigLoader(path.name, str(root)).load_config()


def course_config(base: Config, root: Path, assignment: str, student: str = "*") -> Config:
    """The course's configuration, pointed at another course folder (a template, a job, the class course)."""
    config = copy.deepcopy(base)
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = "sqlite:///" + str(root / "gradebook.db")
    config.CourseDirectory.assignment_id = assignment
    config.CourseDirectory.student_id = student
    config.CourseDirectory.notebook_id = "*"
    config.CourseDirectory.groupshared = False
    return config


def _configured(config: Config, cls, name: str) -> list:
    value = config[cls.__name__].get(name)
    return list(value) if value is not None else list(cls.class_traits()[name].default())


def _subclass(item, cls) -> bool:
    return isinstance(item, type) and issubclass(item, cls)


def protect(config: Config) -> Config:
    """*config* with the grading plugins wherever the course's configuration lacks them: RestoreCells before
    OverwriteCells, JudgedExecute (with its isolated kernels) instead of nbgrader's Execute, HideHiddenTests in
    feedback (and AwaitingHandGrading and NameGradedCells, for the summary of the course's page), CleanHTML and the
    feedback pages' exporter (:func:`_protect_pages`); and an assignment's grading/ folder is never released nor
    copied beside a submission."""
    sanitize = _configured(config, Autograde, "sanitize_preprocessors")
    if not any(_subclass(pp, RestoreCells) for pp in sanitize):
        at = next((i for i, pp in enumerate(sanitize) if _subclass(pp, OverwriteCells)), len(sanitize))
        sanitize.insert(at, RestoreCells)
    config.Autograde.sanitize_preprocessors = sanitize
    config.Autograde.autograde_preprocessors = [
        JudgedExecute if _subclass(pp, Execute) and not _subclass(pp, JudgedExecute) else pp
        for pp in _configured(config, Autograde, "autograde_preprocessors")]
    ignored = _configured(config, CourseDirectory, "ignore")
    config.CourseDirectory.ignore = ignored if FOLDER in ignored else [*ignored, FOLDER]
    feedback = list(config.GenerateFeedback.get("preprocessors") or [GetGrades])
    _insert_after(feedback, HideHiddenTests, GetGrades)
    _insert_after(feedback, AwaitingHandGrading, GetGrades)  # (the page's template counts on these two)
    _insert_after(feedback, NameGradedCells, HideHiddenTests)
    config.GenerateFeedback.preprocessors = feedback
    _protect_pages(config)
    return config


def _insert_after(items: list, plugin: type, anchor: type) -> None:
    """*plugin* into *items* right after *anchor* (first without one), unless *items* has it already."""
    if not any(_subclass(item, plugin) for item in items):
        at = next((i + 1 for i, item in enumerate(items) if _subclass(item, anchor)), 0)
        items.insert(at, plugin)


def _protect_pages(config: Config) -> None:
    """CleanHTML in feedback (last: after HideHiddenTests, whose redaction could leave a cleaned tag open) and in
    the HTMLExporter that formgrader builds from the course's configuration, not twice in feedback; feedback pages
    from FeedbackExporter (its Content-Security-Policy, a local MathJax)."""
    feedback = config.GenerateFeedback.preprocessors
    if not any(_subclass(pp, CleanHTML) for pp in feedback):
        feedback.append(CleanHTML)
    exporter = _configured(config, HTMLExporter, "preprocessors")
    if not any(_subclass(pp, CleanHTML) for pp in exporter):
        exporter.append(CleanHTML)
    config.HTMLExporter.preprocessors = exporter
    config.GenerateFeedback.HTMLExporter.preprocessors = [pp for pp in exporter if not _subclass(pp, CleanHTML)]
    if not _subclass(config.GenerateFeedback.get("exporter_class"), FeedbackExporter):
        config.GenerateFeedback.exporter_class = FeedbackExporter


def _stable_name(value) -> str:
    """A configuration value JSON cannot hold (a class, a function, an object), by its name: the same every run."""
    named = value if hasattr(value, "__qualname__") else type(value)
    return f"{getattr(named, '__module__', '')}.{named.__qualname__}"


def naive_utc(when: datetime | None) -> datetime | None:
    """nbgrader's gradebook keeps times in UTC, without a zone."""
    return when.astimezone(timezone.utc).replace(tzinfo=None) if when else None


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
        self.config = protect(load_course_config(self.root))
        self.course_id = self.config.CourseDirectory.get("course_id") or "course"
        self.notebook_path = self._graded_notebook()
        self.notebook = self.notebook_path.stem

    def _graded_notebook(self) -> Path:
        """The assignment's one notebook with something to grade (answers, tests or tasks); the others (a reading
        notebook) are released with it, and not graded."""
        notebooks = sorted(self.source.glob("*.ipynb"))
        graded = [path for path in notebooks if any(map(is_graded, nbformat.read(path, as_version=4).cells))]
        if len(graded) == 1:
            return graded[0]
        names = ", ".join(path.name for path in graded or notebooks) or "none"
        what = "has several notebooks with cells to grade" if graded else "has no notebook with cells to grade"
        raise AutogradeError(f"{self.source} {what} ({names}): this tool grades one notebook per student; "
                             "grade such an assignment with nbgrader autograde, which the course's plugins protect too")

    def fingerprint(self) -> str:
        digest = hashlib.sha256(f"{GRADER_VERSION}/{nbgrader.__version__}/{self.course_id}".encode())
        for path in sorted(self.source.rglob("*")):
            relative = path.relative_to(self.source)
            if path.is_file() and not any(part in (".ipynb_checkpoints", "__pycache__") for part in relative.parts):
                digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()[:16]

    def config_digest(self) -> str:
        """What of the course's nbgrader_config.py can change a grade: the file, and the configuration it loads to
        (the plugins by name, the late-penalty plugin and every option)."""
        path = self.root / "nbgrader_config.py"
        digest = hashlib.sha256(path.read_bytes() if path.exists() else b"")
        digest.update(json.dumps(self.config, sort_keys=True, default=_stable_name).encode())
        return digest.hexdigest()[:16]

    def recorded_duedate(self) -> datetime | None:
        """The assignment's due date in the course's own gradebook (``nbgrader db assignment add --duedate``, or
        formgrader's "Manage Assignments"), read without writing to it; None if it has none."""
        url = self.config.CourseDirectory.get("db_url") or f"sqlite:///{self.root / 'gradebook.db'}"
        path = Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None
        if path is None or not path.is_file():
            return None
        try:
            with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as db:
                row = db.execute("SELECT duedate FROM assignment WHERE name = ?", (self.assignment,)).fetchone()
        except sqlite3.Error:
            return None
        return datetime.fromisoformat(row[0]).replace(tzinfo=timezone.utc) if row and row[0] else None

    def default_timeout(self) -> int:
        for section in ("JudgedExecute", "Execute", "ExecutePreprocessor"):
            value = self.config.get(section, {}).get("timeout")
            if isinstance(value, int) and value > 0:
                return value
        return 60


class Template:
    """The private nbgrader course every submission is graded in a copy of."""

    def __init__(self, course: Course, root: Path):
        self.course = course
        self.root = Path(root)

    @property
    def gradebook(self) -> Path:
        return self.root / "gradebook.db"

    @property
    def release_dir(self) -> Path:
        return self.root / "release" / self.course.assignment

    @property
    def release_path(self) -> Path:
        return self.release_dir / self.course.notebook_path.name

    @property
    def source_notebook(self) -> Path:
        """The template's copy of the source notebook: the reference answers the probes run on."""
        return self.root / "source" / self.course.assignment / self.course.notebook_path.name

    @property
    def grading_dir(self) -> Path:
        return self.root / "source" / self.course.assignment / FOLDER

    def grading(self) -> Grading | None:
        """The assignment's probes and judges (the template's copy), loaded once; None for a stock assignment.
        Raises :class:`~autograde.judging.GradingError` (an AutogradeError) each time, when the course requires
        judges and the assignment has none."""
        if not hasattr(self, "_grading"):  # (find raises before anything is cached: a later call raises again)
            source = nbformat.read(self.course.notebook_path, as_version=4)
            if not any(is_test(cell) for cell in source.cells):
                self._grading = None  # nothing to judge (answers graded by hand, tasks): nothing passes by itself
            else:
                required = bool(self.course.config.JudgedExecute.get("require_judges"))
                self._grading = Grading.find(self.grading_dir, required)
        return self._grading

    def prepare(self, log: logging.Logger | None = None, duedate: datetime | None = None) -> "Template":
        self.fingerprint = self.course.fingerprint()
        stamp = self.root / "fingerprint"
        if not (stamp.exists() and stamp.read_text() == self.fingerprint and self.gradebook.exists()
                and self.release_path.exists()):
            self._build(log)
            stamp.write_text(self.fingerprint)
        # Every job's gradebook is a copy of this one: nbgrader's Autograde finds the due date there.
        with Gradebook("sqlite:///" + str(self.gradebook), self.course.course_id) as gb:
            gb.update_or_create_assignment(self.course.assignment, duedate=naive_utc(duedate))
        self._load()
        return self

    def _build(self, log) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        (self.root / "source").mkdir(parents=True)
        shutil.copytree(self.course.source, self.root / "source" / self.course.assignment, ignore=IGNORED)
        config = course_config(self.course.config, self.root, self.course.assignment)
        config.GenerateAssignment.create_assignment = True
        converter = GenerateAssignment(coursedir=CourseDirectory(config=config), config=config,
                                       log=log or logging.getLogger("autograde.nbgrader"))
        try:
            converter.start()
        except Exception as exc:  # noqa: BLE001 - nbgrader's errors are plain exceptions
            raise AutogradeError(f"nbgrader could not generate {self.course.assignment!r} from its source: {exc}") from exc
        if not self.release_path.exists():
            raise AutogradeError(f"nbgrader did not produce {self.release_path}")

    def _load(self) -> None:
        self.release = nbformat.read(self.release_path, as_version=4)
        source = nbformat.read(self.course.notebook_path, as_version=4)
        with Gradebook("sqlite:///" + str(self.gradebook), self.course.course_id) as gb:
            notebook = gb.find_notebook(self.course.notebook, self.course.assignment)
            points = {cell.name: float(cell.max_score) for cell in [*notebook.grade_cells, *notebook.task_cells]}
        order = [grade_id(cell) for cell in source.cells if grade_id(cell)]
        self.cells = [GradedCell(cell_id, points[cell_id]) for cell_id in order if cell_id in points]
        self.max_score = sum(cell.points for cell in self.cells)
        self.grade_ids = [grade_id(cell) for cell in self.release.cells if grade_id(cell)]
        if self.grading():
            self.grading().check_complete(cell.metadata.nbgrader.grade_id for cell in source.cells if is_test(cell))
        self.data_files = [path for path in sorted(self.release_dir.rglob("*"))
                           if path.is_file() and path.suffix != ".ipynb"]

    def feedback_converter(self, root: Path, student: str, log) -> GenerateFeedback:
        config = course_config(self.course.config, root, self.course.assignment, student)
        config.GenerateFeedback.exporter_class = FeedbackExporter
        return GenerateFeedback(coursedir=CourseDirectory(config=config), config=config, log=log)
