"""A class graded in shards and merged must equal one unsharded run: grades.csv, feedback pages, LMS import files,
the class's nbgrader course. A missing or unfinished shard is named with its students, and nothing is merged."""
import json
import shutil
from dataclasses import replace

import nbformat
import pytest
from nbgrader.api import Gradebook

from autograde.parts import Manifest, Shard, part_of

from autograde_fixtures import MINI, fill, make_course, release_and_answers, run_cli
from lms_downloads import EVIL, JOSE, LEI, MARY, T0, ZOE, Student, canvas_text, canvas_upload, write_zip

SHARDS = 3
COLUMN = "Mini (12345)"  # the Canvas column: the merge must write it as the shards were told
EXTRA = [Student(f"Student{i}", f"Number{i}", 91000 + i, 0, f"s{i}", f"{i}") for i in range(5)]


def test_shard_parse_rejects_nonsense():
    assert Shard.parse("2/4") == Shard(2, 4) and str(Shard(2, 4)) == "2/4"
    for text in ("4/4", "-1/3", "1", "a/b", "1/0"):
        with pytest.raises(Exception, match="I/N|less than N"):
            Shard.parse(text)


def test_every_student_is_in_exactly_one_part_whatever_the_order():
    ids = [f"student{i}" for i in range(200)] + ["Zoë", "李雷", "=1+1", "jm_delacruz"]
    for count in (1, 2, 3, 7):
        parts = {student: part_of(student, count) for student in ids}
        assert set(parts.values()) == set(range(count))  # 204 students: no part empty
        assert {s: part_of(s, count) for s in reversed(ids)} == parts
        assert all(Shard(parts[s], count).holds(s) and not Shard((parts[s] + 1) % count, count).holds(s)
                   for s in ids if count > 1)
    assert part_of("ABC", 5) == part_of("abc", 5)  # ids that differ only by case are one student


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return make_course(tmp_path_factory.mktemp("course"))


@pytest.fixture(scope="module")
def download(course, tmp_path_factory):
    """A Canvas download: a student with two attempts, a late one, a PDF, an online text, and more students."""
    release, answers = release_and_answers(course)
    correct, wrong = (nbformat.writes(fill(release, a)) for a in (answers, {"double": "def double(x):\n    return x\n"}))
    entries = [(canvas_upload(ZOE, 100, "mini.ipynb"), wrong, T0),
               (canvas_upload(ZOE, 205, "mini-1.ipynb"), correct, T0.replace(hour=11)),
               (canvas_upload(JOSE, 150, "final é.ipynb", late=True), correct, T0),
               (canvas_upload(MARY, 160, "mini.pdf"), b"%PDF-1.4\n", T0),
               (canvas_text(LEI), "<html>no file</html>", T0),
               (canvas_upload(EVIL, 170, "mini.ipynb"), "{not json", T0)]
    entries += [(canvas_upload(s, 300 + i, "mini.ipynb"), correct if i % 2 else wrong, T0) for i, s in enumerate(EXTRA)]
    return write_zip(tmp_path_factory.mktemp("download") / "class.zip", entries)


ABSENT = "90777"  # on the roster, with nothing in the download


@pytest.fixture(scope="module")
def roster(tmp_path_factory):
    path = tmp_path_factory.mktemp("roster") / "roster.csv"
    ids = [s.canvas_id for s in (ZOE, JOSE, MARY, LEI, EVIL, *EXTRA)] + [ABSENT]
    path.write_text("student_id\n" + "".join(f"{i}\n" for i in ids))
    return path


def _grade(download, course, out, *more):
    return run_cli("grade", download, "--assignment", MINI, "--out", out, "--course", course, "--jobs", "2",
                   "--timeout", "20", "--no-progress", "--lms-column", COLUMN, *more)


@pytest.fixture(scope="module")
def runs(course, download, roster, tmp_path_factory):
    """The class graded once whole, and as SHARDS shards then merged, with a roster."""
    root = tmp_path_factory.mktemp("runs")
    whole = _grade(download, course, root / "whole", "--roster", roster)
    assert whole.returncode == 0, whole.stderr
    shards = [_grade(download, course, root / "shards" / str(i), "--shard", f"{i}/{SHARDS}", "--roster", roster)
              for i in range(SHARDS)]
    assert all(done.returncode == 0 for done in shards), [done.stderr for done in shards]
    merged = run_cli("merge", *(root / "shards" / str(i) for i in range(SHARDS)), "--out", root / "merged",
                     "--course", course)
    assert merged.returncode == 0, merged.stderr
    return {"root": root, "whole": root / "whole", "merged": root / "merged", "shard_runs": shards,
            "merge": merged}


def _rows(path):
    return path.read_text(encoding="utf-8-sig").splitlines()


@pytest.mark.slow
def test_each_shard_grades_its_part_and_the_attempts_of_a_student_stay_together(runs):
    everyone = _rows(runs["whole"] / "grades.csv")[1:]
    seen = []
    for i in range(SHARDS):
        manifest = Manifest.read(runs["root"] / "shards" / str(i))
        assert manifest.finished and manifest.shard == f"{i}/{SHARDS}" and manifest.lms == "canvas"
        rows = _rows(runs["root"] / "shards" / str(i) / "grades.csv")[1:]
        assert rows, f"shard {i} is empty: choose other students"
        assert all(part_of(row.split(",")[0], SHARDS) == i for row in rows)
        seen += rows
        assert f"shard {i}/{SHARDS} of the class" in runs["shard_runs"][i].stdout
    assert sorted(seen) == sorted(everyone) and len(everyone) == 11  # the roster's absent student in one part
    zoe = [row for row in seen if row.startswith(str(ZOE.canvas_id))]
    assert len(zoe) == 1 and "mini-1.ipynb" in zoe[0] and "also found" in zoe[0]


@pytest.mark.slow
def test_the_merge_writes_what_one_run_writes(runs):
    whole, merged = runs["whole"], runs["merged"]
    assert (merged / "grades.csv").read_bytes() == (whole / "grades.csv").read_bytes()
    assert (merged / "canvas_grades.csv").read_bytes() == (whole / "canvas_grades.csv").read_bytes()
    assert COLUMN in (merged / "canvas_grades.csv").read_text(encoding="utf-8-sig").splitlines()[0]
    pages = sorted(p.name for p in (whole / "feedback").iterdir())
    assert sorted(p.name for p in (merged / "feedback").iterdir()) == pages and len(pages) == 11
    for name in pages:
        assert (merged / "feedback" / name).read_bytes() == (whole / "feedback" / name).read_bytes(), name
    assert "Merged 3 shard(s) of mini: 10 student(s)" in runs["merge"].stdout
    assert "Recognised a Canvas download" in runs["merge"].stdout
    assert f"\n,{ABSENT},,,,0\n" in (merged / "canvas_grades.csv").read_text(encoding="utf-8-sig")
    assert "Roster: 11 student(s); 1 with no submission (a row with 0)" in runs["merge"].stdout


def _gradebook(out):
    with Gradebook(f"sqlite:///{out / 'nbgrader' / 'gradebook.db'}", "fixture-course") as gb:
        return {s.student.id: (s.score, s.needs_manual_grade, s.late_submission_penalty)
                for s in gb.assignment_submissions(MINI)}


@pytest.mark.slow
def test_the_merged_class_course_is_the_one_formgrader_would_get(runs):
    whole, merged = runs["whole"], runs["merged"]
    assert _gradebook(merged) == _gradebook(whole) and len(_gradebook(merged)) == 7  # the notebooks that opened
    for kind in ("submitted", "autograded"):
        names = sorted(str(p.relative_to(whole / "nbgrader" / kind)) for p in (whole / "nbgrader" / kind).rglob("*.ipynb"))
        assert names == sorted(str(p.relative_to(merged / "nbgrader" / kind))
                               for p in (merged / "nbgrader" / kind).rglob("*.ipynb"))
    config = (merged / "nbgrader" / "nbgrader_config.py").read_text()
    assert "protect(c)" in config


@pytest.mark.slow
def test_a_grade_into_the_merged_out_reuses_every_result(runs, course, download):
    again = _grade(download, course, runs["merged"])
    assert again.returncode == 0, again.stderr
    assert "10 reused from an earlier run" in again.stdout
    assert (runs["merged"] / "grades.csv").read_bytes() == (runs["whole"] / "grades.csv").read_bytes()


@pytest.mark.slow
def test_merging_again_keeps_hand_grades(runs, course, tmp_path):
    out = tmp_path / "merged"
    shutil.copytree(runs["merged"], out)
    student = str(JOSE.canvas_id)
    with Gradebook(f"sqlite:///{out / 'nbgrader' / 'gradebook.db'}", "fixture-course") as gb:
        grade = gb.find_grade("written", MINI, MINI, student)
        grade.manual_score = 1
        gb.db.commit()
    done = run_cli("merge", *(runs["root"] / "shards" / str(i) for i in range(SHARDS)), "--out", out, "--course", course)
    assert done.returncode == 0, done.stderr
    with Gradebook(f"sqlite:///{out / 'nbgrader' / 'gradebook.db'}", "fixture-course") as gb:
        assert gb.find_grade("written", MINI, MINI, student).manual_score == 1


def _copy_shards(runs, tmp_path):
    for i in range(SHARDS):
        shutil.copytree(runs["root"] / "shards" / str(i), tmp_path / str(i))
    return [tmp_path / str(i) for i in range(SHARDS)]


@pytest.mark.slow
def test_a_missing_or_unfinished_shard_is_named_with_its_students(runs, course, tmp_path):
    shards = _copy_shards(runs, tmp_path)
    lacking = [row.split(",")[0] for row in _rows(shards[2] / "grades.csv")[1:]]
    done = run_cli("merge", shards[0], shards[1], "--out", tmp_path / "out", "--course", course)
    assert done.returncode == 1
    assert f"shard 2/{SHARDS} is missing; its students: {', '.join(sorted(lacking))}" in done.stderr
    assert not (tmp_path / "out" / "grades.csv").exists()
    manifest = Manifest.read(shards[1])
    replace(manifest, finished=False).write(shards[1])
    done = run_cli("merge", *shards, "--out", tmp_path / "out", "--course", course)
    assert done.returncode == 1 and f"shard 1/{SHARDS} ({shards[1]}) did not finish" in done.stderr
    done = run_cli("merge", *shards, "--out", tmp_path / "out", "--course", course, "--partial")
    assert done.returncode == 0, done.stderr
    rows = _rows(tmp_path / "out" / "grades.csv")[1:]
    assert len(rows) == 11 - len(_rows(shards[1] / "grades.csv")[1:])  # the roster's rows of shard 1 too


@pytest.mark.slow
def test_shards_of_different_splits_or_sources_do_not_merge(runs, course, tmp_path):
    shards = _copy_shards(runs, tmp_path)
    manifest = Manifest.read(shards[0])
    replace(manifest, shard="0/4").write(shards[0])
    done = run_cli("merge", *shards, "--out", tmp_path / "out", "--course", course)
    assert done.returncode == 1 and "same number of parts" in done.stderr
    replace(manifest, fingerprint="0" * 16).write(shards[0])
    done = run_cli("merge", *shards, "--out", tmp_path / "out", "--course", course)
    assert done.returncode == 1 and "graded another fingerprint" in done.stderr
    manifest.write(shards[0])
    done = run_cli("merge", shards[0], shards[0], "--out", tmp_path / "out", "--course", course)
    assert done.returncode == 1 and "given twice" in done.stderr
    (shards[1] / "shard.json").write_text("{")
    done = run_cli("merge", *shards, "--out", tmp_path / "out", "--course", course)
    assert done.returncode == 1 and "damaged" in done.stderr
    done = run_cli("merge", tmp_path / "nowhere", "--out", tmp_path / "out", "--course", course)
    assert done.returncode == 1 and "has no shard.json" in done.stderr
    assert json.loads((shards[2] / "shard.json").read_text())["finished"] is True
