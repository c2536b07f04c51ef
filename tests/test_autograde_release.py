"""End-to-end tests of `python -m autograde grade` on the course's real assignment, from its release.

Submissions are built the way students make them: the release notebook with answer cells filled in
(from the source's solutions, matched by nbgrader grade_id), then broken, cheated or copy-pasted.
"""
import copy
import html
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

import assignment_helpers as ah
from assignment_helpers import ASSIGNMENT, RELEASE_NB, SOURCE_DIR, SOURCE_NB, graded_test_cells
from autograde_cheats import (FORGERIES, NOTEBOOK_CHEATS, with_cheat, with_forgery, with_live_forgery,
                              with_replayed_inputs)
from autograde_fixtures import EARLIER_SEED, answers_from_source, cell_index, fill, mini_source, read_csv, run_cli

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox uses Linux features"),
    pytest.mark.skipif(not (SOURCE_NB.exists() and RELEASE_NB.exists()), reason="the assignment is not released yet"),
    pytest.mark.slow,  # whole classes graded through the CLI
]

HONEST = ["correct", "wrong", "unanswered"]
CHEATS = ["patch_comparisons", "input_transformer_try_except", "session_send_hides_errors",
          "patch_catch_warnings", "shadow_torch_name", "run_cell_swallows_errors", "trace_skips_asserts"]


@pytest.fixture(scope="module")
def assignment():
    source = nbformat.read(SOURCE_NB, as_version=4)
    release = nbformat.read(RELEASE_NB, as_version=4)
    answers = answers_from_source(source)
    test_cells = graded_test_cells(source)  # grade_id -> (part, points, hidden), in notebook order
    tests = list(test_cells)
    points = {grade_id: value for grade_id, (_, value, _) in test_cells.items()}
    judges = (SOURCE_DIR / "grading" / "judges.py").read_text(encoding="utf-8")
    # The judges' own lines; a line the notebook holds too (an answer's formula, an import) is no secret.
    shown = {line.strip() for cell in source.cells for line in cell.source.splitlines()}
    secret = {line.strip() for line in judges.splitlines() if len(line.strip()) >= 25} - shown
    return {"source": source, "release": release, "answers": answers, "tests": tests, "points": points,
            "judges": secret}


def _forgeries(wrong_answers):
    """The forgeries, carrying what the probes saw of the reference answers in an earlier run (another seed), and a
    conv_output_size that looks up the right sizes of that run's inputs."""
    captured = ah._reference(EARLIER_SEED)
    probes = ah.grading().probes
    cases = probes.visible_size_cases(EARLIER_SEED) + sum(probes.hidden_size_cases(EARLIER_SEED), [])
    table = {}
    for args in cases:
        right = ah.conv_size(*args)
        table[repr(list(args))] = right  # conv_output_size(32, 3, 2, 1)
        names = dict(zip(("size", "kernel_size", "stride", "padding"), args))
        table[repr(sorted(names.items()))] = right  # conv_output_size(size=32, kernel_size=3, ...)
    subs = {f"forged_{name}": {"conv_output_size": with_forgery(wrong_answers["conv_output_size"], name, captured)}
            for name in FORGERIES}
    subs["forged_answers_from_captured_inputs"] = {
        "conv_output_size": with_replayed_inputs(WRONG_SIZE, "conv_output_size", table)}
    return subs


WRONG_SIZE = "def conv_output_size(size, kernel_size, stride=1, padding=0):\n    return (size + 2 * padding - kernel_size) // stride\n"


def _no_shortcut(answers):
    wrong = dict(answers)
    block = wrong["ResidualBlock"]
    assert "out + self.shortcut(x)" in block, "the reference ResidualBlock changed: update this test"
    wrong["ResidualBlock"] = block.replace("out + self.shortcut(x)", "out")
    return wrong


def _with_duplicates(nb, answers):
    nb = copy.deepcopy(nb)
    at = cell_index(nb, "ResidualBlock")
    first_try = copy.deepcopy(nb.cells[at])
    first_try.source = "class ResidualBlock:\n    pass  # first try\n"
    nb.cells.insert(at, first_try)  # pasted copy holding an earlier attempt, final answer below
    at = cell_index(nb, "written_answer")
    answer = copy.deepcopy(nb.cells[at])
    answer.source = answers["written_answer"]
    nb.cells.insert(at, answer)  # written answer in the pasted copy, the stub left below
    nb.metadata.kernelspec = {"name": "conda-env-resnet-py", "display_name": "Python (resnet)", "language": "python"}
    return nb


@pytest.fixture(scope="module")
def graded(assignment, tmp_path_factory):
    release, answers, tests = assignment["release"], assignment["answers"], assignment["tests"]
    correct_answers = {k: v for k, v in answers.items() if k != "written_answer"}
    correct = fill(release, correct_answers)
    wrong_answers = _no_shortcut(correct_answers)
    wrong = fill(release, wrong_answers)
    block_tests = [t for t in tests if "residual_block" in t]
    folder = tmp_path_factory.mktemp("class")
    subs = {
        "correct": correct,
        "correct_copy_pasted": _with_duplicates(fill(release, correct_answers), answers),
        "wrong": wrong,
        "unanswered": release,
        "deleted_tests_correct": NOTEBOOK_CHEATS["delete_tests"](correct, tests),
        "deleted_tests_wrong": NOTEBOOK_CHEATS["delete_tests"](wrong, block_tests),
        "emptied_tests_wrong": NOTEBOOK_CHEATS["empty_tests"](wrong, tests),
        "unlocked_tests_wrong": NOTEBOOK_CHEATS["unlock_tests"](wrong, tests),
        "tests_to_raw_wrong": NOTEBOOK_CHEATS["tests_to_raw"](wrong, tests),
        "other_assignment": mini_source(),
        "exits_early": fill(release, {**correct_answers, "build_network": "exit()\n"}),
        "loops_forever": fill(release, {**correct_answers, "build_network": (
            "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass\n")}),
    }
    for cheat in CHEATS:
        subs[f"cheat_{cheat}"] = fill(release, {**wrong_answers,
                                                "conv_output_size": with_cheat(wrong_answers["conv_output_size"], cheat)})
    for name, changed in _forgeries(wrong_answers).items():
        subs[name] = fill(release, {**wrong_answers, **changed})
    forgers = (Path(__file__).parent / "autograde_forgers.py").read_text(encoding="utf-8")
    stub = ah.answer_cells(ah.read_notebook(RELEASE_NB))["conv_output_size"].source
    subs["forged_live_on_empty"] = fill(release, {"conv_output_size": with_live_forgery(stub, forgers)})
    for name, nb in subs.items():
        (folder / f"{name}.ipynb").write_text(json.dumps(nb, indent=1), encoding="utf-8")
    (folder / "broken.ipynb").write_text(nbformat.writes(correct)[:1000], encoding="utf-8")
    out = tmp_path_factory.mktemp("out")
    done = run_cli("grade", folder, "--assignment", ASSIGNMENT, "--out", out, "--jobs", "2", "--timeout", "30",
                   "--no-progress", timeout=1200)
    rows = read_csv(out / "grades.csv") if (out / "grades.csv").exists() else {}
    own = {name: "\n".join(cell.source for cell in nb.cells) for name, nb in subs.items()}
    return {"done": done, "rows": rows, "out": out, "names": set(subs) | {"broken"}, "answers": wrong_answers,
            "own_text": own}


def _autograded(row, tests):
    return {t: float(row[t] or 0) for t in tests}


def test_every_submission_is_graded(graded):
    assert graded["done"].returncode == 0, graded["done"].stderr[-3000:]
    assert set(graded["rows"]) == graded["names"]


def test_the_reference_solution_gets_every_autograded_point(graded, assignment):
    for name in ("correct", "correct_copy_pasted", "deleted_tests_correct"):
        row = graded["rows"][name]
        assert _autograded(row, assignment["tests"]) == {t: assignment["points"][t] for t in assignment["tests"]}, (
            name, row["notes"])
    assert graded["rows"]["correct"]["status"] == "ok"
    assert graded["rows"]["correct_copy_pasted"]["status"] == "ok"
    assert graded["rows"]["deleted_tests_correct"]["status"] == "cells restored"
    # The written answer waits for a human grader (the copy-pasted one was found in its pasted cell).
    assert graded["rows"]["correct_copy_pasted"]["written_answer"] == ""
    assert graded["rows"]["correct_copy_pasted"]["needs_manual_grade"] == "1"


def test_a_wrong_block_loses_the_block_tests(graded, assignment):
    wrong = _autograded(graded["rows"]["wrong"], assignment["tests"])
    correct = _autograded(graded["rows"]["correct"], assignment["tests"])
    lost = {t for t in assignment["tests"] if wrong[t] < correct[t]}
    assert lost and all("residual_block" in t or "network" in t for t in lost), lost
    assert (graded["rows"]["unanswered"]["score"], graded["rows"]["unanswered"]["status"]) == ("0", "not attempted")


@pytest.mark.parametrize("name", [*(f"cheat_{c}" for c in CHEATS), *(f"forged_{f}" for f in FORGERIES),
                                  "forged_answers_from_captured_inputs", "deleted_tests_wrong", "emptied_tests_wrong",
                                  "unlocked_tests_wrong", "tests_to_raw_wrong"])
def test_cheats_do_not_earn_points(graded, assignment, name):
    """A cheat or a forgery added to the wrong solution must not win back anything the wrong solution lost."""
    wrong = _autograded(graded["rows"]["wrong"], assignment["tests"])
    cheated = _autograded(graded["rows"][name], assignment["tests"])
    assert all(cheated[t] <= wrong[t] for t in assignment["tests"]), {
        t: (wrong[t], cheated[t]) for t in assignment["tests"] if cheated[t] > wrong[t]}
    if not name.startswith(("cheat_", "forged_")):
        assert graded["rows"][name]["status"] == "cells restored", graded["rows"][name]["notes"]


def test_a_kernel_that_answers_the_probes_itself_earns_only_transcriptions(graded, assignment):
    from test_assignment_forgeries import TRANSCRIPTIONS

    got = _autograded(graded["rows"]["forged_live_on_empty"], assignment["tests"])
    assert {t for t, points in got.items() if points} == TRANSCRIPTIONS, graded["rows"]["forged_live_on_empty"]


def test_the_forgeries_are_real_attacks(assignment):
    """With the seed of the run they captured, the forgeries' observations pass every judge: only the grader's new
    seed makes them worthless."""
    captured = ah._reference(EARLIER_SEED)
    grading = ah.grading()
    for test, observed in captured.items():
        assert grading.judge(test, observed, observed, EARLIER_SEED).passed, test


def test_broken_and_stopped_notebooks(graded, assignment):
    rows = graded["rows"]
    assert (rows["broken"]["status"], rows["broken"]["score"]) == ("invalid notebook", "0")
    assert (rows["other_assignment"]["status"], rows["other_assignment"]["score"]) == ("wrong assignment", "0")
    assert rows["exits_early"]["status"] == "kernel died"
    assert rows["loops_forever"]["status"] == "timed out"
    for name in ("exits_early", "loops_forever"):
        got = _autograded(rows[name], assignment["tests"])
        # What ran before the answer that stopped the kernel still counts; the network's tests do not.
        assert got["test_conv_output_size_visible"] == assignment["points"]["test_conv_output_size_visible"]
        assert all(got[t] == 0 for t in assignment["tests"] if "build_network" in t)


def test_feedback_never_shows_the_judges(graded, assignment):
    pages = list((graded["out"] / "feedback").glob("*.html"))
    assert {p.stem for p in pages} == graded["names"]
    for page in pages:
        text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))
        mine = graded["own_text"].get(page.stem, "")  # a student's own code shows in their feedback
        leaked = [line for line in assignment["judges"] if line in text and line not in mine]
        assert not leaked, (page.name, leaked[:3])
    correct = (graded["out"] / "feedback" / "correct.html").read_text(encoding="utf-8")
    assert "ResidualBlock: the whole formula holds, in training and eval mode" in correct


def test_the_kernels_judge_as_the_in_process_grading_does(graded, assignment):
    """The probes in isolated kernels, and the same probes run in this process, get the same verdicts."""
    stubs = {gid: cell.source for gid, cell in ah.answer_cells(ah.read_notebook(RELEASE_NB)).items()}
    for name, answers in (("correct", ah.reference_answers()), ("wrong", graded["answers"]), ("unanswered", stubs)):
        expected = ah.grade_in_process(answers, seed=12345)
        got = _autograded(graded["rows"][name], assignment["tests"])
        assert {t for t in assignment["tests"] if got[t] == 0} == set(expected.failures), name
