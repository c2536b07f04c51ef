"""Grade one submission: nbgrader's Autograde and GenerateFeedback converters in a private course.

Each submission gets its own nbgrader course folder, a copy of the template (:mod:`autograde.course`)::

    jobs/<key>/source -> template/source        (symlink: the instructor's files, read only)
    jobs/<key>/gradebook.db                     (copy of the template's: this student only)
    jobs/<key>/submitted/student/<assignment>/<notebook>.ipynb
    jobs/<key>/autograded/..., feedback/...     (written by nbgrader)

so that submissions can be graded in parallel without sharing a gradebook, and a student's name
never has to be a valid nbgrader path component (inside, every student is called ``student``).
The work runs in a process of its own (forked by :mod:`autograde.scheduler`), which is a subreaper:
whatever the kernel leaves behind is killed before the worker reports its result.
"""
from __future__ import annotations

import logging
import os
import resource
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import sqlalchemy
import sqlalchemy.event
import sqlalchemy.engine
from nbgrader.api import Gradebook
from nbgrader.converters import Autograde, GenerateFeedback
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import Execute

from . import kernels
from . import status as st
from .course import Template, course_config
from .execute import GuardedExecute
from .feedback import FeedbackExporter, prewarm_feedback
from .formgrader import publish_autograded, publish_submitted, read_scores, student_folder
from .normalize import NotGradable, RestoreCells, read_submission
from .report import atomic_copy, write_status_page
from .sandbox import Limits, become_subreaper, kill_descendants, read_status

STUDENT = "student"  # the student's id inside the private course


@dataclass
class Job:
    student_id: str
    path: str | None  # the submitted file; None when discovery found nothing to grade
    origin: str
    key: str  # folder name for this job: safe, unique
    feedback_path: str
    known_status: str | None = None
    notes: list[str] = field(default_factory=list)
    cache_key: str = ""


@dataclass
class Settings:
    """What every job of a run shares."""

    jobs_dir: str
    timeout: int = 60
    limits: Limits = field(default_factory=Limits)
    warm_socket: str | None = None
    threads: int | None = None
    guard: bool = True
    keep_work: bool = False
    max_output_bytes: int = 200_000
    class_course: str | None = None  # --out/nbgrader: the whole class, for formgrader
    ipc_root: str = "/tmp"  # kernels' sockets go in <ipc_root>/<worker pid>/ (short: Unix socket paths are limited)


class SandboxedAutograde(Autograde):
    """nbgrader's Autograde converter, with GuardedExecute in place of Execute."""

    def __init__(self, execute: GuardedExecute, **kwargs):
        super().__init__(**kwargs)
        self._guarded_execute = execute

    def _init_preprocessors(self) -> None:
        self.exporter._preprocessors = []
        chosen = self.sanitize_preprocessors if self._sanitizing else self.autograde_preprocessors
        for pp in chosen:
            if isinstance(pp, type) and issubclass(pp, Execute):
                pp = self._guarded_execute
            self.exporter.register_preprocessor(pp)


def _throwaway_sqlite(dbapi_connection, _record):
    """The job's gradebook is a scratch copy: no need to wait for the disk at each of nbgrader's commits."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous = OFF")
    cursor.execute("PRAGMA journal_mode = MEMORY")
    cursor.close()


def prewarm(template: Template) -> None:
    """Work every worker would repeat, done once in the process they are forked from."""
    course = template.course
    config = course_config(course.config, template.root, course.assignment, STUDENT)
    converter = GenerateFeedback(coursedir=CourseDirectory(config=config), config=config,
                                 log=logging.getLogger("autograde"))
    prewarm_feedback(converter.config, template.release)


def run_job(job: Job, template: Template, settings: Settings) -> dict:
    """Grade *job*; never raises: every outcome is a result row."""
    started = time.monotonic()
    become_subreaper()
    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "connect", _throwaway_sqlite)
    jobdir = Path(settings.jobs_dir) / job.key
    shutil.rmtree(jobdir, ignore_errors=True)
    jobdir.mkdir(parents=True)
    log = _job_logger(jobdir)
    result = new_result(job, template)
    try:
        if job.known_status or job.path is None:
            raise NotGradable(job.known_status or st.NO_NOTEBOOK, "; ".join(job.notes) or "nothing to grade")
        data = Path(job.path).read_bytes()
        nb = read_submission(data, os.path.basename(job.path))
        resources = {}
        RestoreCells(release=template.release, log=log).preprocess(nb, resources)
        info = resources.get("autograde", {})
        result["statuses"] += sorted(info.get("statuses", ()))
        if info.get("restored"):
            result["notes"].append("restored from the source: " + ", ".join(info["restored"]))
        attempts = [settings.warm_socket, None] if settings.warm_socket else [None]
        for attempt, warm in enumerate(attempts):
            try:
                _grade(nb, job.path, jobdir, template, settings, warm, log, result)
                break
            except Exception:
                log.error("grading failed (%s kernel):\n%s", "warm" if warm else "cold", traceback.format_exc())
                if attempt == len(attempts) - 1:
                    raise
                result["statuses"] = [s for s in result["statuses"] if s == st.RESTORED]
    except NotGradable as exc:
        fail(result, job, template, exc.status, exc.detail)
    except Exception as exc:  # noqa: BLE001 - a bug or an environment problem: still a row, status says so
        log.error("grader error:\n%s", traceback.format_exc())
        failed = Path(settings.jobs_dir).parent / "failed" / job.key
        fail(result, job, template, st.GRADER_ERROR,
             f"grader error: {type(exc).__name__}: {str(exc)[:300]} (log: {failed / 'grading.log'})",
             shown="The grader could not grade this notebook; your instructor has been told.")
    finally:
        kill_descendants()
        for handler in list(log.handlers):
            handler.close()
            log.removeHandler(handler)
    result["status"] = st.most_severe(result["statuses"])
    result["seconds"] = round(time.monotonic() - started, 2)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["grader_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    result["kernel_cpu_s"] = read_status(str(jobdir / "kernel-status.json")).get("kernel_cpu_s")
    if st.GRADER_ERROR in result["statuses"]:  # keep the evidence where the next run will not delete it
        failed = Path(settings.jobs_dir).parent / "failed" / job.key
        shutil.rmtree(failed, ignore_errors=True)
        failed.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(jobdir), failed)
    elif not settings.keep_work:
        shutil.rmtree(jobdir, ignore_errors=True)
    return result


def new_result(job: Job, template: Template) -> dict:
    """The result row of *job* before it is graded: no score yet."""
    return {"student_id": job.student_id, "origin": job.origin, "statuses": [], "notes": list(job.notes),
            "cells": {}, "needs_manual_grade": 0, "score": 0.0, "max_score": template.max_score,
            "feedback": job.feedback_path, "cache_key": job.cache_key}


def fail(result: dict, job: Job, template: Template, status: str, detail: str, shown: str | None = None) -> dict:
    """*result* for a submission that could not be graded: *status*, zero for every cell, and a feedback
    page that says why (*shown*, else *detail*)."""
    result["statuses"].append(status)
    result["notes"].append(detail)
    result["cells"] = {cell.grade_id: 0.0 for cell in template.cells}
    result["score"] = 0.0
    write_status_page(job.feedback_path, job.student_id, template.course.assignment, status, shown or detail,
                      template.max_score)
    return result


def _job_logger(jobdir: Path) -> logging.Logger:
    log = logging.getLogger(f"autograde.job.{jobdir.name}")
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = logging.FileHandler(jobdir / "grading.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return log


def _grade(nb, original, jobdir: Path, template: Template, settings: Settings, warm_socket, log, result) -> None:
    course = template.course
    for name in ("submitted", "autograded", "feedback", "source", "gradebook.db", "kernel-status.json"):
        path = jobdir / name
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)
    (jobdir / "source").symlink_to(template.root / "source", target_is_directory=True)
    shutil.copyfile(template.gradebook, jobdir / "gradebook.db")
    submitted = jobdir / "submitted" / STUDENT / course.assignment
    submitted.mkdir(parents=True)
    nbformat.write(nb, submitted / f"{course.notebook}.ipynb")

    kernels.SETTINGS.__dict__.update(
        limits=settings.limits, status_path=str(jobdir / "kernel-status.json"), log_path=str(jobdir / "kernel.log"),
        ipc_dir=os.path.join(settings.ipc_root, str(os.getpid())), warm_socket=warm_socket,
        threads=settings.threads)

    config = course_config(course.config, jobdir, course.assignment, STUDENT)
    config.CourseDirectory.course_id = course.course_id
    # Through the config, not keyword arguments: nbclient re-applies the config when it starts a notebook.
    ours = config.GuardedExecute
    ours.timeout = settings.timeout
    ours.guard = settings.guard
    ours.kernel_manager_class = kernels.SandboxKernelManager
    ours.max_output_bytes = settings.max_output_bytes
    ours.pins = template.pins
    ours.builtin_names = template.builtin_names
    ours.protected_modules = template.protected_modules
    ours.kernel_status_path = kernels.SETTINGS.status_path
    ours.shutdown_kernel = "immediate"  # the supervisor kills the kernel and its processes at once
    execute = GuardedExecute(config=config, log=log)
    coursedir = CourseDirectory(config=config)
    converter = SandboxedAutograde(execute, coursedir=coursedir, config=config, log=log)
    converter.force = True
    try:
        converter.start()
    finally:
        shutil.rmtree(kernels.SETTINGS.ipc_dir, ignore_errors=True)
    report = execute.report
    result["kernel"] = "warm" if kernels.SETTINGS.started_warm else "cold"
    result["statuses"] += sorted(report["statuses"])
    result["notes"] += list(dict.fromkeys(report["notes"]))
    if report["tampering"]:
        result["notes"].append("tampering: " + "; ".join(report["tampering"]))

    config.GenerateFeedback.preprocessors = course.feedback_preprocessors()
    config.GenerateFeedback.exporter_class = FeedbackExporter
    feedback = GenerateFeedback(coursedir=CourseDirectory(config=config), config=config, log=log)
    feedback.force = True
    feedback.start()
    atomic_copy(jobdir / "feedback" / STUDENT / course.assignment / f"{course.notebook}.html",
                Path(result["feedback"]))

    with Gradebook(config.CourseDirectory.db_url, course.course_id) as gb:
        notebook = gb.find_submission_notebook(course.notebook, course.assignment, STUDENT)
        read_scores(notebook, result)
        result["max_score"] = float(notebook.max_score)
        book = {"grades": {grade.name: [grade.auto_score, bool(grade.needs_manual_grade)] for grade in notebook.grades},
                "comments": {comment.name: comment.auto_comment for comment in notebook.comments}}
    if settings.class_course and student_folder(result["student_id"]):
        class_course = Path(settings.class_course)
        publish_autograded(jobdir / "autograded" / STUDENT / course.assignment,
                           class_course / "autograded" / result["student_id"] / course.assignment)
        publish_submitted(Path(original), class_course / "submitted" / result["student_id"] / course.assignment /
                          f"{course.notebook}.ipynb")
        result["gradebook"] = book
