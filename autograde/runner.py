"""One grading run, end to end: ``python -m autograde grade`` calls :func:`grade`.

1. Build (or reuse) the template course from ``source/<assignment>`` (:mod:`autograde.course`).
2. Meanwhile the warm kernel server, which the command line started first, imports torch (:mod:`autograde.zygote`).
3. Unzip the submissions if needed, and find one per student (:mod:`autograde.submissions`).
4. Reuse cached results; grade the rest in parallel (:mod:`autograde.scheduler`).
5. Write grades.csv and the feedback pages, print the summary (:mod:`autograde.report`).

Everything the run needs to write goes under ``--out``: the instructor's course and the
submissions are only read.
"""
from __future__ import annotations

import fcntl
import logging
import os
import shutil
import sys
import tempfile
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
from .report import Cache, cache_key, summary, write_grades
from .sandbox import Limits, become_subreaper, kill_descendants
from .scheduler import Scheduler
from .submissions import NotebookChooser, discover, open_submissions
from .worker import Job, Settings, prewarm
from .zygote import WarmKernelServer


@dataclass
class Options:
    submissions: Path
    assignment: str
    out: Path
    course: Path
    jobs: int = 0  # 0: one per core
    timeout: int | None = None  # None: the course's Execute.timeout, else 60
    memory_mb: int = 2048
    force: bool = False
    progress: bool = True
    keep_work: bool = False
    guard: bool = True
    server: WarmKernelServer | None = None  # warm kernels: a server started early (see cli.py); None: cold kernels


def feedback_name(student_id: str) -> str:
    """``<student_id>.html``, shortened (with a hash) only if the file system could not hold it."""
    name = f"{student_id}.html"
    if len(name.encode("utf-8", "surrogateescape")) <= 250:
        return name
    import hashlib

    digest = hashlib.sha1(student_id.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    head = student_id.encode("utf-8", "surrogateescape")[:200].decode("utf-8", "ignore")
    return f"{head}~{digest}.html"


def grade(options: Options, stream=sys.stdout) -> list[dict]:
    started = time.monotonic()
    # nbgrader's own gradebook code trips SQLAlchemy's autoflush warnings; they are not ours to show.
    warnings.filterwarnings("ignore", category=sqlalchemy.exc.SAWarning)
    become_subreaper()
    out = options.out.resolve()
    work = out / ".autograde"
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(exist_ok=True)
    (out / "feedback").mkdir(exist_ok=True)
    lock = open(work / "lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise AutogradeError(f"another grading run is writing to {out}; wait for it to finish") from None
    log = logging.getLogger("autograde")
    if not log.handlers:
        handler = logging.FileHandler(work / "autograde.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False

    course = Course(options.course, options.assignment)
    template = Template(course, work / "template").prepare(log)
    cores = available_cores()
    jobs = options.jobs or cores
    timeout = options.timeout or course.default_timeout()

    server = options.server
    ipc_root = None
    try:
        input_dir = work / f"input-{os.getpid()}"
        root, input_notes, truncated = open_submissions(options.submissions, input_dir)
        chooser = NotebookChooser(course.notebook, course.assignment, template.grade_ids)
        found = discover(root, chooser, input_dir / "nested", truncated)
        if input_notes:
            log.warning("while unzipping: %s", "; ".join(input_notes))

        ipc_root = tempfile.mkdtemp(prefix="autograde-", dir="/tmp")
        class_course = FormgraderCourse(out / "nbgrader", template).prepare()
        settings = Settings(jobs_dir=str(work / "jobs"), timeout=timeout, limits=Limits(memory_mb=options.memory_mb),
                            threads=max(1, cores // jobs), guard=options.guard,
                            keep_work=options.keep_work, class_course=str(class_course.root), ipc_root=ipc_root)
        grading_settings = {"timeout": timeout, "memory_mb": options.memory_mb, "guard": options.guard,
                            "max_output_bytes": settings.max_output_bytes, "version": GRADER_VERSION}
        cache = Cache(work / "cache")
        results, todo = [], []
        for index, submission in enumerate(found):
            job = Job(student_id=submission.student_id, path=str(submission.path) if submission.path else None,
                      origin=submission.origin, key=f"{index:05d}",
                      feedback_path=str(out / "feedback" / feedback_name(submission.student_id)),
                      known_status=submission.status, notes=list(submission.notes))
            job.cache_key = cache_key(job.path, job.known_status, template.fingerprint, grading_settings)
            cached = None if options.force else cache.get(job.student_id, job.cache_key)
            if cached and cached.get("gradebook") and not class_course.autograded_path(job.student_id).exists():
                cached = None  # its notebook is gone from the class course: grade it again
            if cached:
                cached["origin"] = job.origin
                results.append(cached)
            else:
                todo.append(job)
        reused = len(results)

        if todo and server is not None:
            if server.wait_ready():
                settings.warm_socket = server.socket_path
            else:
                log.warning("the warm kernel server did not start (see %s); using cold kernels", work / "zygote.log")
        if todo:
            prewarm(template)
        deadline = 120 + timeout * (sum(1 for c in template.release.cells if c.cell_type == "code") + 2)
        scheduler = Scheduler(template, settings, jobs, deadline, progress=options.progress,
                              keep_alive={server.process.pid} if server and server.process else ())
        results += scheduler.run(todo, on_result=cache.put)

        # The class course: automatic scores in, manual scores (from formgrader) back out.
        class_course.merge(results)
        for result in results:
            if result.get("manual") != result.get("feedback_manual"):
                try:
                    class_course.render_feedback(result)
                    result["feedback_manual"] = result.get("manual")
                except Exception:  # noqa: BLE001 - the automatic feedback page stays
                    log.exception("could not render the feedback of %s with its manual grades", result["student_id"])
            cache.put(result)

        write_grades(out / "grades.csv", results, [cell.grade_id for cell in template.cells])
        _remove_stale_feedback(out / "feedback", {Path(r["feedback"]).name for r in results})
        try:
            print(summary(results, template.max_score, time.monotonic() - started, jobs, reused, out,
                          course.assignment), file=stream, flush=True)
        except BrokenPipeError:  # `... | head`: the results are written all the same
            pass
        return results
    finally:
        if server is not None:
            server.stop()
        kill_descendants()
        if ipc_root:
            shutil.rmtree(ipc_root, ignore_errors=True)
        shutil.rmtree(work / f"input-{os.getpid()}", ignore_errors=True)
        if not options.keep_work:
            shutil.rmtree(work / "jobs", ignore_errors=True)
        lock.close()


def _remove_stale_feedback(folder: Path, keep: set[str]) -> None:
    """Feedback pages an earlier run wrote for students who are not in this class any more."""
    keep = {unicodedata.normalize("NFC", name) for name in keep}
    for page in folder.glob("*.html"):
        if unicodedata.normalize("NFC", page.name) not in keep:
            page.unlink()
