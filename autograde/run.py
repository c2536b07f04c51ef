"""One grading run, end to end: ``python -m autograde grade`` calls :func:`grade`.

1. (:mod:`autograde.cli`, before nbgrader is imported) Check that kernels can be isolated here, unless
   ``--isolation none``; start the warm kernel server, which imports torch meanwhile (:mod:`autograde.sandbox`).
2. Build (or reuse) the template course from ``source/<assignment>`` (:mod:`autograde.course`).
3. Unzip the submissions if needed, recognise the LMS's naming, and find one per student (:mod:`autograde.inputs`,
   :mod:`autograde.lms`).
4. Reuse cached results; grade the rest in parallel (:mod:`autograde.scheduler`).
5. Add the students of earlier batches into this --out, merge into the class course, write grades.csv, the
   LMS import files (:mod:`autograde.exports`) and the feedback pages, print the summary.

Everything the run writes goes under ``--out`` and a private folder under /tmp; the instructor's course and the
submissions are only read.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import sys
import time
import unicodedata
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy.exc

from resnet_course.cores import available_cores

from . import GRADER_VERSION, AutogradeError
from . import status as st
from .course import Course, Template
from .exports import write_exports
from .feedback import write_status_page
from .formgrader import SECRET, FormgraderCourse, publish_autograded
from .inputs import Found, NotebookChooser, Submission, discover, open_submissions
from .late import read_extensions
from .parts import Manifest, Shard
from .results import (Cache, Result, RunReport, atomic_copy, cache_key, changed_settings, instant, later,
                      reusable, summary, write_grades)
from .roster import Member, remember, remembered
from .sandbox.supervisor import Limits
from .sandbox.zygote import WarmKernelServer
from .scheduler import Scheduler
from .similarity import write_similarity
from .worker import CONTAINER_MODE, NOT_ISOLATED, Job, Settings, isolation_note, prepare_reference, prewarm


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
    lms: str = "auto"  # the download's naming pattern: auto, canvas, moodle, blackboard, gradescope, nbgrader, plain
    due: datetime | None = None  # None: the due date in the course's gradebook, if any
    lms_column: str | None = None  # the assignment's column header in the LMS import files (default: its name)
    lms_points: float | None = None  # what the assignment is out of in the LMS (default: its own points)
    started: float = field(default_factory=time.monotonic)  # when the command started (the summary's time)
    similarity: bool = False  # write similarity.csv/.html: pairs far more alike than the class's, for a person
    shard: Shard | None = None  # grade only this part of the class (autograde.shards)
    extensions: Path | None = None  # a CSV of student ids and their own due dates (autograde.late)
    roster: Path | None = None  # the class list: every student on it gets a row (autograde.roster)


def feedback_name(student_id: str) -> str:
    """``<student_id>.html``, shortened (with a hash) only if the file system could not hold it."""
    name = f"{student_id}.html"
    if len(name.encode("utf-8", "surrogateescape")) <= 250:
        return name
    digest = hashlib.sha1(student_id.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    head = student_id.encode("utf-8", "surrogateescape")[:200].decode("utf-8", "ignore")
    return f"{head}~{digest}.html"


def _open_out(out: Path) -> tuple[Path, Path]:
    """--out and its work folder, created, for a grading run or a merge: (out, out/.autograde)."""
    # nbgrader's own gradebook code trips SQLAlchemy's autoflush warnings; they are not ours to show.
    warnings.filterwarnings("ignore", category=sqlalchemy.exc.SAWarning)
    out = out.resolve()
    work = out / ".autograde"
    for folder in (work, out / "feedback"):
        folder.mkdir(parents=True, exist_ok=True)
    return out, work


def grade(options: Options, stream=sys.stdout) -> list[Result]:
    out, work = _open_out(options.out)
    with _exclusive(work / "lock", out):
        try:
            return _grade(options, out, work, stream)
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


def _grade(options: Options, out: Path, work: Path, stream) -> list[Result]:
    log = _run_logger(work)
    course = Course(options.course, options.assignment)
    duedate = options.due or course.recorded_duedate()
    extensions = read_extensions(options.extensions) if options.extensions else {}
    if extensions and duedate is None:
        raise AutogradeError("--extensions moves a due date: give the assignment's with --due (or in the course's "
                             "gradebook)")
    roster = remembered(work, options.roster)
    template = Template(course, work / "template").prepare(log, duedate)
    cores = available_cores()
    jobs = options.jobs or cores
    timeout = options.timeout or course.default_timeout()
    class_course = FormgraderCourse(out / "nbgrader", template).prepare()
    server = options.server
    settings = Settings(run_root=options.run_root, work_dir=str(work), timeout=timeout,
                        limits=Limits(memory_mb=options.memory_mb), isolation=options.isolation,
                        isolation_note=isolation_note(options.isolation),
                        threads=max(1, cores // jobs), keep_work=options.keep_work,
                        class_course=str(class_course.root), seed=secrets.randbits(62), due=_utc(duedate))
    cache = Cache(work / "cache")
    found, ignored = _discover(options, work, template, log)
    manifest = _start_shard(options, out, found, ignored, template, duedate, roster)
    grading = Grading(grading_settings(options, settings, template, duedate),
                      {student.casefold(): _utc(due) for student, due in extensions.items()})
    report = RunReport(assignment=course.assignment, max_score=template.max_score, out=out, jobs=jobs,
                       isolation=options.isolation, isolation_note=settings.isolation_note,
                       batch=len(found.submissions), lms=found.lms, ignored=ignored, shard=str(options.shard or ""))
    results, todo = _plan(options, found, out, grading, cache, class_course, report)
    here = {submission.student_id.casefold() for submission in found.submissions}
    earlier, again = _earlier_batches(here, cache, out, class_course, grading, len(found.submissions), report)
    todo += again
    if todo:
        prewarm(template)  # while the warm kernel server still imports torch
        if server is not None:
            if server.wait_ready():
                settings.warm_server = server.socket_path
            else:
                log.warning("the warm kernel server did not start (see %s); using cold kernels",
                            work / "warm-server.log")
        prepare_reference(template, settings)
    deadline = 120 + timeout * (sum(1 for c in template.release.cells if c.cell_type == "code") + 2)
    scheduler = Scheduler(template, settings, jobs, deadline, progress=options.progress,
                          keep_alive={server.process.pid} if server and server.process else ())
    results += scheduler.run(todo, on_result=cache.put) + earlier
    if roster is not None and options.shard is not None:  # the merge gives the other parts' students their rows
        roster = [member for member in roster if options.shard.holds(member.student_id)]
    _finish(results, Publication(out, template, class_course, cache, log, duedate, options.lms_column,
                                 options.lms_points, options.similarity, roster), report, options.started, stream)
    if manifest:
        manifest.finished = True
        manifest.write(out)
    return results


@dataclass
class Publication:
    """Where and how a run's (or a merge's) results are written."""

    out: Path
    template: Template
    class_course: FormgraderCourse
    cache: Cache
    log: logging.Logger
    duedate: datetime | None
    lms_column: str | None = None
    lms_points: float | None = None
    similarity: bool = False
    roster: list[Member] | None = None  # the class list, if the instructor gave one (now or in an earlier run)


def _finish(results: list[Result], where: Publication, report: RunReport, started: float, stream) -> None:
    """The class course, grades.csv, feedback pages, LMS import files, similarity.csv/.html; then the summary."""
    if where.roster is not None:
        results = results + _on_roster(results, where, report)
    _publish(results, where)
    course = where.template.course
    report.exports = write_exports(where.out, results, course.assignment, where.template.max_score,
                                   where.lms_column, where.lms_points)
    if where.similarity:
        submitted = {r.student_id: where.class_course.submitted_path(r.student_id) for r in results
                     if where.class_course.autograded_path(r.student_id)}
        report.exports.append(write_similarity(where.out, results, where.template.release, submitted))
    report.seconds = time.monotonic() - started
    try:
        print(summary(results, report), file=stream, flush=True)
    except BrokenPipeError:  # `... | head`: the results are written all the same
        pass


def _start_shard(options: Options, out: Path, found: Found, ignored: list[str], template: Template,
                 duedate: datetime | None, roster: list[Member] | None) -> Manifest | None:
    """With --shard: keep this part's students only, and record the run in shard.json (unfinished until the end)."""
    if options.shard is None:
        return None
    manifest = Manifest(shard=str(options.shard), assignment=template.course.assignment,
                        fingerprint=template.fingerprint, grader_version=GRADER_VERSION, lms=found.lms,
                        students=sorted(s.student_id for s in found.submissions), ignored=ignored,
                        due=duedate.isoformat() if duedate else None, lms_column=options.lms_column,
                        lms_points=options.lms_points,
                        roster=[asdict(member) for member in roster] if roster is not None else None)
    manifest.write(out)
    found.submissions = [s for s in found.submissions if options.shard.holds(s.student_id)]
    return manifest


def _discover(options, work: Path, template: Template, log) -> tuple[Found, list[str]]:
    """One submission per student in what the instructor passed, and the side files that gave no row."""
    input_dir = work / f"input-{os.getpid()}"
    root, input_notes, truncated, junk = open_submissions(options.submissions, input_dir)
    chooser = NotebookChooser(template.course.notebook, template.course.assignment, template.grade_ids)
    found = discover(root, chooser, input_dir / "nested", truncated, options.lms)
    if input_notes:
        log.warning("while unzipping: %s", "; ".join(input_notes))
    return found, junk + found.ignored


@dataclass
class Grading:
    """What decides a grade besides the file: the run's settings, with each student's own due date."""

    settings: dict  # grading_settings()
    extensions: dict[str, str] = field(default_factory=dict)  # casefolded student id -> due date (ISO 8601, UTC)

    def of(self, student_id: str) -> dict:
        due = self.extensions.get(student_id.casefold())
        return dict(self.settings, due=due) if due else self.settings


def grading_settings(options: Options, settings: Settings, template: Template, duedate: datetime | None) -> dict:
    """Everything besides the submitted file that decides a grade: a result graded with other settings is graded
    again (results.changed_settings says why)."""
    return {"source": template.fingerprint, "config": template.course.config_digest(), "version": GRADER_VERSION,
            "due": _utc(duedate), "timeout": settings.timeout,
            "memory_mb": options.memory_mb, "isolation": options.isolation,
            "max_output_bytes": settings.max_output_bytes}


def _plan(options, found: Found, out: Path, grading: Grading, cache: Cache, class_course,
          report: RunReport) -> tuple[list[Result], list[Job]]:
    """One job per student found, unless an earlier run into this --out graded the same attempt with the same
    settings (reused), or a newer attempt of the student's by the LMS's time (kept, or graded again from its copy
    in the class course when the settings changed or with --force)."""
    results, todo = [], []
    for index, submission in enumerate(found.submissions):
        job = _job(index, submission, out, grading.of(submission.student_id))
        kept = cache.latest(job.student_id)
        if kept and later(kept.submitted_at, job.submitted_at):
            report.kept_newer += 1
            again = _again(kept, index, out, class_course, job.grading_settings, options.force, report)
            if again:
                todo.append(again)
            else:
                results.append(kept)
            continue
        cached = kept if kept and not options.force and reusable(kept, job.cache_key) else None
        if cached and cached.gradebook and not class_course.autograded_path(job.student_id).exists():
            cached = None  # its notebook is gone from the class course: grade it again
        if cached:
            cached.origin, cached.name, cached.lms = job.origin, job.name, job.lms
            results.append(cached)
            report.reused += 1
        else:
            todo.append(job)
    return results, todo


def _job(index: int, submission, out: Path, grading: dict) -> Job:
    submitted_at = _utc(submission.submitted_at)
    job = Job(student_id=submission.student_id, path=str(submission.path) if submission.path else None,
              origin=submission.origin, key=f"{index:05d}",
              feedback_path=str(out / "feedback" / feedback_name(submission.student_id)),
              known_status=submission.status, known_detail=submission.detail, notes=list(submission.notes),
              name=submission.name, lms=submission.lms, submitted_at=submitted_at,
              exchange_files={name: str(path) for name, path in submission.exchange_files.items()},
              grading_settings=grading)
    # The submission time and the exchange's secret are part of what is graded: a new one grades it again.
    extra = {"submitted_at": submitted_at, "secret": _digest(submission.exchange_files.get(SECRET))}
    job.cache_key = cache_key(job.path, job.known_status, grading["source"], dict(grading, **extra))
    return job


def _again(result: Result, index: int, out: Path, class_course: FormgraderCourse, grading: dict, force: bool,
           report: RunReport) -> Job | None:
    """A job grading *result*'s attempt again from its copy in the class course, when it was graded with other
    settings (or *force*); None when it stays as it is (a file that could not be graded has no copy)."""
    if not force and result.grading_settings == grading:
        return None
    copy = class_course.submitted_path(result.student_id)
    if result.gradebook is None or copy is None or not copy.is_file():
        if result.gradebook is not None:
            result.add(note="graded with other settings, and its copy is gone from the class course: grade it again")
        return None
    report.regraded["--force" if force and result.grading_settings == grading else
                    changed_settings(result.grading_settings, grading)] += 1
    folder = copy.parent
    found = Submission(student_id=result.student_id, path=copy, origin=result.origin, name=result.name,
                       lms=result.lms, submitted_at=instant(result.submitted_at) if result.submitted_at else None,
                       exchange_files={name: folder / name for name in (SECRET,) if (folder / name).is_file()})
    return _job(index, found, out, grading)


def _utc(when: datetime | None) -> str | None:
    """A time as grades.csv, the notes and the cache keep it: ISO 8601, in UTC."""
    return when.astimezone(timezone.utc).isoformat() if when else None


def _digest(path: Path | None) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path else None


def _earlier_batches(here: set[str], cache: Cache, out: Path, class_course: FormgraderCourse, grading: Grading,
                     first: int, report: RunReport) -> tuple[list[Result], list[Job]]:
    """The students an earlier run into this --out graded and this download does not hold (*here*: casefolded
    ids): they stay in the class (late submissions graded on another day add to it, and never replace it), graded
    again from their copies where the settings changed."""
    earlier, todo = [], []
    for result in cache.everyone():
        if result.student_id.casefold() in here:
            continue
        if result.grader_version != GRADER_VERSION:
            cache.set_aside(result)  # graded by an older grader, perhaps under another student id
            report.dropped += 1
            continue
        again = _again(result, first + len(earlier) + len(todo), out, class_course, grading.of(result.student_id),
                       False, report)
        if again:
            todo.append(again)
        else:
            earlier.append(result)
    report.earlier = len(earlier) + len(todo)
    return earlier, todo


NOT_ON_ROSTER = "not on the roster"


def _on_roster(results: list[Result], where: Publication, report: RunReport) -> list[Result]:
    """A row for every student of the roster who handed nothing in; names from the roster where the download had
    none, and a note on those graded who are not on it."""
    members = {member.student_id.casefold(): member for member in where.roster}
    graded = {result.student_id.casefold() for result in results}
    for result in results:
        member = members.get(result.student_id.casefold())
        result.notes = [note for note in result.notes if note != NOT_ON_ROSTER]  # as this roster says
        if member is None:
            result.add(note=NOT_ON_ROSTER)
        elif not result.name:
            result.name = member.name
    lms = Counter(result.lms for result in results).most_common(1)[0][0] if results else "plain"
    absent = [member for key, member in members.items() if key not in graded]
    rows = []
    for member in absent:
        row = Result(student_id=member.student_id, origin="", name=member.name, lms=member.lms or lms,
                     feedback=str(where.out / "feedback" / feedback_name(member.student_id)),
                     max_score=where.template.max_score, cells={cell.grade_id: 0.0 for cell in where.template.cells})
        row.add(st.NO_SUBMISSION, "on the roster, and nothing was handed in")
        write_status_page(row.feedback, row.student_id, where.template.course.assignment, st.NO_SUBMISSION,
                          "Nothing was handed in for this assignment.", where.template.max_score)
        rows.append(row)
    outsiders = sum(NOT_ON_ROSTER in result.notes for result in results)
    report.roster = (f"Roster: {len(members)} student(s); {len(rows)} with no submission (a row with 0)"
                     + (f"; {outsiders} graded but not on it (notes say so)" if outsiders else ""))
    return rows


def _publish(results: list[Result], where: Publication) -> None:
    """The class course (automatic scores in, hand grades back out), grades.csv, the feedback pages."""
    where.class_course.merge(results, where.duedate)
    for result in results:
        if result.manual != result.feedback_manual:
            try:
                where.class_course.render_feedback(result)
                result.feedback_manual = result.manual
            except Exception:  # noqa: BLE001 - the automatic feedback page stays
                where.log.exception("could not render the feedback of %s with its manual grades", result.student_id)
        if result.cache_key:  # a roster's row for a student with no submission was never graded: nothing to keep
            where.cache.put(result)
    write_grades(where.out / "grades.csv", results, [cell.grade_id for cell in where.template.cells])
    _remove_stale_feedback(where.out / "feedback", {Path(r.feedback).name for r in results})


def merge_shards(shards: list[tuple[Path, Manifest]], out: Path, course_root: Path, similarity: bool = False,
                 started: float | None = None, stream=sys.stdout) -> list[Result]:
    """Join finished shards (checked by :func:`autograde.shards.check_shards`) into *out*, as one run would."""
    out, work = _open_out(out)
    with _exclusive(work / "lock", out):
        log = _run_logger(work)
        first = shards[0][1]
        due = datetime.fromisoformat(first.due) if first.due else None
        template = Template(Course(course_root, first.assignment), work / "template").prepare(log, due)
        if template.fingerprint != first.fingerprint:
            raise AutogradeError(f"the shards graded another version of {course_root / 'source' / first.assignment}"
                                 " than the one there now: grade them again, or merge with the course they used")
        class_course = FormgraderCourse(out / "nbgrader", template).prepare()
        results = []
        for folder, manifest in shards:
            results += _take_shard(folder, manifest, out, class_course)
        report = RunReport(assignment=first.assignment, max_score=template.max_score, out=out, jobs=0,
                           batch=len(results), lms=first.lms, ignored=first.ignored,
                           shards=len(shards), **_isolation(results))
        roster = None
        if first.roster is not None:  # (with --partial, the students of a missing part are not known to be absent)
            roster = remember(work, [Member(**entry) for entry in first.roster])
            roster = [m for m in roster if any(manifest.part.holds(m.student_id) for _, manifest in shards)]
        _finish(results, Publication(out, template, class_course, Cache(work / "cache"), log, due, first.lms_column,
                                     first.lms_points, similarity, roster), report, started or time.monotonic(), stream)
    return results


def _take_shard(folder: Path, manifest: Manifest, out: Path, class_course: FormgraderCourse) -> list[Result]:
    """A shard's results, its feedback pages and its students' folders in the class course, moved under *out*."""
    results = [r for r in Cache(folder / ".autograde" / "cache").everyone() if manifest.part.holds(r.student_id)]
    assignment = class_course.course.assignment
    for result in results:
        page = out / "feedback" / feedback_name(result.student_id)
        atomic_copy(Path(result.feedback), page)
        result.feedback = str(page)
        if class_course.autograded_path(result.student_id) is None:
            continue
        for kind in ("submitted", "autograded"):
            source = folder / "nbgrader" / kind / result.student_id / assignment
            if source.is_dir():
                publish_autograded(source, class_course.root / kind / result.student_id / assignment)
    return results


def _isolation(results: list[Result]) -> dict:
    """The merged shards' isolation, from their rows' notes: the least isolated of them."""
    notes = [note for result in results for note in result.notes]
    for mode, words in (("none", NOT_ISOLATED), ("container", CONTAINER_MODE)):
        found = [note for note in notes if note.startswith(words)]
        if found:
            return {"isolation": mode, "isolation_note": found[0]}
    return {"isolation": "bwrap"}


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
