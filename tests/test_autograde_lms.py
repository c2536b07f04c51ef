"""LMS downloads in, grades and feedback out: discovery of each LMS's naming, the import files, and whole classes
graded through the CLI (one small class per LMS), a second batch, hand grades and late penalties.

The downloads are built by tests/lms_downloads.py from each LMS's documented naming pattern; the import files are
compared byte for byte with examples written from each LMS's importer (see autograde/exports.py for the sources).
"""
import csv
import io
import shutil
import subprocess
import sys
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nbformat
import pytest

from autograde import status as st
from autograde.exports import write_exports
from autograde.inputs import NotebookChooser, discover, open_submissions
from autograde.results import Result

from autograde_fixtures import MINI, fill, make_course, release_and_answers, read_csv, run_cli
from lms_downloads import (EVIL, JOSE, LEI, MARY, T0, ZOE, blackboard_file, blackboard_receipt, canvas_text,
                           canvas_upload, gradescope_metadata, moodle_folder, write_zip)

CHOOSER = NotebookChooser(MINI, MINI, ["double", "test_visible", "test_hidden", "written"])
WRONG = "def double(x):\n    return 3 * x\n"


def _found(tmp_path: Path, archive: Path, layout: str = "auto"):
    root, _notes, truncated, junk = open_submissions(archive, tmp_path / "work")
    found = discover(root, CHOOSER, tmp_path / "work" / "nested", truncated, layout)
    return found, {s.student_id: s for s in found.submissions}, junk


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory):
    """The mini assignment's release filled in three ways, as JSON text: correct, wrong, untouched."""
    course = make_course(tmp_path_factory.mktemp("lms-course"))
    release, answers = release_and_answers(course)
    return {"course": course, "release": release, "answers": answers,
            "correct": nbformat.writes(fill(release, answers)),
            "wrong": nbformat.writes(fill(release, {"double": WRONG})),
            "blank": nbformat.writes(release)}


# -- discovery of each LMS's download --------------------------------------------------------------------

def canvas_class(notebooks, path: Path) -> Path:
    return write_zip(path, [
        (canvas_upload(ZOE, 100, "mini.ipynb"), notebooks["wrong"], T0),  # first upload ...
        (canvas_upload(ZOE, 205, "mini-1.ipynb"), notebooks["correct"], T0),  # ... resubmitted: Canvas adds "-1"
        (canvas_upload(JOSE, 150, "Mini Assignment (final) é.ipynb", late=True), notebooks["correct"], T0),
        (canvas_upload(MARY, 160, "mini.pdf"), b"%PDF-1.4\n", T0),
        (canvas_text(LEI), "<html><body>I could not upload it</body></html>", T0),
        ("__MACOSX/._x", b"junk", T0), (".DS_Store", b"junk", T0)])


def test_canvas_download(notebooks, tmp_path):
    found, rows, junk = _found(tmp_path, canvas_class(notebooks, tmp_path / "canvas.zip"))
    assert found.lms == "canvas" and set(rows) == {"90001", "90002", "90003", "90004"}
    zoe = rows["90001"]
    assert (zoe.name, zoe.lms, zoe.path.read_text()) == ("ångströmzoë", "canvas", notebooks["correct"])
    assert zoe.notes[0] == f"graded {canvas_upload(ZOE, 205, 'mini-1.ipynb')}; also found " \
                           f"{canvas_upload(ZOE, 100, 'mini.ipynb')}"
    assert any("Canvas marked it late" in note for note in rows["90002"].notes)
    assert rows["90002"].name == "delacruzjosémaría"
    assert rows["90003"].path.suffix == ".pdf" and rows["90003"].status is None  # graded: "not a notebook"
    assert rows["90004"].status == st.NO_NOTEBOOK and "online text" in " ".join(rows["90004"].notes)
    assert found.ignored == [f"{canvas_text(LEI)} (Canvas online text: not graded)"]
    assert sorted(junk) == [".DS_Store (operating-system junk)", "__MACOSX/._x (operating-system junk)"]


def test_moodle_download(notebooks, tmp_path):
    archive = write_zip(tmp_path / "moodle.zip", [
        (f"{moodle_folder(ZOE)}/mini.ipynb", notebooks["wrong"], T0),  # two notebooks in one folder:
        (f"{moodle_folder(ZOE)}/mini v2.ipynb", notebooks["correct"], T0 + timedelta(hours=2)),  # the later counts
        (f"{moodle_folder(ZOE, plugin='onlinetext')}/onlinetext.html", "<p>see my notebook</p>", T0),
        (f"{moodle_folder(MARY)}/answers.ipynb", notebooks["correct"], T0),
        (f"{moodle_folder(LEI, plugin='onlinetext')}/onlinetext.html", "<p>forgot the file</p>", T0),
        (f"{moodle_folder(None, 7654321)}/mini.ipynb", notebooks["blank"], T0),  # anonymous submissions
        (f"{moodle_folder(JOSE)}my work.ipynb", notebooks["blank"], T0)])  # "Download submissions in folders" off
    found, rows, _ = _found(tmp_path, archive)
    assert found.lms == "moodle" and set(rows) == {"1234501", "1234502", "1234503", "1234504", "7654321"}
    assert rows["1234502"].origin == f"{moodle_folder(JOSE)}my work.ipynb" and rows["1234502"].name == JOSE.full_name
    assert rows["1234501"].path.name == "mini v2.ipynb" and rows["1234501"].name == "Zoë Ångström"
    assert rows["1234501"].attempts == [f"{moodle_folder(ZOE)}/mini.ipynb"]
    assert rows["1234503"].name == "Mary Jane O'Brien-Smith"  # Moodle writes "_" in names as a space
    assert rows["1234504"].status == st.NO_NOTEBOOK and rows["7654321"].name == ""
    assert sorted(found.ignored) == sorted(f"{moodle_folder(s, plugin='onlinetext')} (Moodle online text: not graded)"
                                           for s in (ZOE, LEI))


def test_blackboard_download(notebooks, tmp_path):
    homework = "Homework 1_ResNet blocks"  # assignment names, like usernames, may hold "_"
    first, second = T0, T0 + timedelta(days=1, minutes=5)
    entries = []
    for student, when, data, files in [(ZOE, first, notebooks["wrong"], ["mini.ipynb"]),
                                       (ZOE, second, notebooks["correct"], ["mini.ipynb", "notes.txt"]),
                                       (JOSE, first, notebooks["correct"], ["my work.ipynb"]),
                                       (LEI, second, None, [])]:
        entries.append((blackboard_file(homework, student, when), blackboard_receipt(homework, student, when, files),
                        when))
        entries += [(blackboard_file(homework, student, when, name), data if name.endswith(".ipynb") else "x", when)
                    for name in files]
    found, rows, _ = _found(tmp_path, write_zip(tmp_path / "bb.zip", entries))
    assert found.lms == "blackboard" and set(rows) == {"zangstrom", "jm_delacruz", "lli"}
    zoe = rows["zangstrom"]
    assert zoe.path.read_text() == notebooks["correct"] and zoe.name == "Zoë Ångström"
    assert zoe.submitted_at == second.astimezone() and zoe.attempts[0] == blackboard_file(homework, ZOE, first,
                                                                                        "mini.ipynb")
    assert rows["lli"].status == st.NO_NOTEBOOK and "the receipt lists no file" in rows["lli"].notes
    assert len(found.ignored) == 4 and all("Blackboard receipt" in line for line in found.ignored)


def test_a_blackboard_receipt_cut_inside_a_character(notebooks, tmp_path):
    """Only a receipt's first 64 KiB are read: a long comment in UTF-16 may be cut between the two halves of an
    emoji."""
    receipt = blackboard_receipt("HW_1", ZOE, T0, ["mini.ipynb"])
    receipt += "a" * (32_766 - len(receipt)) + "\U0001F600 thanks!\n"  # the emoji's 4 bytes at 65,534 with the BOM
    entries = [(blackboard_file("HW_1", ZOE, T0), receipt.encode("utf-16"), T0),
               (blackboard_file("HW_1", ZOE, T0, "mini.ipynb"), notebooks["correct"], T0)]
    _found_, rows, _ = _found(tmp_path, write_zip(tmp_path / "bb.zip", entries))
    assert rows["zangstrom"].name == "Zoë Ångström"


def test_blackboard_usernames_without_receipts(notebooks, tmp_path):
    """Receipts in another language, or none: the assignment is the prefix all the files share."""
    entries = [(blackboard_file("HW_1", s, T0, "mini.ipynb"), notebooks["blank"], T0) for s in (ZOE, JOSE, MARY)]
    _found_, rows, _ = _found(tmp_path, write_zip(tmp_path / "bb.zip", entries))
    assert set(rows) == {"zangstrom", "jm_delacruz", "mary.ob"}


def test_gradescope_export(notebooks, tmp_path):
    metadata = gradescope_metadata({111: ([ZOE], T0), 222: ([JOSE, MARY], T0 + timedelta(hours=1)),
                                    333: ([EVIL], T0)})
    archive = write_zip(tmp_path / "gs.zip", [
        ("assignment_42_export/submission_metadata.yml", metadata, T0),
        ("assignment_42_export/submission_111/mini.ipynb", notebooks["correct"], T0),
        ("assignment_42_export/submission_222/group work.ipynb", notebooks["correct"], T0),
        ("assignment_42_export/submission_333/mini.ipynb", notebooks["blank"], T0),
        ("assignment_42_export/submission_999/mini.ipynb", notebooks["blank"], T0)])  # not in the metadata
    found, rows, _ = _found(tmp_path, archive)
    assert found.lms == "gradescope" and set(rows) == {"0042", "0043", "0044", "0046", "submission_999"}
    assert rows["0043"].path == rows["0044"].path and rows["0043"].notes == [f"group submission with {MARY.full_name}"]
    assert rows["0042"].submitted_at == datetime(2026, 3, 1, 18, 0, 0, 123456, tzinfo=timezone.utc)
    assert rows["0046"].name == EVIL.full_name
    assert "not named the way Gradescope" in rows["submission_999"].notes[0]
    assert found.ignored == ["submission_metadata.yml (Gradescope metadata: read for the submitters and times)"]


def test_recognition_needs_most_entries_and_can_be_forced(notebooks, tmp_path):
    folder = tmp_path / "plain"
    for name in ("alice", "bob", "hw_2024_1_final"):  # the last one looks like a Canvas name
        (folder / f"{name}.ipynb").parent.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.ipynb").write_text(notebooks["blank"])
    found, rows, _ = _found(tmp_path, folder)
    assert found.lms == "plain" and set(rows) == {"alice", "bob", "hw_2024_1_final"}
    found, rows, _ = _found(tmp_path, folder, "canvas")
    assert rows["2024"].lms == "canvas" and rows["alice"].lms == "plain"
    assert "not named the way Canvas names its downloads" in rows["alice"].notes[0]
    canvas = tmp_path / "canvas"
    (canvas / canvas_upload(ZOE, 1, "a.ipynb")).parent.mkdir()
    (canvas / canvas_upload(ZOE, 1, "a.ipynb")).write_text(notebooks["blank"])
    found, rows, _ = _found(tmp_path, canvas, "plain")
    assert list(rows) == [canvas_upload(ZOE, 1, "a")]


def test_a_single_moodle_student_is_not_a_wrapper(notebooks, tmp_path):
    folder = tmp_path / "download" / moodle_folder(ZOE)
    for name in ("a.ipynb", "b.ipynb"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(notebooks["blank"])
    _found_, rows, _ = _found(tmp_path, tmp_path / "download")
    assert list(rows) == ["1234501"]


def test_the_nbgrader_exchange_layout_carries_its_files(notebooks, tmp_path):
    folder = tmp_path / "course" / "submitted" / "alice" / MINI
    folder.mkdir(parents=True)
    (folder / "mini.ipynb").write_text(notebooks["blank"])
    (folder / "timestamp.txt").write_text("2026-03-01 10:00:00.000000 UTC")
    (folder / "submission_secret.txt").write_text("s3cret")
    _found_, rows, _ = _found(tmp_path, tmp_path / "course")
    alice = rows["alice"]
    assert alice.lms == "nbgrader" and alice.submitted_at == datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
    assert set(alice.exchange_files) == {"timestamp.txt", "submission_secret.txt"}


def test_a_students_own_timestamp_file_is_not_trusted(notebooks, tmp_path):
    folder = tmp_path / "class" / moodle_folder(ZOE)
    folder.mkdir(parents=True)
    (folder / "mini.ipynb").write_text(notebooks["blank"])
    (folder / "timestamp.txt").write_text("2000-01-01 00:00:00 UTC")
    _found_, rows, _ = _found(tmp_path, tmp_path / "class")
    assert rows["1234501"].submitted_at is None and rows["1234501"].exchange_files == {}


# -- the import files, byte for byte ---------------------------------------------------------------------

def _result(student_id, name, lms, score, **extra) -> Result:
    return Result(student_id=student_id, origin="x", feedback="", max_score=4, score=score, name=name, lms=lms,
                  **extra)


CLASS_RESULTS = [
    _result("90001", "ångströmzoë", "canvas", 3),
    _result("90002", "=cmd|' /C calc'!A0", "canvas", 2.5),
    _result("90003", "obriensmithmary", "canvas", 1, needs_manual_grade=1),  # waits for hand grading
    _result("1234501", "Zoë Ångström", "moodle", 3),
    _result("1234502", "José María de la Cruz", "moodle", 0, statuses=[st.NO_NOTEBOOK]),
    _result("1234503", "Mary Jane", "moodle", 0, statuses=[st.GRADER_ERROR]),  # waits: the grader failed
    _result("zangstrom", "Zoë Ångström", "blackboard", 4),
    _result("jm_delacruz", "", "blackboard", 1.25),
    _result("0042", "Zoë", "gradescope", 3),  # Gradescope and plain rows go to grades.csv only
    _result("alice", "", "plain", 3),
]
NOW = datetime(2026, 3, 2, 9, 30, 0, tzinfo=timezone(timedelta(hours=1)))

# Canvas, "How do I import grades in the Gradebook?" and gradebook_importer.rb: the header starts "Student", "ID"
# and its student columns end with "Section"; an optional "Points Possible" row; students matched by ID first.
CANVAS = ("\ufeffStudent,ID,SIS User ID,SIS Login ID,Section,Residual blocks (777)\r\n"
          "Points Possible,,,,,10\r\n"
          "ångströmzoë,90001,,,,7.5\r\n"
          "'=cmd|' /C calc'!A0,90002,,,,6.25\r\n").encode("utf-8")
# Moodle's offline grading worksheet (assignfeedback_offline): "Identifier" = "Participant <id>", "Grade",
# "Last modified (grade)" read by strtotime(); "Full name" and "Maximum Grade" for people.
MOODLE = ("\ufeffIdentifier,Full name,Grade,Maximum Grade,Last modified (grade)\r\n"
          "Participant 1234501,Zoë Ångström,7.5,10,2026-03-02T09:30:00+01:00\r\n"
          "Participant 1234502,José María de la Cruz,0,10,2026-03-02T09:30:00+01:00\r\n").encode("utf-8")
# Blackboard's Work Offline download/upload: tab-delimited, UTF-16 with a byte-order mark, text in quotes; the
# student by "Username", the column by the id after "|".
BLACKBOARD = ('\ufeff"Username"\t"Residual blocks (777)"\r\n'
              '"jm_delacruz"\t3.125\r\n'
              '"zangstrom"\t10\r\n').encode("utf-16-le")


def test_the_lms_import_files_byte_for_byte(tmp_path):
    lines = write_exports(tmp_path, CLASS_RESULTS, "mini", 4, header="Residual blocks (777)", points=10, now=NOW)
    assert (tmp_path / "canvas_grades.csv").read_bytes() == CANVAS
    assert (tmp_path / "moodle_grades.csv").read_bytes() == MOODLE
    assert (tmp_path / "blackboard_grades.xls").read_bytes() == BLACKBOARD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blackboard_grades.xls", "canvas_grades.csv",
                                                          "moodle_grades.csv"]
    assert any("90003 (awaiting hand grading)" in line for line in lines)
    assert any("1234503 (grader error)" in line for line in lines)


def test_excel_and_the_importers_read_them_back(tmp_path):
    """What each importer's own reader makes of them: the BOM is gone, the header is the first row."""
    write_exports(tmp_path, CLASS_RESULTS, "mini", 4, now=NOW)
    canvas = list(csv.reader(io.StringIO((tmp_path / "canvas_grades.csv").read_text(encoding="utf-8-sig"))))
    assert canvas[0][:2] == ["Student", "ID"] and canvas[0][4] == "Section" and canvas[0][5] == "mini"
    assert canvas[1] == ["Points Possible", "", "", "", "", "4"] and canvas[2][1:] == ["90001", "", "", "", "3"]
    moodle = list(csv.DictReader(io.StringIO((tmp_path / "moodle_grades.csv").read_text(encoding="utf-8-sig"))))
    assert [(row["Identifier"], row["Grade"]) for row in moodle] == [("Participant 1234501", "3"),
                                                                     ("Participant 1234502", "0")]
    blackboard = (tmp_path / "blackboard_grades.xls").read_text(encoding="utf-16")
    assert list(csv.reader(io.StringIO(blackboard), delimiter="\t")) == [["Username", "mini"], ["jm_delacruz", "1.25"],
                                                                         ["zangstrom", "4"]]


def _zipped(entries: dict[str, str]) -> bytes:
    """A zip a student made of their work (a notebook, perhaps in a folder, perhaps with others)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _zipped_uploads(notebooks, homework: str) -> list:
    """One student's zipped notebook in each LMS's download (the same student, ZOE, in each)."""
    one = _zipped({"mini/mini.ipynb": notebooks["correct"]})
    return [
        ("canvas", [(canvas_upload(ZOE, 100, "mini.zip"), one, T0)]),
        ("moodle", [(f"{moodle_folder(ZOE)}/mini.zip", one, T0)]),
        ("blackboard", [(blackboard_file(homework, ZOE, T0), blackboard_receipt(homework, ZOE, T0, ["mini.zip"]), T0),
                        (blackboard_file(homework, ZOE, T0, "mini.zip"), one, T0)]),
        ("gradescope", [("assignment_42_export/submission_metadata.yml", gradescope_metadata({111: ([ZOE], T0)}), T0),
                        ("assignment_42_export/submission_111/mini.zip", one, T0)]),
        ("plain", [("zangstrom/mini.zip", one, T0)])]


@pytest.mark.parametrize("index", range(5))
def test_a_zipped_notebook_is_unpacked_in_every_download(notebooks, tmp_path, index):
    layout, entries = _zipped_uploads(notebooks, "Homework 1_ResNet")[index]
    _found_, rows, _ = _found(tmp_path, write_zip(tmp_path / f"{layout}.zip", entries))
    [(student, submission)] = rows.items()
    assert submission.status is None and submission.path.name == "mini.ipynb", (layout, submission)
    assert submission.origin.endswith("mini.zip/mini/mini.ipynb")


def test_a_zip_of_several_notebooks_grades_this_assignments_and_says_so(notebooks, tmp_path):
    several = _zipped({"notes.ipynb": notebooks["blank"].replace('"grade_id"', '"other_id"'),
                       "mini.ipynb": notebooks["correct"]})
    _found_, rows, _ = _found(tmp_path, write_zip(tmp_path / "moodle.zip", [
        (f"{moodle_folder(ZOE)}/work.zip", several, T0)]))
    zoe = rows[str(ZOE.moodle_id)]
    assert zoe.origin.endswith("work.zip/mini.ipynb") and zoe.attempts[0].endswith("work.zip/notes.ipynb")
    assert zoe.notes[0].startswith("graded ") and "also found" in zoe.notes[0]


# -- whole classes through the CLI ------------------------------------------------------------------------

pytestmark_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox uses Linux features")

HALF_OFF = '''
from nbgrader.plugins import LateSubmissionPlugin


class HalfOff(LateSubmissionPlugin):
    """A late notebook loses half its score."""

    def late_submission_penalty(self, student_id, score, total_seconds_late):
        return score / 2


c.AssignLatePenalties.plugin_class = HalfOff
'''


@pytest.fixture(scope="module")
def late_course(notebooks, tmp_path_factory):
    """The mini course with a late-submission plugin in its nbgrader_config.py."""
    course = tmp_path_factory.mktemp("late-course") / "course"
    shutil.copytree(notebooks["course"], course)
    with open(course / "nbgrader_config.py", "a") as f:
        f.write(HALF_OFF)
    return course


def _code_only(notebooks) -> str:
    """The code answered, the written answer left alone: 3 of 4 points, nothing to grade by hand."""
    return nbformat.writes(fill(notebooks["release"], {"double": notebooks["answers"]["double"]}))


def _written(notebooks, text: str) -> str:
    return nbformat.writes(fill(notebooks["release"], dict(notebooks["answers"], written=text)))


def _grade(archive, out, course, *extra, env=None):
    done = run_cli("grade", archive, "--assignment", MINI, "--out", out, "--course", course, "--jobs", "2",
                   "--timeout", "20", "--no-progress", *extra, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, read_csv(out / "grades.csv")


def _hand_grade(out: Path, scores: dict[str, float]) -> None:
    """What formgrader does when a person gives points to the written answer."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{out / 'nbgrader' / 'gradebook.db'}", "fixture-course") as gb:
        for student, points in scores.items():
            grade = gb.find_grade("written", MINI, MINI, student)
            grade.manual_score, grade.needs_manual_grade = points, False
        gb.db.commit()


@pytest.mark.slow
@pytestmark_linux
def test_canvas_batches_hand_grades_and_import(notebooks, tmp_path):
    out = tmp_path / "out"
    first = write_zip(tmp_path / "day1.zip", [
        (canvas_upload(ZOE, 100, "mini.ipynb"), notebooks["wrong"], T0),
        (canvas_upload(ZOE, 205, "mini-1.ipynb"), _written(notebooks, "Because it is."), T0),
        (canvas_upload(JOSE, 150, "Mini (final) é.ipynb"), _written(notebooks, "2(a+b) = 2a+2b"), T0),
        (canvas_text(LEI), "<p>no file</p>", T0)])
    done, rows = _grade(first, out, notebooks["course"])
    assert set(rows) == {"90001", "90002", "90004"} and "Recognised a Canvas download" in done.stdout
    assert rows["90001"]["submission"] == canvas_upload(ZOE, 205, "mini-1.ipynb") and rows["90001"]["score"] == "3"
    assert rows["90001"]["name"] == "ångströmzoë" and rows["90004"]["status"] == st.NO_NOTEBOOK
    lei_page = (out / "feedback" / "90004.html").read_bytes()
    _hand_grade(out, {"90001": 1, "90002": 1})
    # Day 2: Zoë hands in again with another written answer, Mary hands in late; Lei is not in this download.
    second = write_zip(tmp_path / "day2.zip", [
        (canvas_upload(ZOE, 300, "mini-2.ipynb"), _written(notebooks, "Because 2 distributes over +."), T0),
        (canvas_upload(JOSE, 150, "Mini (final) é.ipynb"), _written(notebooks, "2(a+b) = 2a+2b"), T0),
        (canvas_upload(MARY, 310, "mini.ipynb", late=True), _code_only(notebooks), T0)])
    done, rows = _grade(second, out, notebooks["course"])
    assert set(rows) == {"90001", "90002", "90003", "90004"}  # the earlier student keeps their row ...
    assert (out / "feedback" / "90004.html").read_bytes() == lei_page  # ... and their feedback
    assert "Kept 1 student(s) graded in earlier batches" in done.stdout
    zoe, jose = rows["90001"], rows["90002"]
    assert (zoe["written"], zoe["needs_manual_grade"]) == ("", "1")  # a new answer: to review, not the old points
    assert (zoe["status"], zoe["score"], zoe["under_review"]) == ("needs review", "3", "1")  # the old point aside
    assert "review written in formgrader" in zoe["notes"]
    assert (jose["written"], jose["score"]) == ("1", "4")  # the same answer keeps its hand grade
    assert "Canvas marked it late" in rows["90003"]["notes"]
    imported = list(csv.reader(io.StringIO((out / "canvas_grades.csv").read_text(encoding="utf-8-sig"))))
    assert [row[1:2] + row[5:] for row in imported[2:]] == [["90002", "4"], ["90003", "3"], ["90004", "0"]]
    assert "90001 (awaiting hand grading)" in done.stdout
    # Feedback: the hand grade shows once given; an answer to review again awaits hand grading, as in grades.csv.
    zoe_page, jose_page = ((out / "feedback" / f"{who}.html").read_text(encoding="utf-8") for who in ("90001", "90002"))
    assert ">Mini assignment — written answer</a> (Score: awaiting hand grading (1.0 point))" in zoe_page
    assert "mini (Score: 3.0 / 4.0; 1.0 point awaits hand grading)" in zoe_page
    assert ">Mini assignment — written answer</a> (Score: 1.0 / 1.0)" in jose_page
    assert "mini (Score: 4.0 / 4.0)" in jose_page and ">Mini assignment — test visible</a>" in jose_page


def _strip_nbgrader_metadata(text: str) -> str:
    nb = nbformat.reads(text, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    return nbformat.writes(nb)


@pytest.mark.slow
@pytestmark_linux
def test_moodle_download_graded(notebooks, tmp_path):
    stripped = _strip_nbgrader_metadata(_written(notebooks, "It distributes: 2(a+b) = 2a+2b."))
    archive = write_zip(tmp_path / "moodle.zip", [
        (f"{moodle_folder(ZOE)}/mini.ipynb", notebooks["wrong"], T0),
        (f"{moodle_folder(ZOE)}/mini v2.ipynb", _code_only(notebooks), T0 + timedelta(hours=2)),
        (f"{moodle_folder(MARY)}/edited in another editor.ipynb", stripped, T0),
        (f"{moodle_folder(LEI, plugin='onlinetext')}/onlinetext.html", "<p>my code is in the file</p>", T0),
        (f"{moodle_folder(LEI)}/answer.py", "def double(x): return 2 * x\n", T0)])
    out = tmp_path / "out"
    done, rows = _grade(archive, out, notebooks["course"])
    notes = rows["1234504"]["notes"].split(" | ")  # each said once, with the status's reason
    assert sorted(notes) == [f"handed in a Moodle onlinetext ({moodle_folder(LEI, plugin='onlinetext')})",
                             f"no .ipynb file (found {moodle_folder(LEI)}/answer.py)"]
    assert set(rows) == {"1234501", "1234503", "1234504"}
    assert (rows["1234501"]["score"], rows["1234501"]["submission"]) == ("3", f"{moodle_folder(ZOE)}/mini v2.ipynb")
    mary = rows["1234503"]
    assert (mary["name"], mary["score"], mary["written"], mary["needs_manual_grade"]) == \
        ("Mary Jane O'Brien-Smith", "3", "", "1")  # the answer is kept for hand grading
    graded = nbformat.read(out / "nbgrader" / "autograded" / "1234503" / MINI / f"{MINI}.ipynb", as_version=4)
    written = [c for c in graded.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "written"]
    assert [c.source for c in written] == ["It distributes: 2(a+b) = 2a+2b."]
    assert "Moodle online text" in done.stdout
    imported = (out / "moodle_grades.csv").read_text(encoding="utf-8-sig").splitlines()
    assert imported[0] == "Identifier,Full name,Grade,Maximum Grade,Last modified (grade)"
    assert [line.split(",")[:3] for line in imported[1:]] == [["Participant 1234501", "Zoë Ångström", "3"],
                                                             ["Participant 1234504", "雷 李", "0"]]


@pytest.mark.slow
@pytestmark_linux
def test_blackboard_download_with_a_due_date(notebooks, late_course, tmp_path):
    homework = "Homework 1_ResNet"
    early, late = T0, T0 + timedelta(days=1)
    entries = []
    for student, when, data in [(ZOE, early, notebooks["wrong"]), (ZOE, late, _code_only(notebooks)),
                                (JOSE, early, _code_only(notebooks))]:
        entries += [(blackboard_file(homework, student, when), blackboard_receipt(homework, student, when,
                                                                                  ["mini.ipynb"]), when),
                    (blackboard_file(homework, student, when, "mini.ipynb"), data, when)]
    out = tmp_path / "out"
    due = (T0 + timedelta(hours=12)).strftime("%Y-%m-%d %H:%M")  # local time, as Blackboard's file names
    done, rows = _grade(write_zip(tmp_path / "bb.zip", entries), out, late_course, "--due", due,
                        "--lms-column", "Homework 1 [Total Pts: 10 Score] |123456", "--lms-points", "10")
    zoe, jose = rows["zangstrom"], rows["jm_delacruz"]
    assert (zoe["score"], zoe["late_penalty"], zoe["name"]) == ("1.5", "1.5", "Zoë Ångström")  # HalfOff of 3
    assert datetime.fromisoformat(zoe["submitted_at"]) == late.astimezone()
    assert (jose["score"], jose["late_penalty"]) == ("3", "")
    assert "lost points to the late-submission penalty" in done.stdout
    assert (out / "blackboard_grades.xls").read_text(encoding="utf-16").splitlines() == [
        '"Username"\t"Homework 1 [Total Pts: 10 Score] |123456"', '"jm_delacruz"\t7.5', '"zangstrom"\t3.75']


PACIFIC = {"TZ": "America/Los_Angeles"}  # a grading machine whose local time is not UTC (in March: UTC-8)


def _blackboard_batch(path: Path, homework: str, attempts) -> Path:
    """A Blackboard download of (student, time, notebook text) attempts, receipts included."""
    entries = []
    for student, when, data in attempts:
        entries += [(blackboard_file(homework, student, when), blackboard_receipt(homework, student, when,
                                                                                  ["mini.ipynb"]), when),
                    (blackboard_file(homework, student, when, "mini.ipynb"), data, when)]
    return write_zip(path, entries)


@pytest.mark.slow
@pytestmark_linux
def test_later_runs_keep_the_newest_attempt_and_grade_again_what_their_settings_changed(notebooks, tmp_path):
    course = tmp_path / "course"
    shutil.copytree(notebooks["course"], course)
    homework, out = "Homework 1_ResNet", tmp_path / "out"
    day1 = _blackboard_batch(tmp_path / "day1.zip", homework, [(ZOE, T0, notebooks["wrong"]),
                                                               (JOSE, T0, _code_only(notebooks))])
    day2 = _blackboard_batch(tmp_path / "day2.zip", homework, [(ZOE, T0 + timedelta(days=1), _code_only(notebooks))])
    due = (T0 + timedelta(hours=12)).strftime("%Y-%m-%d %H:%M")
    _grade(day1, out, course, "--due", due, env=PACIFIC)
    _grade(day2, out, course, "--due", due, env=PACIFIC)
    # Day 1's command again, as an instructor reruns it: Zoë's newer attempt (day 2) stays the graded one.
    done, rows = _grade(day1, out, course, "--due", due, env=PACIFIC)
    assert (rows["zangstrom"]["score"], rows["jm_delacruz"]["score"]) == ("3", "3")
    # Blackboard's times (and --due) are the machine's local time, here 8 hours behind UTC; grades.csv says UTC.
    assert rows["zangstrom"]["submitted_at"] == (T0 + timedelta(days=1, hours=8)).isoformat() + "+00:00"
    assert "Kept 1 newer attempt(s) graded in an earlier run" in done.stdout
    # nbgrader's default late plugin takes nothing off: the notes and the summary still say who was late.
    assert "late: 12 h after the due date" in rows["zangstrom"]["notes"] and rows["zangstrom"]["late_penalty"] == ""
    assert "late" not in rows["jm_delacruz"]["notes"] and "1 submission(s) came after the due date" in done.stdout
    assert "reused from an earlier run" in done.stdout and "Graded 2 submission(s)" in done.stdout
    # A late-penalty plugin added to nbgrader_config.py: no --force needed, and the student of day 1 only is graded
    # again too, from the class course's copy of their file.
    with open(course / "nbgrader_config.py", "a") as f:
        f.write(HALF_OFF)
    done, rows = _grade(day2, out, course, "--due", due, env=PACIFIC)
    assert (rows["zangstrom"]["score"], rows["zangstrom"]["late_penalty"]) == ("1.5", "1.5")  # a day late
    assert (rows["jm_delacruz"]["score"], rows["jm_delacruz"]["late_penalty"]) == ("3", "")
    assert "Graded 1 result(s) of earlier runs again: the course's nbgrader_config.py changed" in done.stdout
    assert rows["jm_delacruz"]["submission"].endswith("mini.ipynb") and "reused" not in done.stdout
    # A later due date: both graded again; Zoë is no longer late, and day 1's rerun keeps her day-2 attempt.
    later_due = (T0 + timedelta(days=2)).strftime("%Y-%m-%d %H:%M")
    done, rows = _grade(day1, out, course, "--due", later_due, env=PACIFIC)
    assert (rows["zangstrom"]["score"], rows["zangstrom"]["late_penalty"]) == ("3", "")
    assert "Graded 1 result(s) of earlier runs again: the due date changed" in done.stdout
    done, rows = _grade(day1, out, course, "--due", later_due, env=PACIFIC)
    assert "Graded 2 submission(s)" in done.stdout and "1 reused" in done.stdout and "again" not in done.stdout


@pytest.mark.slow
@pytestmark_linux
def test_zipped_notebooks_are_graded_through_the_tool(notebooks, tmp_path):
    _, entries = _zipped_uploads(notebooks, "Homework 1_ResNet")[1]  # Moodle's
    entries.append((f"{moodle_folder(JOSE)}/two.zip", _zipped({"a.ipynb": _code_only(notebooks),
                                                                "b.ipynb": _code_only(notebooks)}), T0))
    done, rows = _grade(write_zip(tmp_path / "moodle.zip", entries), tmp_path / "out", notebooks["course"])
    zoe, jose = rows[str(ZOE.moodle_id)], rows[str(JOSE.moodle_id)]
    assert (zoe["status"], zoe["test_visible"], zoe["test_hidden"]) == ("ok", "1", "2")
    assert zoe["submission"].endswith("mini.zip/mini/mini.ipynb")
    assert (jose["status"], jose["score"]) == ("ok", "3") and "also found" in jose["notes"]


@pytest.mark.slow
@pytestmark_linux
def test_gradescope_export_graded(notebooks, tmp_path):
    archive = write_zip(tmp_path / "gs.zip", [
        ("assignment_42_export/submission_metadata.yml",
         gradescope_metadata({111: ([ZOE], T0), 222: ([JOSE, MARY], T0), 333: ([EVIL], T0)}), T0),
        ("assignment_42_export/submission_111/mini.ipynb", _code_only(notebooks), T0),
        ("assignment_42_export/submission_222/ours.ipynb", notebooks["wrong"], T0),
        ("assignment_42_export/submission_333/mini.py", "def double(x): return 2 * x\n", T0)])
    done, rows = _grade(archive, tmp_path / "out", notebooks["course"], "--similarity")
    assert {k: (v["score"], v["status"]) for k, v in rows.items()} == {
        "0042": ("3", "ok"), "0043": ("0", "ok"), "0044": ("0", "ok"), "0046": ("0", st.NO_NOTEBOOK)}
    assert rows["0046"]["name"] == "'" + EVIL.full_name  # spreadsheet-safe
    assert not list((tmp_path / "out").glob("*_grades.*"))  # Gradescope imports nothing: grades.csv is keyed by SID
    assert "0 pair(s) far more alike" in done.stdout  # the group's one notebook is no pair
    assert (tmp_path / "out" / "similarity.csv").read_text().count("\n") == 1  # the header
    assert "0 pair(s) of 3 students" in (tmp_path / "out" / "similarity.html").read_text(encoding="utf-8")


def test_the_summary_counts_from_the_process_start(monkeypatch):
    """The time in the summary includes start-up (imports, the warm kernel server): it starts with the process."""
    import time

    import psutil

    from autograde import cli

    seen = {}

    def grade(args):
        seen["started"] = args.started
        return 0

    monkeypatch.setattr(cli, "_grade", grade)
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: time.time() - 1000)
    assert cli.main(["grade", "class.zip", "--assignment", MINI, "--out", "out"]) == 0
    assert time.monotonic() - seen["started"] >= 1000


# -- nbgrader's exchange, end to end ----------------------------------------------------------------------

NBGRADER = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "nbgrader"


@pytest.mark.slow
@pytestmark_linux
def test_the_nbgrader_exchange_round_trip(notebooks, tmp_path):
    """release_assignment, fetch_assignment, submit, collect, grade with the tool, generate_feedback,
    release_feedback, fetch_feedback: every step with nbgrader's own commands, in a private exchange and HOME."""
    from autograde_fixtures import REPO, tool_env

    course, exchange = tmp_path / "course", tmp_path / "exchange"
    shutil.copytree(notebooks["course"], course)
    with open(course / "nbgrader_config.py", "a") as f:
        f.write(HALF_OFF + f"c.Exchange.root = {str(exchange)!r}\n")
    exchange.mkdir(mode=0o777)

    def nbgrader(*args, cwd: Path, who: str = "instructor"):
        cwd.mkdir(parents=True, exist_ok=True)
        student = ["--course", "fixture-course", f"--Exchange.root={exchange}"] + \
            ([f"--student={who}"] if args[0] in ("submit", "fetch_feedback") else []) if who != "instructor" else []
        done = subprocess.run([str(NBGRADER), *args, *student], cwd=cwd, capture_output=True, text=True,
                              env=tool_env(HOME=str(tmp_path / f"home-{who}"), PYTHONPATH=str(REPO)), timeout=300)
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-3000:])

    nbgrader("db", "assignment", "add", MINI, "--duedate", "2000-01-01 00:00:00 UTC", cwd=course)  # all are late
    nbgrader("release_assignment", MINI, cwd=course)
    answers = {"alice": {"double": notebooks["answers"]["double"]}, "bob": {"double": WRONG}}
    for student, answer in answers.items():
        nbgrader("fetch_assignment", MINI, cwd=tmp_path / student, who=student)
        fetched = tmp_path / student / MINI / f"{MINI}.ipynb"
        nbformat.write(fill(nbformat.read(fetched, as_version=4), answer), fetched)
        nbgrader("submit", MINI, cwd=tmp_path / student, who=student)
    nbgrader("collect", MINI, cwd=course)

    out = tmp_path / "out"
    done, rows = _grade(course, out, course)
    assert "Recognised nbgrader's submitted/ folder" in done.stdout
    alice = rows["alice"]
    assert (alice["score"], alice["late_penalty"], rows["bob"]["score"]) == ("1.5", "1.5", "0")  # nbgrader's plugin
    assert alice["submitted_at"].startswith(str(datetime.now(timezone.utc).year))

    nbgrader("generate_feedback", MINI, cwd=out / "nbgrader")
    nbgrader("release_feedback", MINI, cwd=out / "nbgrader")
    for student, score in (("alice", "1.5"), ("bob", "0.0")):  # nbgrader's page shows the score less the penalty
        nbgrader("fetch_feedback", MINI, cwd=tmp_path / student, who=student)
        (page,) = (tmp_path / student / MINI / "feedback").glob(f"*/{MINI}.html")  # each gets their own page
        text = page.read_text(encoding="utf-8")
        assert f"{MINI} (Score: {score} / 4.0)" in text and "BEGIN HIDDEN TESTS" not in text
        assert ("Late submission penalty (Score: -1.5)" in text) == (student == "alice")
        tool_page = (out / "feedback" / f"{student}.html").read_text(encoding="utf-8")
        summary = text[text.index("<h4>"):text.index("</ol>")]
        assert summary == tool_page[tool_page.index("<h4>"):tool_page.index("</ol>")]  # the tool's page says the same
        assert ">Mini assignment — test visible</a> (Score: " in summary


# -- --similarity -----------------------------------------------------------------------------------------

ORIGINAL = '''def double(x):
    result = x.clone()
    for step in range(1):
        result = result + x
    if result.dtype == torch.bool:
        raise TypeError("booleans cannot be doubled")
    return result
'''
RENAMED = '''def double(x):
    # my own work
    total = x.clone()   # start from x
    for i in range(1):
        total = total + x
    if total.dtype == torch.bool:
        raise TypeError("no doubling of booleans")
    return total
'''
OTHER = '''def double(x):
    if not torch.is_tensor(x):
        x = torch.tensor(x)
    out = torch.empty_like(x)
    out.copy_(x * 2)
    return out.reshape(x.shape)
'''


@pytest.mark.slow
def test_similarity_flags_renamed_copies_and_nothing_else(notebooks, tmp_path):
    from autograde.similarity import write_similarity

    answers = {"ann": ORIGINAL, "ben": RENAMED, "cal": OTHER, "dee": None, "eve": None}
    submitted, results = {}, []
    for student, answer in answers.items():
        nb = fill(notebooks["release"], {"double": answer} if answer else {})
        submitted[student] = tmp_path / f"{student}.ipynb"
        nbformat.write(nb, submitted[student])
        results.append(_result(student, "", "plain", 0))
    line = write_similarity(tmp_path, results, notebooks["release"], submitted)
    rows = list(csv.DictReader(open(tmp_path / "similarity.csv", encoding="utf-8")))
    assert [(r["student_a"], r["student_b"]) for r in rows] == [("ann", "ben")]  # untouched releases are no pair
    assert float(rows[0]["similarity"]) >= 0.9 and rows[0]["most_alike_cells"] == "double"
    assert "1 pair(s)" in line and "grades are unchanged" in line
    assert "no doubling of booleans" in (tmp_path / "similarity.html").read_text(encoding="utf-8")
    # A group's one submission is not copying.
    submitted["ben"].write_bytes(submitted["ann"].read_bytes())
    for result in results[:2]:
        result.notes.append("group submission with the other")
    write_similarity(tmp_path, results, notebooks["release"], submitted)
    assert (tmp_path / "similarity.csv").read_text().splitlines() == [
        "student_a,student_b,similarity,z_score,most_alike_cells"]


# -- late penalties without Python, extensions and a roster ------------------------------------------------------

COURSE_LATE_RULE = '''
c.AssignLatePenalties.plugin_class = "autograde.late.LatePenalty"
c.LatePenalty.per = "day"
c.LatePenalty.percent_per_period = 20
c.LatePenalty.max_percent = 50
c.LatePenalty.grace_minutes = 30
'''


@pytest.mark.slow
@pytestmark_linux
def test_late_rule_options_and_extensions(notebooks, tmp_path):
    from nbgrader.api import Gradebook

    course = tmp_path / "course"
    shutil.copytree(notebooks["course"], course)
    with open(course / "nbgrader_config.py", "a") as f:
        f.write(COURSE_LATE_RULE)
    due, code = T0 + timedelta(hours=12), _code_only(notebooks)  # 3 of 4 points when on time
    download = _blackboard_batch(tmp_path / "bb.zip", "Homework 1_ResNet", [
        (ZOE, due + timedelta(hours=25), code),  # two days started: 40%
        (JOSE, due + timedelta(minutes=10), code),  # within the grace period
        (LEI, due + timedelta(days=3, hours=1), code),  # four days: 80%, capped at 50%
        (MARY, due + timedelta(days=3, hours=1), code)])  # as late as Lei, with an extension of four days
    extensions = tmp_path / "extensions.csv"
    extensions.write_text(f"username,new due date\nmary.ob,{(due + timedelta(days=4)):%Y-%m-%d %H:%M}\n")
    args = ("--due", f"{due:%Y-%m-%d %H:%M}", "--extensions", extensions)
    done, rows = _grade(download, tmp_path / "out", course, *args)
    scores = {student: (row["score"], row["late_penalty"]) for student, row in rows.items()}
    assert scores == {"zangstrom": ("1.8", "1.2"), "jm_delacruz": ("3", ""), "lli": ("1.5", "1.5"),
                      "mary.ob": ("3", "")}
    assert "late: 10 min after the due date" in rows["jm_delacruz"]["notes"]
    assert "late" not in rows["mary.ob"]["notes"] and "2 submission(s) lost points" in done.stdout
    with Gradebook(f"sqlite:///{tmp_path / 'out' / 'nbgrader' / 'gradebook.db'}", "fixture-course") as gb:
        mary = gb.find_submission(MINI, "mary.ob")  # formgrader sees the extension nbgrader's way
        assert (mary.extension, mary.total_seconds_late) == (timedelta(days=4), 0)
        assert gb.find_submission(MINI, "zangstrom").extension is None
    # The extension withdrawn: Mary is graded again, without --force, and the others are reused.
    extensions.write_text("username,new due date\n")
    done, rows = _grade(download, tmp_path / "out", course, *args)
    assert (rows["mary.ob"]["score"], rows["mary.ob"]["late_penalty"]) == ("1.5", "1.5")
    assert "3 reused" in done.stdout and "late: 3 d 1 h after the due date" in rows["mary.ob"]["notes"]
    # An extensions file with a mistake stops the run before anything is graded, and says where.
    extensions.write_text("mary.ob,the fourth of never\n")
    failed = run_cli("grade", download, "--assignment", MINI, "--out", tmp_path / "out", "--course", course, *args)
    assert failed.returncode == 1 and "row 1: not a date and time" in failed.stderr
    assert read_csv(tmp_path / "out" / "grades.csv")["mary.ob"]["score"] == "1.5"


CANVAS_ROSTER = """Student,ID,SIS User ID,SIS Login ID,Section,Mini (123)
    Points Possible,,,,,4
"Ångström, Zoë",90001,,,Section A,
"Student, Test",99999,,,Section A,
"de la Cruz, José María",90002,,,Section A,
"李, 雷",90004,,,Section A,
"""


@pytest.mark.slow
@pytestmark_linux
def test_a_roster_gives_every_student_a_row(notebooks, tmp_path):
    out, roster = tmp_path / "out", tmp_path / "gradebook-export.csv"
    roster.write_text(CANVAS_ROSTER, encoding="utf-8")
    day1 = write_zip(tmp_path / "day1.zip", [(canvas_upload(ZOE, 100, "mini.ipynb"), _code_only(notebooks), T0),
                                             (canvas_upload(MARY, 101, "mini.ipynb"), _code_only(notebooks), T0)])
    done, rows = _grade(day1, out, notebooks["course"], "--roster", roster)
    assert set(rows) == {"90001", "90002", "90003", "90004"}  # Canvas's test student is no student
    assert (rows["90002"]["status"], rows["90002"]["score"], rows["90002"]["name"]) == \
        (st.NO_SUBMISSION, "0", "de la Cruz, José María")
    assert "not on the roster" in rows["90003"]["notes"] and rows["90003"]["score"] == "3"
    assert "Roster: 3 student(s); 2 with no submission (a row with 0); 1 graded but not on it" in done.stdout
    assert "could not be graded: <strong>no submission</strong>" in (out / "feedback" / "90004.html").read_text()
    with open(out / "canvas_grades.csv", encoding="utf-8-sig", newline="") as f:
        imported = {row["ID"]: row[MINI] for row in csv.DictReader(f) if row["ID"]}
    assert imported == {"90001": "3", "90002": "0", "90003": "3", "90004": "0"}
    # Lei hands in later: the next batch, without --roster, keeps the class list of the first.
    day2 = write_zip(tmp_path / "day2.zip", [(canvas_upload(LEI, 102, "mini.ipynb"), _code_only(notebooks), T0)])
    done, rows = _grade(day2, out, notebooks["course"])
    assert (rows["90004"]["status"], rows["90004"]["score"]) == ("ok", "3") and rows["90002"]["score"] == "0"
    assert "Roster: 3 student(s); 1 with no submission" in done.stdout
    assert "could not be graded" not in (out / "feedback" / "90004.html").read_text()
