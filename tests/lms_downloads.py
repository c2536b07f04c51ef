"""Downloads as learning-management systems make them, built from each LMS's documented naming pattern.

Each builder writes the zip an instructor gets from the LMS's "download all submissions" button, for a class of
:class:`Student` records with awkward names (accents, spaces, apostrophes, underscores, CJK, a formula):

* Canvas "Download Submissions" (canvas-lms ``lib/content_zipper.rb``): ``[sortable name, LATE, user id]`` joined
  by ``_``, every non-word character removed, lower case; then ``_{attachment id}_{file name}`` per upload, or
  ``_text.html`` for an online text;
* Moodle "Download all submissions" with "Download submissions in folders" (``mod/assign/locallib.php``): one
  folder ``{full name with _ as space}_{participant id}_assignsubmission_{plugin}_/`` per student and plugin;
* Blackboard Grade Center "Assignment File Download": ``{assignment}_{username}_attempt_{YYYY-MM-DD-HH-MM-SS}_
  {file name}`` and a receipt ``..._attempt_{time}.txt`` per attempt;
* Gradescope "Export Submissions": ``submission_metadata.yml`` and one ``submission_{id}/`` folder each.

Every entry carries a time (zip entries do), so tests can say which upload is the latest.
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass
class Student:
    first: str
    last: str
    canvas_id: int
    moodle_id: int
    username: str
    sid: str

    @property
    def full_name(self) -> str:
        return f"{self.first} {self.last}"


ZOE = Student("Zoë", "Ångström", 90001, 1234501, "zangstrom", "0042")
JOSE = Student("José María", "de la Cruz", 90002, 1234502, "jm_delacruz", "0043")
MARY = Student("Mary_Jane", "O'Brien-Smith", 90003, 1234503, "mary.ob", "0044")
LEI = Student("雷", "李", 90004, 1234504, "lli", "0045")
EVIL = Student("=HYPERLINK(\"http://x.example\";\"y\")", "Tables", 90005, 1234505, "bobby", "0046")

T0 = datetime(2026, 3, 1, 10, 0, 0)


def write_zip(path: Path, entries: list[tuple[str, bytes | str, datetime]]) -> Path:
    """A zip of (name, data, time) entries, as an LMS writes it (UTF-8 names)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, when in entries:
            info = zipfile.ZipInfo(name, date_time=when.timetuple()[:6])
            zf.writestr(info, data)
    return path


# -- Canvas ------------------------------------------------------------------------------------------------

def canvas_prefix(student: Student, late: bool = False) -> str:
    sortable = re.sub(r"_(\d+)_", r"\1", f"{student.last}, {student.first}")  # sanitize_user_name
    raw = "_".join([sortable] + (["LATE"] if late else []) + [str(student.canvas_id)])
    return re.sub(r"[^\w]", "", raw).lower()  # sanitize_file_name: [^[[:word:]]] out, downcase


def canvas_upload(student: Student, attachment_id: int, file_name: str, late: bool = False) -> str:
    return f"{canvas_prefix(student, late)}_{attachment_id}_{file_name}"


def canvas_text(student: Student, late: bool = False) -> str:
    return f"{canvas_prefix(student, late)}_text.html"


# -- Moodle ------------------------------------------------------------------------------------------------

def moodle_folder(student: Student | None, participant: int | None = None, plugin: str = "file") -> str:
    """The folder of one student and plugin; *student* None: anonymous submissions ("Participant")."""
    name = student.full_name.replace("_", " ") if student else "Participant"
    return f"{name}_{participant or student.moodle_id}_assignsubmission_{plugin}_"


# -- Blackboard --------------------------------------------------------------------------------------------

def blackboard_file(assignment: str, student: Student, when: datetime, file_name: str | None = None) -> str:
    stem = f"{assignment}_{student.username}_attempt_{when:%Y-%m-%d-%H-%M-%S}"
    return f"{stem}_{file_name}" if file_name else f"{stem}.txt"


def blackboard_receipt(assignment: str, student: Student, when: datetime, files: list[str]) -> str:
    listed = "".join(f"\tOriginal filename: {name}\n\tFilename: {blackboard_file(assignment, student, when, name)}\n"
                     for name in files)
    return (f"Name: {student.full_name} ({student.username})\nAssignment: {assignment}\n"
            f"Date Submitted: {when:%A, %B %d, %Y %I:%M:%S %p} CET\nCurrent Grade: Needs Grading\n\n"
            "Submission Field:\nThere is no student submission text data for this assignment.\n\n"
            "Comments:\nThere are no student comments for this assignment.\n\n"
            f"Files:\n{listed}")


# -- Gradescope --------------------------------------------------------------------------------------------

def gradescope_metadata(submissions: dict[int, tuple[list[Student], datetime]]) -> str:
    """submission_metadata.yml: {submission id: (submitters, created at)}, as Gradescope's export writes it."""
    lines = []
    for submission_id, (submitters, when) in submissions.items():
        lines.append(f"submission_{submission_id}:")
        lines.append("  :submitters:")
        for student in submitters:
            lines += [f"  - :name: {student.full_name}", f"    :sid: '{student.sid}'",
                      f"    :email: {student.username}@uni.example"]
        lines += [f"  :created_at: {when:%Y-%m-%d %H:%M:%S}.123456000 -08:00", "  :score: 0.0", "  :history: []"]
    return "\n".join(lines) + "\n"
