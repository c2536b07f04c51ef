"""Unit tests of the grading tool's parts that need no kernel: unzipping, discovery, reading and
restoring notebooks, feedback redaction, the plugins' composition, a job's reference run and clean-up."""
import copy
import csv
import json
import os
import stat
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from autograde import safezip
from autograde import status as st
from autograde.inputs import NotebookChooser, discover, open_submissions, read_submission, unwrap
from autograde.preprocessors import (NOT_THIS_ASSIGNMENT, REDACTED, HideHiddenTests, NotGradable, RestoreCells,
                                    check_assignment, is_untouched)
from autograde.results import Result, write_grades

from autograde_fixtures import bracket_bombs, cell_index, mini_source

BOMBS = bracket_bombs(mini_source())


# -- safe unzip ---------------------------------------------------------------------------------

def _zip(path: Path, entries):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries:  # name: a str or a zipfile.ZipInfo
            zf.writestr(name, data)
    return path


def test_zip_entries_cannot_escape_the_destination(tmp_path):
    archive = _zip(tmp_path / "class.zip", [
        ("../evil.ipynb", "1"), ("/abs/evil2.ipynb", "2"), ("a/../../evil3.ipynb", "3"),
        ("C:\\Windows\\evil4.ipynb", "4"), ("ok/..\\..\\evil5.ipynb", "5"), ("fine.ipynb", "6")])
    dest = tmp_path / "deep" / "dest"
    result = safezip.extract(archive, dest)
    written = sorted(str(p.relative_to(dest.resolve())) for p in result.files)
    assert written == sorted(["a/evil3.ipynb", "abs/evil2.ipynb", "evil.ipynb", "fine.ipynb", "ok/evil5.ipynb",
                              "Windows/evil4.ipynb"])
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and dest.resolve() not in p.resolve().parents
               and p != archive]
    assert outside == []


def test_zip_symlinks_become_nothing_and_junk_is_skipped(tmp_path):
    link = zipfile.ZipInfo("student/link.ipynb")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = _zip(tmp_path / "c.zip", [(link, "/etc/passwd"), ("__MACOSX/._a.ipynb", "x"),
                                        ("student/.ipynb_checkpoints/a-checkpoint.ipynb", "x"), ("student/a.ipynb", "{}")])
    result = safezip.extract(archive, tmp_path / "out")
    assert [p.name for p in result.files] == ["a.ipynb"]
    assert "student/link.ipynb" in result.skipped
    assert not any(p.is_symlink() for p in (tmp_path / "out").rglob("*"))


def test_zip_bombs_stop_at_the_size_limit(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.ipynb", b"0" * (5 << 20))
        zf.writestr("other.ipynb", b"1" * (5 << 20))
    result = safezip.extract(archive, tmp_path / "out", max_file_bytes=1 << 20, max_total_bytes=(3 << 19))
    big = tmp_path / "out" / "big.ipynb"
    assert big.stat().st_size == 1 << 20 and big.resolve() in result.truncated
    assert sum(p.stat().st_size for p in result.files) <= 3 << 19


def _corrupt(archive: Path, name: str) -> Path:
    """*archive* with the compressed data of its entry *name* scrambled (its headers intact)."""
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(name)
    data = bytearray(archive.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + 2, start + 40):
        data[i] ^= 0x5A
    archive.write_bytes(data)
    return archive


def test_zip_entries_that_cannot_be_decompressed_are_skipped(tmp_path):
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ann.ipynb", b'{"cells": []}' * 1000)
        zf.writestr("bob.ipynb", b'{"cells": []}' * 1000)
    result = safezip.extract(_corrupt(archive, "ann.ipynb"), tmp_path / "out")  # zlib.error: not an OSError
    assert "ann.ipynb" in result.skipped and (tmp_path / "out" / "bob.ipynb").read_bytes() == b'{"cells": []}' * 1000


def test_zip_names_from_other_systems_and_collisions(tmp_path):
    archive = tmp_path / "names.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("Jos\u00e9.ipynb")  # stored as UTF-8, flagged
        zf.writestr(info, "1")
        zf.writestr("Zo__.ipynb", "2")  # patched below into UTF-8 bytes without the UTF-8 flag (old Mac zips)
        zf.writestr("Jose\u0301.ipynb", "3")  # NFD spelling of the first name
        zf.writestr("x" * 300 + ".ipynb", "4")
    archive.write_bytes(archive.read_bytes().replace(b"Zo__.ipynb", "Zo\u00eb.ipynb".encode("utf-8")))
    result = safezip.extract(archive, tmp_path / "out")
    names = sorted(p.name for p in result.files)
    assert "Jos\u00e9.ipynb" in names and "Jos\u00e9 (2).ipynb" in names
    assert "Zo\u00eb.ipynb" in names
    assert all(len(n.encode()) <= 255 for n in names)


# -- discovery ----------------------------------------------------------------------------------

def _nb_file(path: Path, grade_ids=("a",)):
    path.parent.mkdir(parents=True, exist_ok=True)
    nb = new_notebook(cells=[new_code_cell("x", metadata={"nbgrader": {"grade_id": g}}) for g in grade_ids])
    nbformat.write(nb, path)
    return path


def test_discovery_layouts_and_student_ids(tmp_path):
    root = tmp_path / "export"
    _nb_file(root / "alice.ipynb")
    _nb_file(root / "bob" / "deep" / "anything.ipynb")
    (root / "carol.pdf").write_bytes(b"%PDF-1.4")
    (root / "dan").mkdir()
    (root / "dan" / "notes.txt").write_text("no notebook")
    _nb_file(root / "Zo\u00eb \u00c5ngstr\u00f6m, \"the\" <best>.ipynb")
    _nb_file(root / "erin" / "mini.ipynb", ("a",))
    _nb_file(root / "erin" / "scratch.ipynb", ())
    _nb_file(root / "erin" / ".ipynb_checkpoints" / "mini-checkpoint.ipynb")
    (root / ".DS_Store").write_bytes(b"junk")
    chooser = NotebookChooser("mini", "mini", ["a"])
    discovery = discover(root, chooser, tmp_path / "nested")
    found = {s.student_id: s for s in discovery.submissions}
    assert set(found) == {"alice", "bob", "carol", "dan", "Zo\u00eb \u00c5ngstr\u00f6m, \"the\" <best>", "erin"}
    assert discovery.lms == "plain" and all(s.lms == "plain" and s.name == "" for s in found.values())
    assert found["bob"].path.name == "anything.ipynb"
    assert found["carol"].path.name == "carol.pdf" and found["carol"].status is None
    assert found["dan"].status == st.NO_NOTEBOOK and found["dan"].path is None and "notes.txt" in found["dan"].detail
    assert found["erin"].path.name == "mini.ipynb" and "also found erin/scratch.ipynb" in found["erin"].notes[0]
    assert discovery.ignored == [".DS_Store (operating-system junk)"]


def test_grades_csv_keeps_formulas_in_file_names_inert(tmp_path):
    root = tmp_path / "export"
    for name in ("=HYPERLINK(\"x.example\";\"y\")", "+1", "@SUM(A1)", "-2", "alice", "a=b"):
        _nb_file(root / f"{name}.ipynb")
    found = discover(root, NotebookChooser("mini", "mini", ["a"]), tmp_path / "nested").submissions
    results = [Result(student_id=s.student_id, origin=s.origin, feedback="", score=1, max_score=3, cells={"a": 1},
                      notes=["=cmd|' /C calc'!A0"] if s.student_id == "alice" else []) for s in found]
    write_grades(tmp_path / "grades.csv", results, ["a"])
    with open(tmp_path / "grades.csv", newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    assert sorted(row["student_id"] for row in rows) == sorted(
        ["'=HYPERLINK(\"x.example\";\"y\")", "'+1", "'@SUM(A1)", "'-2", "alice", "a=b"])
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row.values())
    assert {row["student_id"]: row["notes"] for row in rows}["alice"] == "'=cmd|' /C calc'!A0"
    assert {row["score"] for row in rows} == {"1"}


def test_discovery_nbgrader_layout_and_wrappers(tmp_path):
    root = tmp_path / "download" / "course-export"
    _nb_file(root / "submitted" / "s1" / "mini" / "mini.ipynb")
    _nb_file(root / "submitted" / "s2" / "mini" / "mini.ipynb")
    assert unwrap(tmp_path / "download") == root / "submitted"
    found = discover(tmp_path / "download", NotebookChooser("mini", "mini"), tmp_path / "n").submissions
    assert [s.student_id for s in found] == ["s1", "s2"]
    assert found[0].origin == "s1/mini/mini.ipynb"


def test_discovery_one_row_per_student_and_nested_zips(tmp_path):
    root = tmp_path / "class"
    _nb_file(root / "alice.ipynb")
    _nb_file(root / "Alice" / "hw.ipynb")
    os.utime(root / "alice.ipynb", (1_000_000_000, 1_000_000_000))  # handed in long before hw.ipynb
    _zip(root / "bob.zip", [("work/mini.ipynb", nbformat.writes(new_notebook()))])
    found = {s.student_id: s for s in discover(root, NotebookChooser("mini", "mini"), tmp_path / "nested").submissions}
    assert set(found) == {"Alice", "bob"}  # one student, whatever the case of the name
    assert found["Alice"].origin == "Alice/hw.ipynb" and found["Alice"].attempts == ["alice.ipynb"]
    assert found["Alice"].notes[0] == "graded Alice/hw.ipynb; also found alice.ipynb"
    assert found["bob"].path.name == "mini.ipynb" and found["bob"].origin == "bob.zip/work/mini.ipynb"


def test_discovery_ranks_notebooks_nested_too_deeply_for_the_json_parser(tmp_path):
    """Choosing among a student's notebooks reads them in the grading run's own process: a RecursionError there
    would stop the whole class."""
    root = tmp_path / "class"
    for name, data in BOMBS.items():
        (root / "ann").mkdir(parents=True, exist_ok=True)
        (root / "ann" / f"{name}.ipynb").write_bytes(data)
        (root / f"bomb_{name}.ipynb").write_bytes(data)
    (root / "ann" / "homework.ipynb").write_text(nbformat.writes(mini_source()))
    chooser = NotebookChooser("mini", "mini", grade_ids=["double", "test_visible"])
    found = {s.student_id: s for s in discover(root, chooser, tmp_path / "nested").submissions}
    assert found["ann"].path.name == "homework.ipynb"  # the only one with this assignment's cells
    assert {found[f"bomb_{name}"].path.name for name in BOMBS} == {f"bomb_{name}.ipynb" for name in BOMBS}


def test_open_submissions_refuses_what_it_cannot_read(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_submissions(tmp_path / "missing", tmp_path / "w")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError):
        open_submissions(tmp_path / "notes.txt", tmp_path / "w")


# -- reading submissions ------------------------------------------------------------------------

@pytest.mark.parametrize("data, name, status", [
    (b"", "a.ipynb", st.EMPTY),
    (b"  \n\t ", "a.ipynb", st.EMPTY),
    (b"%PDF-1.4\n\xff\xfe binary", "a.pdf", st.NOT_NOTEBOOK),
    (b"print('hello')", "a.py", st.NOT_NOTEBOOK),
    (b'{"cells": [', "a.ipynb", st.INVALID),
    (b'{"hello": "world"}', "a.ipynb", st.INVALID),
    (b"\xff\xfe\x00binary", "a.ipynb", st.INVALID),
    (b"x" * 2048, "a.ipynb", st.TOO_LARGE),
])
def test_read_submission_classifies_files(data, name, status):
    with pytest.raises(NotGradable) as caught:
        read_submission(data, name, max_bytes=1024)
    assert caught.value.status == status


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_read_submission_rejects_json_nested_too_deeply(name):
    with pytest.raises(NotGradable) as caught:
        read_submission(BOMBS[name], "a.ipynb")
    assert caught.value.status == st.INVALID and "nested" in caught.value.detail


def test_read_submission_repairs_what_other_editors_write():
    raw = {"nbformat": 4, "nbformat_minor": 2, "metadata": {},
           "cells": [{"cell_type": "code", "source": ["x = 1\n", "y = 2"]}, {"cell_type": "weird", "source": "hi"}]}
    nb = read_submission(json.dumps(raw).encode(), "a.ipynb")
    assert nb.cells[0].source == "x = 1\ny = 2" and nb.cells[0].outputs == []
    assert nb.cells[1].cell_type == "markdown"
    v3 = nbformat.v3.new_notebook(worksheets=[nbformat.v3.new_worksheet(cells=[nbformat.v3.new_code_cell("1+1")])])
    assert read_submission(nbformat.writes(v3, version=3).encode(), "old.ipynb").cells[0].source == "1+1"


# -- restoring cells ----------------------------------------------------------------------------

def _release():
    """The mini assignment's release: like nbgrader's output, tests locked, answer stubbed."""
    nb = mini_source()
    for cell in nb.cells:
        md = cell.metadata.get("nbgrader", {})
        if md.get("solution"):
            cell.source = "# YOUR CODE HERE\nraise NotImplementedError()" if cell.cell_type == "code" else "YOUR ANSWER HERE"
        cell.source = cell.source.split("### BEGIN HIDDEN TESTS")[0].rstrip()
    return nb


def _restore(nb):
    nb, _ = RestoreCells(release=_release()).preprocess(nb, {})
    return nb, nb.metadata.get("autograde", {})


def _ids(nb):
    return [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]


def test_restore_puts_back_deleted_converted_and_unlocked_tests():
    nb = _release()
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_visible"]
    hidden = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_hidden")
    hidden.cell_type = "markdown"
    del hidden["outputs"], hidden["execution_count"]
    hidden.metadata.nbgrader.update(solution=True, locked=False, points=100)
    restored, info = _restore(nb)
    assert _ids(restored) == _ids(_release())
    cell = restored.cells[_ids(restored).index("test_hidden")]
    assert cell.cell_type == "code" and cell.metadata.nbgrader["points"] == 2 and not cell.metadata.nbgrader["solution"]
    assert info["statuses"] == [st.RESTORED]


def test_restore_keeps_the_answer_copy_the_student_worked_in():
    nb = _release()
    at = _ids(nb).index("written")
    answer = nbformat.from_dict(json.loads(json.dumps(nb.cells[at])))
    answer.source = "Because doubling distributes over addition."
    answer["id"] = nb.cells[at]["id"]  # pasted cells may even repeat the id
    nb.cells.insert(at, answer)  # the worked-in copy above, the untouched stub below
    restored, info = _restore(nb)
    kept = [c for c in restored.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "written"]
    assert len(kept) == 1 and kept[0].source.startswith("Because")
    assert len({c["id"] for c in restored.cells}) == len(restored.cells)
    assert info.get("statuses", []) == []


def test_restore_drops_foreign_ids_and_recognises_stripped_cells():
    nb = _release()
    nb.cells.append(new_code_cell("1", metadata={"nbgrader": {"grade_id": "from_another_assignment", "grade": True,
                                                              "points": 50}}))
    imports = nb.cells[_ids(nb).index("imports")]
    del imports.metadata["nbgrader"]
    restored, _ = _restore(nb)
    assert "from_another_assignment" not in _ids(restored)
    assert _ids(restored).count("imports") == 1


def _stripped_with_answers(*answers):
    """The release as an editor that drops cell metadata saves it, with the written answer in *answers* cells."""
    nb = _release()
    at = _ids(nb).index("written")
    nb.cells[at:at + 1] = [new_markdown_cell(text) for text in answers]
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    return nb


def test_restore_finds_a_written_answer_that_lost_its_metadata():
    restored, info = _restore(_stripped_with_answers("Because 2(a+b) = 2a+2b."))
    written = [c for c in restored.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "written"]
    assert [c.source for c in written] == ["Because 2(a+b) = 2a+2b."]  # graded by hand, not as "no response"
    assert "metadata recovered: written (found by its place)" in info["restored"]
    assert st.ANSWER_UNCLEAR not in info.get("statuses", [])


def test_restore_says_where_to_look_when_the_answer_is_unclear():
    restored, info = _restore(_stripped_with_answers("Because it is linear.", "2(a+b) = 2a + 2b, see above."))
    assert info["statuses"] == [st.ANSWER_UNCLEAR] and info["answers_lost"] == ["written"]
    assert any(note.startswith("written lost its nbgrader metadata and 2 cells") for note in info["notes"])
    sources = [c.source for c in restored.cells]
    assert "Because it is linear." in sources and "2(a+b) = 2a + 2b, see above." in sources  # both kept
    assert _ids(restored).count("written") == 1  # the release's cell, for the grader to score by hand


def test_another_assignments_notebook_is_graded_as_nbgrader_does_and_reported():
    other = new_notebook(cells=[new_markdown_cell("# Lesson 3"), new_code_cell("print(1)")])
    restored, info = _restore(copy.deepcopy(other))
    assert info["statuses"] == [st.WRONG_ASSIGNMENT, st.RESTORED] and NOT_THIS_ASSIGNMENT in info["notes"]
    assert [cell.source for cell in restored.cells[:2]] == ["# Lesson 3", "print(1)"]
    assert {"test_visible", "test_hidden"} <= set(_ids(restored))  # its tests run, and fail: 0, as in nbgrader
    with pytest.raises(NotGradable) as caught:  # the grading tool's own rule: a row that says so, nothing graded
        check_assignment(other, _release())
    assert caught.value.status == st.WRONG_ASSIGNMENT


def test_only_the_release_with_every_answer_as_it_was_is_untouched():
    release = _release()
    assert is_untouched(copy.deepcopy(release), release)
    stripped_stub = copy.deepcopy(release)
    stripped_stub.cells[cell_index(stripped_stub, "double")].source += "\n\n"  # an editor's trailing lines
    assert is_untouched(stripped_stub, release)
    answered = copy.deepcopy(release)
    answered.cells[cell_index(answered, "written")].source = "Because it distributes."
    assert not is_untouched(answered, release)
    assert not is_untouched(new_notebook(cells=[new_code_cell("x = 1")]), release)


def _reading_release():
    return new_notebook(cells=[new_markdown_cell("# Read me", metadata={"nbgrader": {
        "grade_id": "intro", "locked": True, "grade": False, "solution": False, "schema_version": 3}}),
        new_code_cell("x = 1")])


def _task_release():
    task = {"grade_id": "task_plot", "locked": True, "grade": False, "solution": False, "task": True, "points": 3,
            "schema_version": 3}
    return new_notebook(cells=[new_markdown_cell("Describe the plot you made.", metadata={"nbgrader": task})])


@pytest.mark.parametrize("release, submitted", [
    (_reading_release(), new_notebook(cells=[new_code_cell("print('my notes')")])),  # nothing graded to look for
    (_task_release(), _task_release()),  # a task is what the assignment grades
])
def test_notebooks_with_nothing_or_only_a_task_to_grade_are_this_assignments(release, submitted):
    nb, _ = RestoreCells(release=release).preprocess(submitted, {})
    assert st.WRONG_ASSIGNMENT not in nb.metadata.get("autograde", {}).get("statuses", [])
    check_assignment(submitted, release)  # does not raise


def test_restored_notebooks_get_the_same_ids_every_time():
    nb = _stripped_with_answers("Because it is linear.")
    nb.cells.append(copy.deepcopy(nb.cells[0]))  # a pasted copy: the same id twice
    nb.cells.append(new_code_cell("y = 2"))
    del nb.cells[-1]["id"]  # another editor's cell without an id
    first, _ = _restore(copy.deepcopy(nb))
    second, _ = _restore(copy.deepcopy(nb))
    ids = [cell["id"] for cell in first.cells]
    assert ids == [cell["id"] for cell in second.cells] and len(set(ids)) == len(ids)
    nbformat.validate(first)


# -- feedback -----------------------------------------------------------------------------------

def _test_cell(source, outputs=()):
    cell = new_code_cell(source, outputs=list(outputs))
    cell.metadata.nbgrader = {"grade": True, "grade_id": "t", "points": 1, "solution": False, "locked": True,
                              "schema_version": 3}
    return cell


def test_feedback_redacts_hidden_lines_wherever_they_appear():
    hidden = "assert secret_function(41) == 42, 'the answer'"
    test = _test_cell(f"visible = 1\n### BEGIN HIDDEN TESTS\n{hidden}\n### END HIDDEN TESTS",
                      [new_output("stream", name="stdout", text=f"  File \"x\", line 3\n    {hidden}\n")])
    spy = new_code_cell("print(In[3])", outputs=[
        new_output("stream", name="stdout", text=f"visible = 1\n{hidden}\nmy own line\n"),
        new_output("error", ename="AssertionError", evalue="x",
                   traceback=["Traceback", f"\x1b[0;32m----> 3\x1b[0m {hidden}", "AssertionError"])])
    nb, _ = HideHiddenTests().preprocess(new_notebook(cells=[test, spy]), {})
    text = nbformat.writes(nb)
    assert "secret_function" not in text
    assert REDACTED in nb.cells[1].outputs[0].text and "my own line" in nb.cells[1].outputs[0].text


def test_feedback_never_fails_on_delimiters_a_student_typed():
    student = new_code_cell("### BEGIN HIDDEN TESTS\nx = 1")  # not a test cell, unbalanced
    broken = _test_cell("a = 1\n### BEGIN HIDDEN TESTS\nb = 2\n### BEGIN HIDDEN TESTS\nc = 3")
    nb, _ = HideHiddenTests().preprocess(new_notebook(cells=[student, broken]), {})
    assert nb.cells[0].source.endswith("x = 1")
    assert nb.cells[1].source == "a = 1"


# -- what counts as having run ------------------------------------------------------------------

def test_a_forged_ran_marker_in_the_metadata_does_not_count(monkeypatch):
    from autograde.execute import JudgedExecute

    ran, forged = _test_cell("assert True"), _test_cell("assert False")
    forged.metadata.nbgrader["grade_id"] = "forged"
    forged.metadata.autograde = {"ran": "ok"}  # what a submission could carry to fake a run

    async def run_only_the_first(self, workdir):  # no kernel: pretend the first cell ran and the run stopped there
        self._ran[id(self.nb.cells[0])] = "ok"

    monkeypatch.setattr(JudgedExecute, "_async_run", run_only_the_first)
    nb, _ = JudgedExecute().preprocess(new_notebook(cells=[ran, forged]), {})
    assert nb.cells[0].outputs == []
    assert [o.ename for o in nb.cells[1].outputs] == ["NotRun"]


# -- the plugins in nbgrader's configuration ------------------------------------------------------

def test_the_course_config_composes_the_grading_plugins():
    from nbgrader.preprocessors import Execute, OverwriteCells

    from autograde.course import load_course_config, protect
    from autograde.execute import JudgedExecute
    from autograde.sandbox.kernel import IsolatedKernelManager

    config = load_course_config(Path(__file__).resolve().parent.parent)
    sanitize, autograde = config.Autograde.sanitize_preprocessors, config.Autograde.autograde_preprocessors
    assert sanitize.index(RestoreCells) < sanitize.index(OverwriteCells)
    assert JudgedExecute in autograde and Execute not in autograde
    assert HideHiddenTests in config.GenerateFeedback.preprocessors
    assert JudgedExecute().kernel_manager_class is IsolatedKernelManager
    protected = protect(load_course_config(Path(__file__).resolve().parent.parent))
    assert protected.Autograde.sanitize_preprocessors == sanitize  # nothing to add: the same plugins
    assert protected.Autograde.autograde_preprocessors == autograde
    assert protected.GenerateFeedback.preprocessors == config.GenerateFeedback.preprocessors
    assert protected.HTMLExporter.preprocessors == config.HTMLExporter.preprocessors


def test_protect_adds_the_plugins_a_bare_config_lacks():
    from nbgrader.preprocessors import Execute, GetGrades, OverwriteCells
    from traitlets.config import Config

    from autograde.course import protect
    from autograde.execute import JudgedExecute
    from autograde.feedback import AwaitingHandGrading, FeedbackExporter, NameGradedCells
    from autograde.sanitize import CleanHTML

    config = protect(Config())
    sanitize = config.Autograde.sanitize_preprocessors
    assert sanitize.index(RestoreCells) == sanitize.index(OverwriteCells) - 1
    assert config.Autograde.autograde_preprocessors[0] is JudgedExecute
    assert Execute not in config.Autograde.autograde_preprocessors
    feedback = config.GenerateFeedback.preprocessors
    assert feedback.index(CleanHTML) > feedback.index(HideHiddenTests)  # cleans what the redaction left
    # The page's summary: the total corrected right after GetGrades, names read once the hidden lines are gone.
    assert feedback[:4] == [GetGrades, AwaitingHandGrading, HideHiddenTests, NameGradedCells]
    assert config.GenerateFeedback.exporter_class is FeedbackExporter
    # Formgrader's exporter cleans; feedback's exporter does not clean first as well.
    assert config.HTMLExporter.preprocessors == [CleanHTML] and config.GenerateFeedback.HTMLExporter.preprocessors == []
    assert "grading" in config.CourseDirectory.ignore  # probes and judges are never released nor copied


def test_a_forged_grading_report_in_a_submission_is_discarded():
    nb = _release()
    nb.metadata["autograde"] = {"statuses": ["ok"], "notes": ["graded by hand: full marks"], "kernel": {"warm": True}}
    restored, _ = RestoreCells(release=_release()).preprocess(nb, {})
    assert restored.metadata.get("autograde", {}).get("notes", []) == []
    assert restored.metadata.get("autograde", {}).get("statuses", []) == []


def test_the_gradebook_revision_read_in_process_is_the_one_alembic_reports(tmp_path):
    import subprocess

    from nbgrader.dbutil import write_alembic_ini

    from autograde.course import alembic_head
    from autograde_fixtures import PYTHON

    write_alembic_ini(str(tmp_path / "alembic.ini"), f"sqlite:///{tmp_path / 'gradebook.db'}")
    heads = subprocess.run([str(PYTHON.parent / "alembic"), "-c", str(tmp_path / "alembic.ini"), "heads"],
                           capture_output=True, text=True, check=True).stdout
    assert heads.split()[0] == alembic_head() and len(alembic_head()) == 12


# -- a job's reference run and clean-up -----------------------------------------------------------------

def test_a_reference_run_that_dies_without_answering_stops_the_grading(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from traitlets.config import Config

    from autograde import AutogradeError, worker
    from autograde.execute import JudgedExecute

    # The reference runs in a forked child; one that dies (a segfault, the OOM killer) must not leave the run waiting.
    monkeypatch.setattr(JudgedExecute, "reference", lambda self, grading, notebook: os._exit(9))
    template = SimpleNamespace(course=SimpleNamespace(config=Config(), assignment="a", course_id="c"),
                               grading=lambda: object(), grading_dir=tmp_path, source_notebook=tmp_path / "a.ipynb")
    with pytest.raises(AutogradeError, match="the reference run ended early"):
        worker.prepare_reference(template, worker.Settings(run_root=str(tmp_path), work_dir=str(tmp_path)))


def _as_unprivileged(function) -> None:
    """*function()*, in a child without root's capabilities where this is root: a folder of mode 000 then stops it
    as it stops the grader's user, whose uid a kernel has under bubblewrap."""
    from autograde.sandbox import linux

    if os.geteuid() != 0:
        function()
        return
    child = os.fork()
    if child == 0:
        code = 1
        try:
            linux.drop_capabilities()
            function()
            code = 0
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0


def test_a_kept_job_holds_nothing_a_kernel_wrote_and_its_links_are_not_followed(tmp_path):
    from autograde import worker

    victim = tmp_path / "victim"  # what the kernel's links point to
    victim.mkdir(mode=0o750)
    (victim / "file").write_text("the grader's")
    jobdir = tmp_path / "run" / "job-1"
    (jobdir / "autograded").mkdir(parents=True)
    (jobdir / "grading.log").write_text("the grader's")
    for folder in ("work-1", "kernel-1", "home-1"):  # its working folder, its IPC folder, its home
        trap = jobdir / folder / "trap"
        (trap / "deeper").mkdir(parents=True)
        (trap / "deeper" / "file").write_text("the kernel's")
        (trap / "link").symlink_to(victim)
        (jobdir / folder / "link").symlink_to(victim / "file")
        for locked in (trap / "deeper", trap):
            locked.chmod(0)
    settings = worker.Settings(run_root=str(tmp_path / "run"), work_dir=str(tmp_path / "out"), keep_work=True)
    result = Result(student_id="s", origin="s.ipynb", feedback="", max_score=1)
    _as_unprivileged(lambda: worker._clean_up(jobdir, result, settings))
    kept = tmp_path / "out" / "jobs" / "job-1"
    assert sorted(path.name for path in kept.iterdir()) == ["autograded", "grading.log"] and not jobdir.exists()
    assert stat.S_IMODE(victim.stat().st_mode) == 0o750 and [path.name for path in victim.iterdir()] == ["file"]
    assert (victim / "file").read_text() == "the grader's"


def test_a_job_folder_that_cannot_be_kept_is_a_note_not_an_error(tmp_path):
    from autograde import worker

    jobdir = tmp_path / "run" / "job-2"
    jobdir.mkdir(parents=True)
    (tmp_path / "out").write_text("a file where --out/.autograde should be")
    settings = worker.Settings(run_root=str(tmp_path / "run"), work_dir=str(tmp_path / "out"), keep_work=True)
    result = Result(student_id="s", origin="s.ipynb", feedback="", max_score=1)
    worker._clean_up(jobdir, result, settings)
    assert len(result.notes) == 1 and result.notes[0].startswith("the job's folder was not kept in jobs/")
