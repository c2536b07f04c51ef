"""A collection of answers to the graded assignment: wrong ones that must lose points, and correct ones in other
styles that must keep full marks.

Each `Case` replaces one or more answer cells of the released notebook (keyed by the cell's nbgrader grade_id,
which is also the graded name) and says which test cells must lose points. A correct variant has `loses` empty:
it must get every autograded point. tests/test_assignment_wrong_solutions.py grades them all through nbgrader.
"""
import textwrap
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    name: str
    why: str
    answers: dict
    loses: frozenset = field(default_factory=frozenset)  # grade ids of test cells that must lose points

    @property
    def correct(self):
        return not self.loses


def case(name, why, loses=(), **answers):
    answers = {grade_id: textwrap.dedent(source).strip("\n") + "\n" for grade_id, source in answers.items()}
    return Case(name, why, answers, frozenset(loses))


def _collect():
    from . import (build_network, conv_output_size, correct, make_shortcut, plain_block, plot_loss_curves,
                   residual_block, train)
    cases = []
    for module in (conv_output_size, make_shortcut, residual_block, plain_block, build_network, train,
                   plot_loss_curves, correct):
        cases.extend(module.CASES)
    names = [c.name for c in cases]
    duplicates = {n for n in names if names.count(n) > 1}
    assert not duplicates, f"duplicate case names: {sorted(duplicates)}"
    return cases


ALL = _collect()
WRONG = [c for c in ALL if not c.correct]
CORRECT = [c for c in ALL if c.correct]
