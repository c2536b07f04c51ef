"""The tamper guard's checks in a real kernel (without isolation: the sandbox has tests of its own).

The checks ride on the cell before them as ``user_expressions``; a kernel skips those after a cell that raised,
and then the grader runs them in a cell of their own. Either way, every test cell must be judged as written."""
import sys

import pytest
from nbformat.v4 import new_code_cell, new_notebook
from traitlets.config import Config

from autograde.execute import GuardedExecute
from autograde.sandbox.kernel import GradingKernelClient

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the supervisor uses Linux features")


def _cell(source, grade_id=None, grade=False, solution=False):
    cell = new_code_cell(source)
    cell.metadata.nbgrader = {"grade": grade, "grade_id": grade_id or f"cell-{abs(hash(source))}", "locked":
                              not solution, "solution": solution, "schema_version": 3}
    if grade:
        cell.metadata.nbgrader["points"] = 1
    return cell


def _run(cells, monkeypatch):
    """Grade *cells*; returns the notebook and the code of every cell the kernel was sent."""
    sent = []
    execute = GradingKernelClient.execute

    def spy(self, code, *args, **kwargs):
        sent.append(code)
        return execute(self, code, *args, **kwargs)

    monkeypatch.setattr(GradingKernelClient, "execute", spy)
    config = Config()
    config.IsolatedKernelManager.isolation = "none"
    config.GuardedExecute.timeout = 60
    grader = GuardedExecute(config=config)
    nb, _ = grader.preprocess(new_notebook(cells=cells), {})
    return nb, sent, grader.report


def _errors(cell):
    return [o.ename for o in cell.outputs if o.output_type == "error"]


def test_checks_ride_on_cells_and_run_alone_after_an_error(monkeypatch):
    cells = [_cell("import math", "setup"),
             _cell("def answer():\n    return 2", "answer", solution=True),
             _cell("assert answer() == 2", "passes", grade=True),
             _cell("assert answer() == 3, 'wrong'", "fails", grade=True),
             _cell("assert math.floor(2.5) == answer()", "passes after a failure", grade=True)]
    nb, sent, report = _run(cells, monkeypatch)
    assert [_errors(cell) for cell in nb.cells] == [[], [], [], ["AssertionError"], []]
    assert not report["tampering"] and not report["statuses"]
    # The grader's first cell and the notebook's five, plus one cell of checks: those after the failed test.
    assert len(sent) == 7 and sent.count("pass") == 1


def test_a_patch_made_between_tests_is_undone_before_the_next_one(monkeypatch):
    cells = [_cell("import math", "setup"),
             _cell("math.floor = lambda x: 0\ndef answer():\n    return 2", "answer", solution=True),
             _cell("assert math.floor(2.5) == answer()", "test", grade=True)]
    nb, sent, report = _run(cells, monkeypatch)
    assert _errors(nb.cells[2]) == []  # the test ran with the genuine math.floor
    assert any("math.floor" in note for note in report["tampering"])
    assert "pass" not in sent


def test_a_patch_made_during_a_test_fails_it(monkeypatch):
    cells = [_cell("import math", "setup"),
             _cell("def answer():\n    math.floor = lambda x: 2\n    return 2", "answer", solution=True),
             _cell("assert math.floor(2.5) == answer()", "test", grade=True)]
    nb, _, report = _run(cells, monkeypatch)
    assert _errors(nb.cells[2]) == ["IntegrityError"]
    assert any("changed while the test ran: math.floor" in note for note in report["tampering"])


def test_a_forged_text_form_of_the_verdicts_is_undone(monkeypatch):
    # The verdicts travel as the text/plain form of a str: a printer for str that turns every FAIL into OK.
    forge = ("_printers = get_ipython().display_formatter.formatters['text/plain']\n"
             "_printers.for_type(str, lambda s, p, cycle: p.text(repr(s.split(' FAIL ')[0] + ' OK' "
             "if ' FAIL ' in s else s)))\n")
    cells = [_cell("import math", "setup"),
             _cell(forge + "def answer():\n    math.floor = lambda x: 2\n    return 2", "answer", solution=True),
             _cell("assert math.floor(2.5) == answer()", "test", grade=True)]
    nb, _, report = _run(cells, monkeypatch)
    assert _errors(nb.cells[2]) == ["IntegrityError"]
    assert any("IPython's text form of str" in note for note in report["tampering"])


def test_a_first_test_before_any_setup_cell_is_judged_like_the_others(monkeypatch):
    # IPython's builtins and sys.excepthook differ between cells; a check must not take that for tampering.
    cells = [_cell("def answer():\n    return 2", "answer", solution=True),
             _cell("assert answer() == 2", "test", grade=True)]
    nb, _, report = _run(cells, monkeypatch)
    assert _errors(nb.cells[1]) == [] and not report["tampering"] and not report["statuses"]


def test_a_test_cell_the_kernel_never_ran_scores_nothing(monkeypatch):
    test = _cell("assert answer() == 3", "test", grade=True)
    test.metadata["tags"] = ["skip-execution"]  # nbclient skips cells with this tag
    nb, _, _ = _run([_cell("def answer():\n    return 2", "answer", solution=True), test], monkeypatch)
    assert _errors(nb.cells[1]) == ["NotRun"]


def test_grader_metadata_in_a_submission_counts_for_nothing(monkeypatch):
    # A cell that claims to hold the grader's checks, and returns a passing verdict for the test before it.
    forged = _cell("pass", "forged", solution=True)
    verdict = ("(lambda sys: sys.modules[[m for m in sys.modules if m.startswith('_autograde_guard_')][0]]"
               "._guard.prefix)(__import__('sys')) + '-AFTER t OK'")
    forged.metadata["autograde_guard"] = {"role": "checks", "calls": [
        {"key": "forged", "role": "after", "target": 2, "token": "t", "expr": verdict}]}
    cells = [_cell("import math", "setup"),
             _cell("def answer():\n    math.floor = lambda x: 2\n    return 2", "answer", solution=True),
             _cell("assert math.floor(2.5) == answer()", "test", grade=True), forged]
    nb, _, _ = _run(cells, monkeypatch)
    assert _errors(nb.cells[2]) == ["IntegrityError"]


def test_a_patched_session_codec_is_undone_before_a_test(monkeypatch):
    cells = [_cell("import math", "setup"),
             _cell("_session = get_ipython().kernel.session\n_real = _session.pack\n"
                   "_session.pack = lambda obj: _real(obj)\ndef answer():\n    return 2", "answer", solution=True),
             _cell("assert answer() == 3", "test", grade=True)]
    nb, _, report = _run(cells, monkeypatch)
    assert _errors(nb.cells[2]) == ["AssertionError"]
    assert any("Session.pack" in note for note in report["tampering"])
