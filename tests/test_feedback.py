import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

from autograde.preprocessors import HideHiddenTests

HIDDEN_CELL = """assert add(1, 1) == 2, "add(1, 1) must be 2"
### BEGIN HIDDEN TESTS
assert add(-5, 2) == -3, "add must handle negative numbers"
### END HIDDEN TESTS"""


def grade_cell(source, outputs):
    cell = new_code_cell(source, outputs=outputs)
    cell.metadata.nbgrader = {"grade": True, "grade_id": "test_add", "points": 1, "solution": False,
                              "locked": True, "schema_version": 3}
    return cell


def test_hidden_code_and_traceback_lines_disappear_but_the_message_stays():
    error = new_output("error", ename="AssertionError", evalue="add must handle negative numbers",
                       traceback=["Traceback", "----> 3 assert add(-5, 2) == -3, ...", "AssertionError: add must"])
    nb = new_notebook(cells=[grade_cell(HIDDEN_CELL, [error])])
    nb, _ = HideHiddenTests().preprocess(nb, {})
    cell = nb.cells[0]
    assert "add(-5, 2)" not in cell.source and "add(1, 1)" in cell.source
    (output,) = cell.outputs
    assert output.traceback == ["AssertionError: add must handle negative numbers"]
    assert "add(-5, 2)" not in nbformat.writes(nb)


def test_cells_without_hidden_tests_keep_their_traceback():
    error = new_output("error", ename="NameError", evalue="name 'add' is not defined",
                       traceback=["Traceback", "----> 1 add(1, 1)", "NameError: ..."])
    nb = new_notebook(cells=[grade_cell("assert add(1, 1) == 2", [error])])
    nb, _ = HideHiddenTests().preprocess(nb, {})
    assert len(nb.cells[0].outputs[0].traceback) == 3
