"""One grading run, end to end: ``python -m autograde grade`` calls :func:`grade`.

1. (:mod:`autograde.cli`, before nbgrader is imported) Check that kernels can be isolated here, unless
   ``--isolation none``; start the warm kernel server, which imports torch meanwhile (:mod:`autograde.sandbox`).
2. Build (or reuse) the template course from ``source/<assignment>`` (:mod:`autograde.course`).
3. Unzip the submissions if needed, and find one per student (:mod:`autograde.inputs`).
4. Reuse cached results; grade the rest in parallel (:mod:`autograde.scheduler`).
5. Merge into the class course, write grades.csv and the feedback pages, print the summary.

Everything the run writes goes under ``--out`` and a private folder under /tmp; the instructor's course and the
submissions are only read.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import sys
import time
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy.exc

from resnet_course.cores import available_cores

from . import GRADER_VERSION, AutogradeError
from .course import Course, Template
from .formgrader import FormgraderCourse
from .inputs import NotebookChooser, discover, open_submissions
from .results import Cache, Result, cache_key, summary, write_grades
from .sandbox.supervisor import Limits
from .sandbox.zygote import WarmKernelServer
from .scheduler import Scheduler
from .worker import Job, Settings, prewarm


@dataclass
class Options:
    submissions: Path
    assignment: str
    out: Path
    course: Path
    run_root: str  # short, private, under /tmp: the job courses and the kernels' sockets (see cli.py)
    server: WarmKernelServer | None = None  # warm kernels (started early, see cli.py); None: cold kernels
    jobs: int = 0  # 0: one per core
    timeout: int | None = None  # None: the course's Execute.timeout, else 60
    memory_mb: int = 2048
    force: bool = False
    progress: bool = True
    keep_work: bool = False
    isolation: str = "bwrap"  # bwrap: the OS isolates every kernel; none: kernels run with your access


def feedback_name(student_id: str) -> str:
    """``<student_id>.html``, shortened (with a hash) only if the file system could not hold it."""
    name = f"{student_id}.html"
    if len(name.encode("utf-8", "surrogateescape")) <= 250:
        return name
    digest = hashlib.sha1(student_id.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    head = student_id.encode("utf-8", "surrogateescape")[:200].decode("utf-8", "ignore")
    return f"{head}~{digest}.html"


def grade(options: Options, stream=sys.stdout) -> list[Result]:
    started = time.monotonic()
    # nbgrader's own gradebook code trips SQLAlchemy's autoflush warnings; they are not ours to show.
    warnings.filterwarnings("ignore", category=sqlalchemy.exc.SAWarning)
    out = options.out.resolve()
    work = out / ".autograde"
    for folder in (work, out / "feedback"):
        folder.mkdir(parents=True, exist_ok=True)
    with _exclusive(work / "lock", out):
        try:
            return _grade(options, out, work, started, stream)
        finally:
            shutil.rmtree(work / f"input-{os.getpid()}", ignore_errors=True)


class _exclusive:
    """One grading run per --out folder at a time."""

    def __init__(self, path: Path, out: Path):
        self.path, self.out = path, out

    def __enter__(self):
        self.file = open(self.path, "w")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise AutogradeError(f"another grading run is writing to {self.out}; wait for it to finish") from None

    def __exit__(self, *exc_info):
        self.file.close()


def _grade(options: Options, out: Path, work: Path, started: float, stream) -> list[Result]:
    log = _run_logger(work)
    course = Course(options.course, options.assignment)
    template = Template(course, work / "template").prepare(log)
    cores = available_cores()
    jobs = options.jobs or cores
    timeout = options.timeout or course.default_timeout()
    class_course = FormgraderCourse(out / "nbgrader", template).prepare()
    server = options.server
    settings = Settings(run_root=options.run_root, work_dir=str(work), timeout=timeout,
                        limits=Limits(memory_mb=options.memory_mb), isolation=options.isolation,
                        threads=max(1, cores // jobs), keep_work=options.keep_work,
                        class_course=str(class_course.root))
    cache = Cache(work / "cache")
    results, todo = _plan(options, out, work, template, settings, cache, class_course, log)
    reused = len(results)
    if todo:
        if server is not None:
            if server.wait_ready():
                settings.warm_server = server.socket_path
            else:
                log.warning("the warm kernel server did not start (see %s); using cold kernels",
                            work / "warm-server.log")
        prewarm(template)
    deadline = 120 + timeout * (sum(1 for c in template.release.cells if c.cell_type == "code") + 2)
    scheduler = Scheduler(template, settings, jobs, deadline, progress=options.progress,
                          keep_alive={server.process.pid} if server and server.process else ())
    results += scheduler.run(todo, on_result=cache.put)
    _publish(results, out, template, class_course, cache, log)
    try:
        print(summary(results, template.max_score, time.monotonic() - started, jobs, reused, out,
                      course.assignment, options.isolation), file=stream, flush=True)
    except BrokenPipeError:  # `... | head`: the results are written all the same
        pass
    return results


def _plan(options, out, work, template, settings, cache, class_course, log) -> tuple[list[Result], list[Job]]:
    """One job per student found; the results an earlier run already has are reused instead."""
    input_dir = work / f"input-{os.getpid()}"
    root, input_notes, truncated = open_submissions(options.submissions, input_dir)
    chooser = NotebookChooser(template.course.notebook, template.course.assignment, template.grade_ids)
    found = discover(root, chooser, input_dir / "nested", truncated)
    if input_notes:
        log.warning("while unzipping: %s", "; ".join(input_notes))
    grading = {"timeout": settings.timeout, "memory_mb": options.memory_mb, "isolation": options.isolation,
               "max_output_bytes": settings.max_output_bytes, "version": GRADER_VERSION}
    results, todo = [], []
    for index, submission in enumerate(found):
        job = Job(student_id=submission.student_id, path=str(submission.path) if submission.path else None,
                  origin=submission.origin, key=f"{index:05d}",
                  feedback_path=str(out / "feedback" / feedback_name(submission.student_id)),
                  known_status=submission.status, notes=list(submission.notes))
        job.cache_key = cache_key(job.path, job.known_status, template.fingerprint, grading)
        cached = None if options.force else cache.get(job.student_id, job.cache_key)
        if cached and cached.gradebook and not class_course.autograded_path(job.student_id).exists():
            cached = None  # its notebook is gone from the class course: grade it again
        if cached:
            cached.origin = job.origin
            results.append(cached)
        else:
            todo.append(job)
    return results, todo


def _publish(results: list[Result], out: Path, template: Template, class_course, cache: Cache, log) -> None:
    """The class course (automatic scores in, hand grades back out), grades.csv, the feedback pages."""
    class_course.merge(results)
    for result in results:
        if result.manual != result.feedback_manual:
            try:
                class_course.render_feedback(result)
                result.feedback_manual = result.manual
            except Exception:  # noqa: BLE001 - the automatic feedback page stays
                log.exception("could not render the feedback of %s with its manual grades", result.student_id)
        cache.put(result)
    write_grades(out / "grades.csv", results, [cell.grade_id for cell in template.cells])
    _remove_stale_feedback(out / "feedback", {Path(r.feedback).name for r in results})


def _run_logger(work: Path) -> logging.Logger:
    log = logging.getLogger("autograde")
    if not log.handlers:
        handler = logging.FileHandler(work / "autograde.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def _remove_stale_feedback(folder: Path, keep: set[str]) -> None:
    """Feedback pages an earlier run wrote for students who are not in this class any more."""
    keep = {unicodedata.normalize("NFC", name) for name in keep}
    for page in folder.glob("*.html"):
        if unicodedata.normalize("NFC", page.name) not in keep:
            page.unlink()
