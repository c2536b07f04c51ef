"""`make nbgrader-compat`: nbgrader's own tests, run with this course's grading plugins loaded.

The plugins are meant as a drop-in for any nbgrader course, so nbgrader's tests of the apps they touch (autograde,
generate_feedback, validate, collect, zip_collect) must pass with them as they pass with stock settings. The
plugins come from the course's own ``nbgrader_config.py``, loaded as a global Jupyter configuration
(``JUPYTER_CONFIG_PATH``), as an instructor would load them into another course. What belongs to this course
only is left out (:data:`COURSE_ONLY`): its folders, exchange and gradebook, and its rule that every assignment
has judges, which nbgrader's test assignments do not have.

A test may fail only when :data:`EXCUSED` names it, with the documented difference it stands for
(docs/instructors.md, "How grading works"); an excused test that passes is an error too, so that the list stays
true. Usage: ``python tools/nbgrader_compat.py [pytest options]``; exits 0 when the run is as expected.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULES = ["test_nbgrader_autograde", "test_nbgrader_generate_feedback", "test_nbgrader_validate",
           "test_nbgrader_collect", "test_nbgrader_zip_collect"]

# Sections and options of nbgrader_config.py that only this course's own folder means.
COURSE_ONLY = {"CourseDirectory": None, "Exchange": None, "JudgedExecute": ["require_judges"]}

# test id -> the documented difference that makes it fail (docs/instructors.md, "Differences from stock nbgrader").
_KERNEL_NAME = "the notebook's kernel name is ignored: it always runs on the course's Python"
_FOREIGN_IDS = ("cells that claim grade ids the assignment does not have become ordinary cells: the notebook is "
                "graded, where nbgrader fails the student")
EXCUSED: dict[str, str] = {
    "TestNbGraderAutograde::test_side_effects": "the kernel works in a throw-away folder: nothing it writes comes back",
    "TestNbGraderAutograde::test_handle_failure": _FOREIGN_IDS,
    "TestNbGraderAutograde::test_handle_failure_single_notebook": _FOREIGN_IDS,
    "TestNbGraderAutograde::test_missing_source_kernelspec": _KERNEL_NAME,
    "TestNbGraderAutograde::test_incorrect_source_kernelspec": _KERNEL_NAME,
}

GLOBAL_CONFIG = '''\
# Built by tools/nbgrader_compat.py: the grading plugins of {course}, without its course-only settings.
c = get_config()  # noqa: F821
load_subconfig({course!r})  # noqa: F821
for section, options in {course_only!r}.items():
    if options is None:
        c.pop(section, None)
    else:
        for option in options:
            c[section].pop(option, None)
'''


def write_global_config(folder: Path, course_config: Path = REPO / "nbgrader_config.py") -> Path:
    """A Jupyter configuration folder whose nbgrader_config.py loads *course_config* less :data:`COURSE_ONLY`."""
    path = folder / "nbgrader_config.py"
    path.write_text(GLOBAL_CONFIG.format(course=str(course_config), course_only=COURSE_ONLY))
    return path


def outcomes(junit_xml: Path) -> dict[str, str]:
    """test id -> "passed", "failed" or "skipped", from pytest's JUnit XML report."""
    found = {}
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        test = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        kinds = {child.tag for child in case}
        found[test] = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
    return found


def verdict(found: dict[str, str], excused: dict[str, str]) -> list[str]:
    """What is wrong with a run: failures without an excuse, excuses for tests that pass or were not run."""
    problems = [f"FAILED without an excuse: {test}" for test, outcome in sorted(found.items())
                if outcome == "failed" and test not in excused]
    problems += [f"excused but {found.get(test, 'not run')}: {test} ({why})" for test, why in sorted(excused.items())
                 if found.get(test) != "failed"]
    if not found:
        problems.append("no test ran")
    return problems


def run_suite(pytest_args: list[str] = ()) -> tuple[dict[str, str], float]:
    """Run nbgrader's tests with the plugins loaded: (test id -> outcome, seconds)."""
    with tempfile.TemporaryDirectory(prefix="nbgrader-compat-") as tmp:
        tmp = Path(tmp)
        (tmp / "config").mkdir()
        (tmp / "cwd").mkdir()
        write_global_config(tmp / "config")
        (tmp / "cwd" / "pytest.ini").write_text("[pytest]\n")  # none of this repository's pytest settings
        env = dict(os.environ, JUPYTER_CONFIG_PATH=str(tmp / "config"),
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        report = tmp / "report.xml"
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                        "--pyargs", *(f"nbgrader.tests.apps.{module}" for module in MODULES), *pytest_args],
                       cwd=tmp / "cwd", env=env, check=False)
        return (outcomes(report) if report.exists() else {}), time.monotonic() - started


def summary(found: dict[str, str], seconds: float) -> str:
    counts = {kind: sum(outcome == kind for outcome in found.values()) for kind in ("passed", "failed", "skipped")}
    excused = sum(found.get(test) == "failed" for test in EXCUSED)
    return (f"{counts['passed']} passed, {counts['failed']} failed ({excused} of them excused), {counts['skipped']} "
            f"skipped, in {seconds:.0f} s")


def main(pytest_args: list[str]) -> int:
    found, seconds = run_suite(pytest_args)
    print(f"nbgrader's tests with the course's plugins: {summary(found, seconds)}")
    problems = verdict(found, EXCUSED)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
