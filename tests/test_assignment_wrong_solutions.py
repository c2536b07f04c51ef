"""The collection of wrong and correct answers (tests/wrong_solutions/), graded by the assignment's judges.

Through the real pipeline: every case becomes a submission built from the released notebook, all of them are graded
by `nbgrader autograde` (two courses side by side, one autograde run each), and the scores are read back from the
gradebooks. Each wrong answer must lose points in the cells its case names, and keep them in the parts it cannot
affect; each correct variant must get every autograded point. The judges grade each part on its own (the probes of
a later part lend it stand-ins for the earlier parts), so wrong answers to different parts share a submission, as
long as none can change the cells another must fail: fewer kernel starts, same verdicts.

The same cases also run in-process first: quick, and with the failure messages in the report.
"""
import os
import shutil
import tempfile
from pathlib import Path

import pytest

import assignment_helpers as ah
from wrong_solutions import ALL, CORRECT, WRONG

ALL_TEST_CELLS = set(ah.graded_test_cells(ah.read_notebook(ah.SOURCE_NB)))
AUTOGRADED_POINTS = sum(points for _, points, _ in ah.graded_test_cells(ah.read_notebook(ah.SOURCE_NB)).values())


def parts_of(case):
    return set(case.answers)


def compatible(a, b):
    """Two wrong answers to different parts can share a submission when neither can change the cells the other
    must fail (a wrong make_shortcut also fails ResidualBlock's visible test, but not its hidden ones)."""
    return (not parts_of(a) & parts_of(b) and not a.loses & ah.affected_cells(parts_of(b))
            and not b.loses & ah.affected_cells(parts_of(a)))


def pack(cases):
    """Submissions (lists of cases): each correct variant alone, wrong answers to independent parts together."""
    bins = [[c] for c in cases if c.correct]
    wrong = sorted((c for c in cases if not c.correct),
                   key=lambda c: -sum(1 for d in cases if not d.correct and parts_of(d) == parts_of(c)))
    wrong_bins = []
    for case in wrong:
        for members in wrong_bins:
            if all(compatible(case, other) for other in members):
                members.append(case)
                break
        else:
            wrong_bins.append([case])
    return bins + wrong_bins


def must_keep(cases):
    """The test cells that no answer in this submission can affect."""
    touched = set().union(*(parts_of(c) for c in cases))
    return ALL_TEST_CELLS - ah.affected_cells(touched)


def test_the_collection_is_well_formed():
    assert len(WRONG) >= 60 and len(CORRECT) >= 5
    assert ALL_TEST_CELLS == ah.cells_of(set(ah.GRADED))
    for case in ALL:
        assert set(case.answers) <= set(ah.GRADED), case.name
        assert case.loses <= ALL_TEST_CELLS, f"{case.name}: unknown cells {case.loses - ALL_TEST_CELLS}"
        if not case.correct:
            assert len(case.answers) == 1, f"{case.name}: a wrong answer changes one part"
            assert case.loses <= ah.affected_cells(parts_of(case)), case.name
            assert case.loses & ah.cells_of(parts_of(case), hidden=True), f"{case.name}: the hidden tests catch it"
    for members in pack(ALL):
        names = [c.name for c in members]
        assert all(compatible(a, b) for a in members for b in members if a is not b), names
    # Every kind of mistake the issue lists has a case.
    names = {c.name for c in WRONG}
    for needed in ("rb_no_shortcut", "rb_identity_shortcut_always", "ms_projection_without_stride",
                   "ms_projection_without_batchnorm", "ms_projection_3x3", "ms_always_projection", "rb_multiplies",
                   "rb_no_final_relu", "rb_relu_before_add", "rb_detached_shortcut", "rb_stride_on_second_conv",
                   "rb_padding_zero", "rb_modifies_input", "rb_tensor_on_fixed_device", "rb_missing_second_bn",
                   "cos_no_plus_one", "bn_one_block_per_stage", "bn_no_downsampling", "pb_secret_skip"):
        assert needed in names


# ------------------------------------------------------------------------------------------------- in process

@pytest.mark.slow  # each runs the whole notebook, training included: two minutes for all of them
@pytest.mark.parametrize("case", ALL, ids=lambda c: c.name)
def test_case_in_process(case):
    result = ah.grade_in_process(case.answers)
    lost = set(result.failures)
    if case.correct:
        assert not lost, f"{case.name} ({case.why}) is correct but fails: {result.failures}"
        return
    missing = case.loses - lost
    assert not missing, f"{case.name} ({case.why}) should fail {sorted(missing)}; failures: {result.failures}"
    wrongly = lost & must_keep([case])
    assert not wrongly, f"{case.name} ({case.why}) breaks unrelated cells: { {g: result.failures[g] for g in wrongly} }"
    for grade_id, message in result.failures.items():
        if "visible" not in grade_id:
            assert message.startswith("AssertionError: ") and len(message) > 60, (
                f"{case.name}: the hidden test {grade_id} fails without a teaching message: {message}")


# -------------------------------------------------------------------------------------- the nbgrader pipeline

@pytest.fixture(scope="module")
def pipeline():
    submissions, members = {}, {}
    for index, cases in enumerate(pack(ALL)):
        student = f"s{index:02d}-" + "--".join(c.name.replace("_", "-") for c in cases)
        answers = ah.reference_answers()  # the parts a case leaves alone are answered correctly
        for case in cases:
            answers.update(case.answers)
        submissions[student] = ah.submission(answers)
        members[student] = cases
    workdir = Path(tempfile.mkdtemp(prefix="residual-blocks-collection-"))
    processes = max(1, min(2, os.cpu_count() or 1))
    result = ah.grade_with_nbgrader(submissions, workdir, processes=processes)
    print(f"\ngraded {len(ALL)} cases in {len(submissions)} submissions with {processes} nbgrader processes: "
          f"{result.wall_seconds:.0f} s wall clock, {result.cpu_seconds:.0f} s CPU")
    yield result, members
    shutil.rmtree(workdir, ignore_errors=True)


def submission_of(members, case):
    return next(student for student, cases in members.items() if case in cases)


@pytest.mark.slow
@pytest.mark.parametrize("case", WRONG, ids=lambda c: c.name)
def test_wrong_answer_loses_points_through_nbgrader(pipeline, case):
    result, members = pipeline
    student = submission_of(members, case)
    grades = result.scores[student]
    lost = ah.lost_points(grades)
    missing = case.loses - lost
    assert not missing, f"{case.name} ({case.why}) keeps its points in {sorted(missing)}"
    score, maximum = ah.autograded_score(grades)
    assert score < maximum
    wrongly = lost & must_keep(members[student])
    assert not wrongly, f"{student} loses points in cells none of its answers can affect: {sorted(wrongly)}"


@pytest.mark.slow
@pytest.mark.parametrize("case", CORRECT, ids=lambda c: c.name)
def test_correct_variant_gets_full_marks_through_nbgrader(pipeline, case):
    result, members = pipeline
    grades = result.scores[submission_of(members, case)]
    score, maximum = ah.autograded_score(grades)
    assert maximum == AUTOGRADED_POINTS == 25
    assert score == maximum, f"{case.name} ({case.why}) loses points in {sorted(ah.lost_points(grades))}"


@pytest.mark.slow
def test_every_failed_test_teaches(pipeline):
    result, members = pipeline
    for student in members:
        nb = result.autograded(student)
        for cell in nb.cells:
            meta = ah.nbgrader_meta(cell)
            if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution") or \
                    cell.source.startswith("# Visible tests"):
                continue
            for output in cell.outputs:
                assert output.output_type != "stream" or output.name != "stderr", (
                    f"{student}: {meta['grade_id']} wrote to stderr: {output.text[:300]}")
                if output.output_type == "error":
                    assert output.ename == "AssertionError" and len(output.evalue) > 60, (
                        f"{student}: {meta['grade_id']} failed without a teaching message: "
                        f"{output.ename}: {output.evalue}")


@pytest.mark.slow
def test_feedback_shows_the_message_but_not_the_hidden_tests(pipeline):
    result, members = pipeline
    case = next(c for c in WRONG if c.name == "rb_no_shortcut")
    student = submission_of(members, case)
    course = result.courses[student]
    ah.nbgrader(["generate_feedback", ah.ASSIGNMENT, "--force", "--student", student], cwd=course)
    html = (course / "feedback" / student / ah.ASSIGNMENT / f"{ah.NOTEBOOK}.html").read_text()
    assert "the shortcut is not added to the branch" in html
    judges = (ah.SOURCE_DIR / "grading" / "judges.py").read_text(encoding="utf-8")
    for secret in [line.strip() for line in judges.splitlines() if len(line.strip()) > 30]:
        assert secret not in html, f"the feedback reveals {secret!r}"
