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
