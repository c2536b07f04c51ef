"""Feedback that never reveals hidden tests."""
from nbgrader.preprocessors import ClearHiddenTests


class HideHiddenTests(ClearHiddenTests):
    """Remove hidden-test code from test cells, and cut the tracebacks of those cells down to the error itself.

    nbgrader's ClearHiddenTests alone leaves the traceback, which quotes the hidden lines that failed.
    """

    def preprocess_cell(self, cell, resources, cell_index):
        had_hidden_tests = self.begin_test_delimeter in cell.source
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if had_hidden_tests:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources
