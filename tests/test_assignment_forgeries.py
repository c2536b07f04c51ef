"""Live forgeries against the assignment's judges: an empty submission whose kernel sends observations built from
the probes' public helpers (tests/autograde_forgers.py), without computing any part. The judges in this process.
(The same forgery through a real kernel and the grading tool: tests/test_autograde_release.py.)"""
import assignment_helpers as ah
from autograde_forgers import FORGERS

# Where the answer's own work is to put its input back out, sending it is doing that work.
TRANSCRIPTIONS = {"test_make_shortcut_identity", "test_plot_loss_curves_visible", "test_plot_loss_curves_lines",
                  "test_plot_loss_curves_axes"}


def test_live_forgeries_earn_nothing_but_transcriptions():
    verdicts = ah.judge_forged(FORGERS)
    assert set(FORGERS) <= set(verdicts)
    passed = {grade_id for grade_id, verdict in verdicts.items() if verdict.passed}
    assert passed <= TRANSCRIPTIONS, {g: verdicts[g].message for g in passed - TRANSCRIPTIONS}


def test_the_forgers_answer_every_probe_in_its_format():
    """So that the test above proves the judges strict, not the forgeries malformed: the transcriptions pass."""
    verdicts = ah.judge_forged(FORGERS)
    assert all(verdicts[grade_id].passed for grade_id in TRANSCRIPTIONS)
    assert not any(verdict.tampered for verdict in verdicts.values())
