"""Who handed in what, and when: the naming patterns of learning-management systems' downloads.

Each LMS names the files of its "download all submissions" zip in a fixed pattern; the student's own file name
is only the tail of it. This module reads those patterns into :class:`Attempt` records (one upload of one student)
keyed by the LMS's own student identifier, and sets the LMS's side files (receipts, metadata, online texts) apart:

* **Canvas** "Download Submissions" (``lib/content_zipper.rb`` in canvas-lms): ``{lastfirst}[_late]_{user id}_
  {attachment id}_{file name}``; ``{lastfirst}`` is the sortable name without spaces or punctuation, in lower case;
  online texts and links are ``..._{user id}_text.html`` / ``_link.html``. Attachment ids grow with every upload.
* **Moodle** "Download all submissions" (``mod/assign/locallib.php``): one folder per student and plugin,
  ``{Full Name}_{participant id}_assignsubmission_{plugin}_/`` (or, without folders, that prefix before each file);
  the ``onlinetext`` plugin's folder holds the text typed into Moodle.
* **Blackboard** Grade Center "Assignment File Download": ``{assignment}_{username}_attempt_{YYYY-MM-DD-HH-MM-SS}
  _{file name}`` and one receipt ``..._attempt_{time}.txt`` per attempt ("Name: First Last (username)").
* **Gradescope** "Export Submissions": ``submission_metadata.yml`` beside one ``submission_{id}/`` folder per
  submission; the metadata names the submitters (``:name``, ``:sid``, ``:email``) and ``:created_at``.
* **nbgrader**'s ``submitted/{student}/{assignment}/`` (``nbgrader collect``), with the exchange's
  ``timestamp.txt`` and ``submission_secret.txt``.

Anything else is *plain*: ``{student}.ipynb``, ``{student}/...``, ``{student}.zip``. A layout is recognised when
most top-level entries follow its pattern; the entries that do not are read as plain, each with a note.
"""
from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import safezip

LAYOUTS = ("canvas", "moodle", "blackboard", "gradescope", "nbgrader")
NAMES = {"canvas": "Canvas", "moodle": "Moodle", "blackboard": "Blackboard", "gradescope": "Gradescope",
         "nbgrader": "nbgrader", "plain": "plain"}
EXCHANGE_FILES = ("timestamp.txt", "submission_secret.txt")  # what nbgrader's exchange keeps beside a submission


@dataclass
class Attempt:
    """One upload of one student, as the download shows it."""

    student_id: str
    files: list[Path]  # what was uploaded: files and folders (empty: only an online text, a receipt, ...)
    origin: str  # where it is in the download
    lms: str = "plain"
    name: str = ""  # the student's name, where the download carries one
    submitted_at: datetime | None = None  # the LMS's or the exchange's own record of the time (timezone-aware)
    order: int | None = None  # the LMS's own order of uploads (Canvas attachment ids), when it has one
    late: bool = False  # the LMS marked it late (Canvas)
    notes: list[str] = field(default_factory=list)
    exchange_files: dict[str, Path] = field(default_factory=dict)  # nbgrader exchange files to carry along


@dataclass
class Download:
    """What one download holds: the attempts, the layout, and the side files that gave no attempt of their own."""

    lms: str
    attempts: list[Attempt] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # "origin (why)", for the summary


def visible(path: Path) -> list[Path]:
    """The entries of *path* worth looking at: no hidden files, no OS junk, no links."""
    try:
        children = sorted(path.iterdir(), key=lambda p: p.name)
    except OSError:
        return []
    return [child for child in children
            if not child.name.startswith(".") and not safezip.is_junk([child.name]) and not child.is_symlink()]


def junk(path: Path) -> list[str]:
    """The hidden and OS junk entries of *path* (``.DS_Store``, ``__MACOSX``, ...), as "name (why)" for the list of
    ignored files."""
    try:
        names = sorted(child.name for child in path.iterdir())
    except OSError:
        return []
    return [f"{name} (operating-system junk)" if safezip.is_junk([name]) else f"{name} (hidden)"
            for name in names if name.startswith(".") or safezip.is_junk([name])]


def local_time(text: str, fmt: str) -> datetime:
    """A time written without a zone (Blackboard's file names): this machine's local time (set TZ to change it)."""
    return datetime.strptime(text, fmt).astimezone()


# -- Canvas ----------------------------------------------------------------------------------------------

_CANVAS_PREFIX = r"^(?:(?P<name>.*?)_)??(?:(?P<late>late)_)?(?P<uid>\d+)_"
_CANVAS_UPLOAD = re.compile(_CANVAS_PREFIX + r"(?P<aid>\d+)_(?P<file>.+)$", re.IGNORECASE | re.DOTALL)
_CANVAS_TEXT = re.compile(_CANVAS_PREFIX + r"(?P<kind>text|link)\.html$", re.IGNORECASE)


def _canvas(entry: Path, origin: str) -> Attempt | None:
    if not entry.is_file():
        return None
    upload = _CANVAS_UPLOAD.match(entry.name)
    text = None if upload else _CANVAS_TEXT.match(entry.name)
    match = upload or text
    if match is None:
        return None
    attempt = Attempt(match["uid"], [entry] if upload else [], origin, "canvas", name=match["name"] or "",
                      order=int(upload["aid"]) if upload else None, late=bool(match["late"]))
    if text:
        attempt.notes.append(f"handed in an online {'text' if text['kind'].lower() == 'text' else 'link'}")
    return attempt


# -- Moodle ----------------------------------------------------------------------------------------------

_MOODLE = re.compile(r"^(?P<name>.*)_(?P<pid>\d+)_assignsubmission_(?P<plugin>[a-z0-9]+)_(?P<file>.*)$", re.DOTALL)


def _moodle(entry: Path, origin: str) -> Attempt | None:
    match = _MOODLE.match(entry.name)
    if match is None or entry.is_dir() != (match["file"] == ""):
        return None
    # Anonymous submissions are named "Participant_{id}_...": that is no name.
    name = "" if match["name"] == "Participant" else match["name"]
    if match["plugin"] != "file":  # onlinetext, comments: what was typed into Moodle, not an uploaded file
        return Attempt(match["pid"], [], origin, "moodle", name=name,
                       notes=[f"handed in a Moodle {match['plugin']} ({origin})"])
    return Attempt(match["pid"], [entry], origin, "moodle", name=name)


# -- Blackboard ------------------------------------------------------------------------------------------

_BLACKBOARD = re.compile(r"^(?P<stem>.+)_attempt_(?P<time>\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d)(?:_(?P<file>.+)|\.txt)$",
                         re.DOTALL)
_RECEIPT_NAME = re.compile(r"^\s*Name:\s*(?P<name>.*?)\s*\((?P<user>[^()]*)\)\s*$", re.MULTILINE)


def _blackboard_receipt(path: Path) -> tuple[str, str] | None:
    """(name, username) from a receipt's "Name: First Last (username)" line, if it has one."""
    try:
        data = path.read_bytes()[:65536]
    except OSError:
        return None
    # (64 KiB of UTF-16 may end inside a character: a student's long comment, with an emoji)
    text = data.decode("utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8", "replace")
    match = _RECEIPT_NAME.search(text)
    return (match["name"], match["user"]) if match and match["user"] else None


def _blackboard_usernames(stems: set[str]) -> dict[str, str]:
    """Each ``{assignment}_{username}`` stem's username, found without receipts: every stem starts with the same
    ``{assignment}_`` (usernames and assignment names may both hold underscores)."""
    prefix = ""
    if len(stems) > 1:
        common = os.path.commonprefix(sorted(stems))
        prefix = common[: common.rfind("_") + 1]
    return {stem: stem[len(prefix):] if prefix and len(stem) > len(prefix) else stem.rpartition("_")[2]
            for stem in stems if stem}


def _read_blackboard(entries: list[tuple[Path, str]], download: Download) -> list[tuple[Path, str]]:
    matched = [(entry, origin, _BLACKBOARD.match(entry.name)) for entry, origin in entries if entry.is_file()]
    matched = [(entry, origin, match) for entry, origin, match in matched if match]
    receipts = {}
    for entry, origin, match in matched:
        if match["file"] is None:
            receipts[(match["stem"], match["time"])] = _blackboard_receipt(entry)
            download.ignored.append(f"{origin} (Blackboard receipt: read for the name and time)")
    users = _blackboard_usernames({match["stem"] for *_, match in matched})
    attempts: dict[tuple[str, str], Attempt] = {}
    for entry, origin, match in matched:
        key = (match["stem"], match["time"])
        name, user = receipts.get(key) or ("", users[match["stem"]])
        attempt = attempts.setdefault(key, Attempt(user, [], origin, "blackboard", name=name,
                                                   submitted_at=local_time(match["time"], "%Y-%m-%d-%H-%M-%S")))
        if match["file"] is not None:
            if not attempt.files:
                attempt.origin = origin  # the attempt is known by its (first) file rather than by its receipt
            attempt.files.append(entry)
    for attempt in attempts.values():
        if not attempt.files:
            attempt.notes.append("the receipt lists no file")
    download.attempts += attempts.values()
    taken = {entry for entry, _origin, _match in matched}
    return [(entry, origin) for entry, origin in entries if entry not in taken]


# -- Gradescope ------------------------------------------------------------------------------------------

GRADESCOPE_METADATA = "submission_metadata.yml"


def _read_gradescope(root: Path, entries: list[tuple[Path, str]], download: Download) -> list[tuple[Path, str]]:
    import yaml

    download.ignored.append(f"{GRADESCOPE_METADATA} (Gradescope metadata: read for the submitters and times)")
    try:
        metadata = yaml.safe_load((root / GRADESCOPE_METADATA).read_text(encoding="utf-8"))
        if not isinstance(metadata, dict):
            raise ValueError("not a mapping of submissions")
    except (OSError, ValueError, yaml.YAMLError) as exc:
        download.ignored[-1] = f"{GRADESCOPE_METADATA} (unreadable, so not used: {str(exc).splitlines()[0][:100]})"
        return entries
    rest = []
    for entry, origin in entries:
        record = metadata.get(entry.name) if entry.is_dir() else None
        if not isinstance(record, dict):
            rest.append((entry, origin))
            continue
        download.attempts += _gradescope_attempts(entry, origin, record)
    return rest


def _gradescope_attempts(folder: Path, origin: str, record: dict) -> list[Attempt]:
    """One attempt per submitter: a group submission gives each member their row."""
    created = record.get(":created_at")
    created = created if isinstance(created, datetime) and created.tzinfo else None
    submitters = [s for s in record.get(":submitters") or [] if isinstance(s, dict)]
    attempts = []
    for submitter in submitters or [{}]:
        student_id = next((str(submitter[key]) for key in (":sid", ":email") if submitter.get(key)), folder.name)
        attempt = Attempt(student_id, [folder], origin, "gradescope", name=str(submitter.get(":name") or ""),
                          submitted_at=created)
        if len(submitters) > 1:
            others = ", ".join(str(s.get(":name") or s.get(":sid") or "?") for s in submitters if s is not submitter)
            attempt.notes.append(f"group submission with {others}")
        attempts.append(attempt)
    return attempts


# -- nbgrader --------------------------------------------------------------------------------------------

def _nbgrader(entry: Path, origin: str, assignment: str) -> Attempt | None:
    if not entry.is_dir():
        return None
    attempt = Attempt(entry.name, [entry], origin, "nbgrader")
    folder = entry / assignment
    for name in EXCHANGE_FILES:
        if (folder / name).is_file() and not (folder / name).is_symlink():
            attempt.exchange_files[name] = folder / name
    if "timestamp.txt" in attempt.exchange_files:
        from nbgrader.utils import parse_utc

        try:
            text = attempt.exchange_files["timestamp.txt"].read_text(encoding="utf-8", errors="replace").strip()
            attempt.submitted_at = parse_utc(text).replace(tzinfo=timezone.utc)
        except (ValueError, OverflowError):
            attempt.notes.append("its timestamp.txt is unreadable: the submission time is unknown")
    return attempt


# -- plain -----------------------------------------------------------------------------------------------

def _plain(entry: Path, origin: str) -> Attempt:
    name = entry.name
    if entry.is_file():
        for suffix in (".ipynb", ".zip"):
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
        else:
            name = Path(name).stem or name
    return Attempt(name, [entry], origin)


# -- recognising a download ------------------------------------------------------------------------------

_BY_NAME = {"canvas": _canvas, "moodle": _moodle}


def _claims(lms: str, entries: list[tuple[Path, str]]) -> int:
    if lms in _BY_NAME:
        return sum(_BY_NAME[lms](entry, origin) is not None for entry, origin in entries)
    if lms == "blackboard":
        return sum(bool(entry.is_file() and _BLACKBOARD.match(entry.name)) for entry, _ in entries)
    return 0


def recognise(root: Path, entries: list[tuple[Path, str]], lms: str = "auto") -> str:
    """The layout of the download in *root*: *lms* if given, else the one most top-level entries follow."""
    if lms != "auto":
        return lms
    if root.name == "submitted":
        return "nbgrader"
    if (root / GRADESCOPE_METADATA).is_file():
        return "gradescope"
    best, claimed = max(((name, _claims(name, entries)) for name in ("moodle", "blackboard", "canvas")),
                        key=lambda pair: pair[1])
    # Two thirds: an instructor's own file dropped into the download does not hide the LMS's pattern, and a plain
    # class whose file names happen to hold "_123_456_" is not mistaken for Canvas.
    return best if claimed and claimed * 3 >= len(entries) * 2 else "plain"


def read_download(root: Path, lms: str = "auto", assignment: str = "") -> Download:
    """Every attempt in the download in *root* (a folder, already stepped into its wrapper)."""
    entries = [(entry, entry.name) for entry in visible(root)]
    download = Download(recognise(root, entries, lms))
    download.ignored += junk(root)
    rest = entries
    if download.lms == "gradescope":
        rest = [(e, o) for e, o in entries if e.name != GRADESCOPE_METADATA]
        rest = _read_gradescope(root, rest, download)
    elif download.lms == "blackboard":
        rest = _read_blackboard(entries, download)
    elif download.lms in _BY_NAME or download.lms == "nbgrader":
        rest = []
        for entry, origin in entries:
            attempt = _nbgrader(entry, origin, assignment) if download.lms == "nbgrader" \
                else _BY_NAME[download.lms](entry, origin)
            if attempt is None:
                rest.append((entry, origin))
            else:
                download.attempts.append(attempt)
    for entry, origin in rest:
        attempt = _plain(entry, origin)
        if download.lms != "plain":
            attempt.notes.append(f"not named the way {NAMES[download.lms]} names its downloads: "
                                 "the file name is taken as the student id")
        download.attempts.append(attempt)
    for attempt in download.attempts:
        attempt.student_id = unicodedata.normalize("NFC", attempt.student_id)
        attempt.name = unicodedata.normalize("NFC", attempt.name)
        if not attempt.files and attempt.lms in _BY_NAME:
            download.ignored.append(f"{attempt.origin} ({NAMES[attempt.lms]} online text: not graded)")
    return download


def student_folder_name(name: str) -> bool:
    """Whether a folder named *name* is one student's folder in some LMS's download (never a wrapper to step into)."""
    return bool(_MOODLE.match(name) and name.endswith("_")) or re.fullmatch(r"submission_\d+", name) is not None
