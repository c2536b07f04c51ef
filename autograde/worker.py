"""Grade one submission: nbgrader's Autograde and GenerateFeedback, configured as the course says, in a job course.

Each submission is graded in an nbgrader course of its own, made from the template (:mod:`autograde.course`), in a
private folder whose name no other job can guess (``<key>-<random>``)::

    <job>/gradebook.db                                    a copy of the template's: this student only
    <job>/release/<assignment>/<notebook>.ipynb           what the students were given
    <job>/submitted/student/<assignment>/<notebook>.ipynb  the notebook, with the release's data files
    <job>/autograded/student/<assignment>/                nbgrader's output, where no kernel ever was
    <job>/feedback/student/<assignment>/<notebook>.html
    <job>/work-<random>/                                  the kernel's working folder, which nothing reads back
    <job>/kernel-<random>/, <job>/home-<random>/          the kernel's IPC folder; its home in container mode

The run root is a short folder under /tmp (Unix socket paths are short) that only the grading run and its warm
kernel server can see; a kernel sees its working folder alone (:mod:`autograde.sandbox`). The job course holds
no ``source/``: the gradebook is all nbgrader needs, and the probes and judges are the template's, which no
kernel sees. Inside, every student is called ``student``, so that a student's id never has to be a valid path.
Submissions are graded in parallel, each in a forked worker process.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import psutil
import sqlalchemy
import sqlalchemy.engine
import sqlalchemy.event
from nbgrader.api import Gradebook
from nbgrader.converters import Autograde
from nbgrader.coursedir import CourseDirectory

from . import GRADER_VERSION, AutogradeError
from . import status as st
from .course import Template, course_config, naive_utc
from .feedback import prewarm_feedback, write_status_page
from .formgrader import Submitted, answer_checksums, nbgrader_timestamp, publish, read_scores, student_folder
from .inputs import read_submission
from .execute import KERNEL_FACTS, WORK_PREFIX, JudgedExecute, remember_reference
from .preprocessors import HideHiddenTests, NotGradable, check_assignment, is_untouched, report
from .results import Result, atomic_copy, instant
from .sandbox import linux
from .sandbox.kernel import IPC_PREFIX, remove_kernel_files
from .sandbox.supervisor import Limits
from .sandbox.user import HOME_PREFIX
from .sandbox.zygote import warm_up_torch

STUDENT = "student"  # the student's id inside the job course
NOT_ISOLATED = "graded with --isolation none: the notebook ran with the grader's access to files and network"
CONTAINER_MODE = "graded in container mode"  # (autograde.sandbox.container), then what that gave the notebook
KERNEL_FOLDERS = (WORK_PREFIX, IPC_PREFIX, HOME_PREFIX)  # what a kernel wrote in a job's folder, never kept


@dataclass
class Job:
    student_id: str
    path: str | None  # the submitted file; None when discovery found nothing to grade
    origin: str
    key: str  # the job course's folder name: short, safe, unique
    feedback_path: str
    known_status: str | None = None
    known_detail: str = ""  # why known_status
    notes: list[str] = field(default_factory=list)
    cache_key: str = ""
    name: str = ""
    lms: str = "plain"
    submitted_at: str | None = None  # ISO 8601, UTC: the LMS's or the exchange's time (drives late penalties)
    exchange_files: dict[str, str] = field(default_factory=dict)  # nbgrader's timestamp.txt, submission_secret.txt
    grading_settings: dict = field(default_factory=dict)  # what decides the grade besides the file (run.py)

    def new_result(self, template: Template, settings: "Settings") -> Result:
        """The result of this job before it is graded: no score yet."""
        result = Result(student_id=self.student_id, origin=self.origin, feedback=self.feedback_path,
                        max_score=template.max_score, cache_key=self.cache_key, notes=list(self.notes),
                        name=self.name, lms=self.lms, submitted_at=self.submitted_at,
                        fingerprint=template.fingerprint, grader_version=GRADER_VERSION,
                        grading_settings=dict(self.grading_settings))
        if settings.isolation_note:
            result.add(note=settings.isolation_note)
        result.mark_late(self.grading_settings.get("due"))
        return result


@dataclass
class Settings:
    """What every job of a run shares."""

    run_root: str  # short, under /tmp: the job courses and the kernels' sockets
    work_dir: str  # --out/.autograde: job courses kept for the instructor go to failed/ (grader errors) or jobs/
    timeout: int = 60
    limits: Limits = field(default_factory=Limits)
    isolation: str = "bwrap"
    isolation_note: str = ""  # every row's note when the isolation is less than bwrap's (isolation_note())
    warm_server: str | None = None
    threads: int | None = None
    keep_work: bool = False
    max_output_bytes: int = 200_000
    class_course: str | None = None  # --out/nbgrader: the whole class, for formgrader
    seed: int = 0  # the probes' seed for this run (0: each process draws its own)
    due: str | None = None  # the assignment's due date (ISO 8601, UTC); a job's own differs by an extension


def isolation_note(isolation: str) -> str:
    """The note every row gets in this mode of isolation: what the notebook ran with, unless bubblewrap's sandbox."""
    if isolation == "container":
        from .sandbox.container import description

        return f"{CONTAINER_MODE}: {description()}"
    return NOT_ISOLATED if isolation == "none" else ""


def prewarm(template: Template) -> None:
    """Work every worker would repeat, done once in the process they are forked from: compile the feedback
    templates and the pattern of hidden-test lines, and import the assignment's judges (and torch with them)."""
    converter = template.feedback_converter(template.root, STUDENT, logging.getLogger("autograde"))
    prewarm_feedback(converter.config, template.release)
    source = nbformat.read(template.course.notebook_path, as_version=4)
    HideHiddenTests().preprocess(source, {})  # (which removes the hidden tests from *source*)
    template.grading()


def prepare_reference(template: Template, settings: Settings) -> None:
    """The probes' observations of the reference answers with this run's seed, computed once before the workers
    fork (they inherit them), and judged once (see `Grading.rehearse`). The kernel runs in a forked child, so that
    this process forks its workers without an event loop or a kernel client of its own."""
    grading = template.grading()
    if grading is None:
        return
    jobdir = Path(tempfile.mkdtemp(prefix="reference-", dir=settings.run_root))
    executor = JudgedExecute(config=_job_config(template, jobdir, settings))
    receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)

    def observe() -> None:
        try:
            send.send(json.dumps({"observed": executor.reference(grading, template.source_notebook)}))
        except Exception as error:  # noqa: BLE001 - the parent says what went wrong
            send.send(json.dumps({"error": f"{type(error).__name__}: {error}"}))

    child = multiprocessing.get_context("fork").Process(target=observe, name="autograde-reference")
    child.start()
    send.close()  # the child's end alone is left: its death, answered or not, ends the wait below
    # The workers fork from this process: judged once here (below), they start with what the judges set up on first
    # use. torch's share of that, its one-off imports, is paid while the child runs the reference. With one torch
    # thread, since a thread pool started here would not survive the fork (judges' tensors are small).
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
        warm_up_torch(sys.modules["torch"])
    try:
        answer = json.loads(receive.recv())
    except EOFError:  # it died without answering (a segfault, the OOM killer)
        answer = {"error": "the reference run ended early"}
    child.join()
    if "error" in answer:
        raise AutogradeError(f"the reference answers could not be probed: {answer['error'][:2000]}")
    remember_reference(executor.reference_key(grading, template.source_notebook), answer["observed"])
    grading.rehearse(answer["observed"], executor.run_seed())


def run_job(job: Job, template: Template, settings: Settings) -> Result:
    """Grade *job*; never raises: every outcome is a result."""
    started = time.monotonic()
    linux.become_subreaper()  # what a cold kernel's sandbox might leave behind lands here, and is killed
    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "connect", _throwaway_sqlite)
    # A private folder of an unpredictable name: nothing of another job can be aimed at this one's files.
    jobdir = Path(tempfile.mkdtemp(prefix=f"{job.key}-", dir=settings.run_root))
    log = _job_logger(jobdir)
    result = job.new_result(template, settings)
    try:
        nb = _read(job, template)
        _note_untouched(nb, template, result)
        _grade(nb, job, jobdir, template, settings, log, result)
    except NotGradable as exc:
        fail(result, template, exc.status, exc.detail)
    except Exception as exc:  # noqa: BLE001 - a bug or an environment problem: still a row, status says so
        log.error("grader error:\n%s", traceback.format_exc())
        evidence = Path(settings.work_dir) / "failed" / jobdir.name
        fail(result, template, st.GRADER_ERROR,
             f"grader error: {type(exc).__name__}: {str(exc)[:300]} (log: {evidence / 'grading.log'})",
             shown="The grader could not grade this notebook; your instructor has been told.")
    finally:
        _kill_children()
        for handler in list(log.handlers):
            handler.close()
            log.removeHandler(handler)
    result.seconds = round(time.monotonic() - started, 2)
    _clean_up(jobdir, result, settings)
    return result


def fail(result: Result, template: Template, status: str, detail: str, shown: str | None = None) -> Result:
    """*result* for a submission that could not be graded: *status*, zero for every cell, and a feedback page that
    says why (*shown*, else *detail*)."""
    result.add(status, detail)
    result.cells = {cell.grade_id: 0.0 for cell in template.cells}
    result.score = 0.0
    write_status_page(result.feedback, result.student_id, template.course.assignment, status, shown or detail,
                      template.max_score)
    return result


def _read(job: Job, template: Template) -> nbformat.NotebookNode:
    if job.known_status or job.path is None:
        raise NotGradable(job.known_status or st.NO_NOTEBOOK, job.known_detail or "nothing to grade")
    nb = read_submission(Path(job.path).read_bytes(), os.path.basename(job.path))
    check_assignment(nb, template.release)
    return nb


def _note_untouched(nb, template: Template, result: Result) -> None:
    if is_untouched(nb, template.release):
        result.add(st.NOT_ATTEMPTED, "every answer cell is the release's, unchanged")


def _grade(nb, job: Job, jobdir: Path, template: Template, settings: Settings, log, result: Result) -> None:
    course = template.course
    _make_job_course(nb, jobdir, template, job.submitted_at)
    config = _job_config(template, jobdir, settings)
    due = job.grading_settings.get("due")
    if due != settings.due:  # an extension: the job's gradebook holds this student alone, so its due date moves
        with Gradebook(config.CourseDirectory.db_url, course.course_id) as gb:
            gb.update_or_create_assignment(course.assignment, duedate=naive_utc(instant(due)))
    converter = _Autograde(coursedir=CourseDirectory(config=config), config=config, log=log)
    converter.force = True
    converter.start()
    autograded = jobdir / "autograded" / STUDENT / course.assignment
    graded_nb = nbformat.read(autograded / f"{course.notebook}.ipynb", as_version=4)
    lost = _read_report(graded_nb, result)
    result.kernel = "warm" if converter.kernel_facts.get("warm") else "cold"
    result.kernel_cpu_s = converter.kernel_facts.get("kernel_cpu_s")
    with Gradebook(config.CourseDirectory.db_url, course.course_id) as gb:
        notebook = gb.find_submission_notebook(course.notebook, course.assignment, STUDENT)
        for grade in notebook.grades:
            if grade.name in lost:  # the answer is somewhere in the notebook: a person grades it, never "no response"
                grade.auto_score, grade.needs_manual_grade = None, True
        gb.db.commit()
    _render_feedback(template, jobdir, log, result)
    with Gradebook(config.CourseDirectory.db_url, course.course_id) as gb:
        notebook = gb.find_submission_notebook(course.notebook, course.assignment, STUDENT)
        read_scores(notebook, result)
        result.max_score = float(notebook.max_score)
        book = {"grades": {grade.name: [grade.auto_score, bool(grade.needs_manual_grade)] for grade in notebook.grades},
                "comments": {comment.name: comment.auto_comment for comment in notebook.comments},
                "late_penalty": notebook.late_submission_penalty, "timestamp": job.submitted_at,
                "answers": answer_checksums(graded_nb)}
    if settings.class_course and student_folder(result.student_id):
        class_course = Path(settings.class_course)
        publish(class_course, result.student_id, course.assignment, Submitted(
            Path(job.path), autograded, f"{course.notebook}.ipynb", job.submitted_at,
            {name: Path(path) for name, path in job.exchange_files.items()}))
        result.gradebook = book


class _Autograde(Autograde):
    """nbgrader's Autograde, keeping what JudgedExecute measured of the kernel (in the resources it writes the
    autograded notebook with)."""

    kernel_facts: dict = {}

    def write_single_notebook(self, output, resources) -> None:
        self.kernel_facts = resources.get(KERNEL_FACTS, self.kernel_facts)
        super().write_single_notebook(output, resources)


def _make_job_course(nb, jobdir: Path, template: Template, submitted_at: str | None) -> None:
    shutil.copyfile(template.gradebook, jobdir / "gradebook.db")
    release = jobdir / "release" / template.course.assignment  # RestoreCells reads it, as in the real course
    release.mkdir(parents=True)
    shutil.copyfile(template.release_path, release / template.release_path.name)
    submitted = jobdir / "submitted" / STUDENT / template.course.assignment
    submitted.mkdir(parents=True)
    nbformat.write(nb, submitted / f"{template.course.notebook}.ipynb")
    if submitted_at:  # nbgrader's Autograde reads it, and its late-penalty plugin charges what is late
        (submitted / "timestamp.txt").write_text(nbgrader_timestamp(submitted_at))
    for path in template.data_files:  # nbgrader copies them next to the autograded notebook
        target = submitted / path.relative_to(template.release_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _job_config(template: Template, jobdir: Path, settings: Settings):
    course = template.course
    config = course_config(course.config, jobdir, course.assignment, STUDENT)
    config.CourseDirectory.course_id = course.course_id
    execute = config.JudgedExecute
    execute.timeout = settings.timeout
    execute.max_output_bytes = settings.max_output_bytes
    execute.seed = settings.seed
    execute.grading_dir = str(template.grading_dir)
    execute.reference_notebook = str(template.source_notebook)
    kernels = config.IsolatedKernelManager
    kernels.isolation = settings.isolation
    kernels.warm_server = settings.warm_server
    kernels.runtime_root = str(jobdir)
    kernels.threads = settings.threads or 0
    kernels.kernel_log = str(jobdir / "kernel.log")
    limits = settings.limits
    kernels.memory_mb, kernels.max_processes = limits.memory_mb, limits.max_processes
    kernels.max_file_mb, kernels.tmp_mb = limits.max_file_mb, limits.tmp_mb
    return config


def _read_report(autograded: nbformat.NotebookNode, result: Result) -> set[str]:
    """What the plugins recorded while grading (written by the grader's process, never by the kernel); returns the
    answers graded by hand that RestoreCells could not find."""
    found = report(autograded)
    if found.get("restored"):
        result.add(note="restored from the source: " + ", ".join(found["restored"]))
    for status in found.get("statuses", []):
        result.add(status)
    for note in found.get("notes", []):
        result.add(note=note)
    return set(found.get("answers_lost", []))


def _render_feedback(template: Template, jobdir: Path, log, result: Result) -> None:
    converter = template.feedback_converter(jobdir, STUDENT, log)
    converter.force = True
    converter.start()
    course = template.course
    atomic_copy(jobdir / "feedback" / STUDENT / course.assignment / f"{course.notebook}.html", Path(result.feedback))


def _clean_up(jobdir: Path, result: Result, settings: Settings) -> None:
    """Keep the job course of a grader error (evidence) or of --keep-work under --out, but for what a kernel wrote
    there (nothing of it is ever copied); delete the others. Never raises: a failure is a note of this result."""
    kept = "failed" if st.GRADER_ERROR in result.statuses else "jobs" if settings.keep_work else None
    if kept is None:
        remove_kernel_files(str(jobdir))  # (the grader's own files with them; never raises)
        return
    try:
        kernels = [entry.path for entry in os.scandir(jobdir) if entry.name.startswith(KERNEL_FOLDERS)]
        for path in kernels:
            remove_kernel_files(path)
        if any(os.path.lexists(path) for path in kernels):
            raise OSError("what the kernel wrote there could not be removed")
        target = Path(settings.work_dir) / kept / jobdir.name
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(jobdir), target)
    except Exception as exc:  # noqa: BLE001 - the grade stands; the instructor learns what was not kept
        result.add(note=f"the job's folder was not kept in {kept}/: {type(exc).__name__}: {exc}")


def _kill_children() -> None:
    """Nothing this job started may outlive it (a supervisor's sandbox, an orphan that landed here)."""
    for process in psutil.Process().children(recursive=True):
        try:
            process.kill()
        except psutil.Error:
            pass
    for process in psutil.Process().children():
        try:
            process.wait(5)
        except psutil.Error:
            pass


def _throwaway_sqlite(dbapi_connection, _record):
    """The job's gradebook is a scratch copy: no need to wait for the disk at each of nbgrader's commits."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous = OFF")
    cursor.execute("PRAGMA journal_mode = MEMORY")
    cursor.close()


def _job_logger(jobdir: Path) -> logging.Logger:
    log = logging.getLogger(f"autograde.job.{jobdir.name}")
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = logging.FileHandler(jobdir / "grading.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return log
