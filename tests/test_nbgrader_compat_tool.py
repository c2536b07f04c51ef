"""`make nbgrader-compat` (tools/nbgrader_compat.py): the global configuration it loads nbgrader's tests with, and
how it judges their run. (The run itself is CI's: `.ci/run` calls the target.)"""
import sys
from pathlib import Path

from traitlets.config import PyFileConfigLoader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import nbgrader_compat  # noqa: E402

from autograde.execute import JudgedExecute  # noqa: E402
from autograde.feedback import FeedbackExporter  # noqa: E402
from autograde.preprocessors import HideHiddenTests, RestoreCells  # noqa: E402


def test_the_global_configuration_has_the_plugins_and_none_of_the_course(tmp_path):
    path = nbgrader_compat.write_global_config(tmp_path)
    config = PyFileConfigLoader(path.name, str(tmp_path)).load_config()
    assert RestoreCells in config.Autograde.sanitize_preprocessors
    assert JudgedExecute in config.Autograde.autograde_preprocessors
    assert HideHiddenTests in config.GenerateFeedback.preprocessors
    assert config.GenerateFeedback.exporter_class is FeedbackExporter
    assert config.IsolatedKernelManager.isolation == "bwrap" and config.Execute.timeout == 60
    assert "CourseDirectory" not in config and "Exchange" not in config
    assert "require_judges" not in config.JudgedExecute


def test_outcomes_are_read_from_pytests_report(tmp_path):
    report = tmp_path / "report.xml"
    report.write_text(
        '<testsuites><testsuite>'
        '<testcase classname="nbgrader.tests.apps.test_nbgrader_autograde.TestNbGraderAutograde" name="test_grade"/>'
        '<testcase classname="m.TestA" name="test_b[True]"><failure message="boom"/></testcase>'
        '<testcase classname="m.TestA" name="test_c"><error message="setup"/></testcase>'
        '<testcase classname="m.TestA" name="test_d"><skipped message="no"/></testcase>'
        '</testsuite></testsuites>')
    assert nbgrader_compat.outcomes(report) == {
        "TestNbGraderAutograde::test_grade": "passed", "TestA::test_b[True]": "failed", "TestA::test_c": "failed",
        "TestA::test_d": "skipped"}


def test_only_excused_tests_may_fail_and_every_excuse_must_still_be_needed():
    excused = {"T::test_side_effects": "throw-away folder"}
    assert nbgrader_compat.verdict({"T::test_a": "passed", "T::test_side_effects": "failed"}, excused) == []
    assert nbgrader_compat.verdict({"T::test_a": "failed", "T::test_side_effects": "failed"}, excused) == [
        "FAILED without an excuse: T::test_a"]
    assert nbgrader_compat.verdict({"T::test_side_effects": "passed"}, excused) == [
        "excused but passed: T::test_side_effects (throw-away folder)"]
    assert nbgrader_compat.verdict({}, {}) == ["no test ran"]


def test_every_excuse_is_documented():
    docs = (Path(__file__).resolve().parent.parent / "docs" / "instructors.md").read_text()
    for test in nbgrader_compat.EXCUSED:
        assert f"`{test.split('::')[1]}`" in docs, test
