"""`make test-fast` (pytest -m "not slow") is the unit tests alone: nothing it collects starts a kernel, runs a
notebook or grades through the CLI. Collection only, so the check itself stays fast."""
import ast
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

# Calls that start a kernel or run a notebook, or grade through the CLI (`python -m autograde`, run_cli) or nbgrader's
# autograde, as the tests and their helpers in tests/ write them. A fast test must reach none of them, by itself, its
# fixtures or the helpers it calls.
LAUNCHERS = re.compile(r"\b(?:run_cli|stock_nbgrader|NotebookClient|ExecutePreprocessor|\w*KernelManager|"
                       r"start_new_kernel|Supervised|run_lesson|run_in_plain_kernel)\(|\bJudgedExecute\(config=|"
                       r"\"-m\", \"autograde\",|nbgrader\b[^\n]{0,40}?\"autograde\",")

# Fast tests that reach a launcher yet never start it (each measured well under a second), with the reason: the
# grader refuses their configuration before it starts a kernel.
NEVER_LAUNCH = {
    "test_autograde_judging.py::test_a_test_without_its_judge_is_a_configuration_error":
        "JudgedExecute stops at the missing judge, before any kernel starts",
    "test_autograde_judging.py::test_a_course_that_requires_judges_refuses_an_assignment_without_them":
        "JudgedExecute refuses an assignment without judges before any kernel starts",
}

# Whole modules that only grade, start kernels or need a cluster, a container, a browser or a fresh virtual
# environment: none of their tests may be fast. (The lessons in notebooks/ are marked by conftest.py.)
SLOW_MODULES = ["test_autograde_cli.py", "test_autograde_container.py", "test_autograde_escapes.py",
                "test_autograde_kernel.py", "test_autograde_nbgrader_courses.py", "test_autograde_release.py",
                "test_autograde_slurm.py", "test_browser.py", "test_colab.py", "test_lab.py"]


@cache
def collected(*options) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           *options], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return [line for line in done.stdout.splitlines() if "::" in line]


@cache
def functions(path: Path) -> dict[str, tuple[list[str], set[str]]]:
    """Each top-level function of *path*: the launchers its own code calls, and the names it uses (fixtures too)."""
    text = path.read_text(encoding="utf-8")
    found = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            names |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
            names |= {arg.arg for arg in node.args.args + node.args.kwonlyargs}  # the fixtures it asks for
            calls = [m.group(0) for m in LAUNCHERS.finditer(ast.get_source_segment(text, node))]
            found[node.name] = calls, names - {node.name}
    return found


def launches(module: Path, name: str) -> list[str]:
    """The launchers that test *name* of *module* reaches: through its own code, the fixtures it asks for and the
    functions it calls, those of its module first, then those of the helper modules in tests/."""
    helpers = [path for path in sorted(TESTS.glob("*.py")) if not path.name.startswith("test_")]
    found, seen, todo = [], set(), [(module, name)]
    while todo:
        path, function = todo.pop()
        if (path, function) in seen:
            continue
        seen.add((path, function))
        calls, names = functions(path)[function]
        found += [f"{path.name}::{function}: {call}" for call in calls]
        for other in names:
            where = next((p for p in [module, *helpers] if other in functions(p)), None)
            if where is not None:
                todo.append((where, other))
    return found


def test_the_fast_set_is_the_unit_tests_and_none_of_the_slow_modules():
    fast = collected("-m", "not slow")
    modules = {item.split("::")[0] for item in fast}
    # Not vacuous: the fast set holds the unit tests, hundreds of them, and this test too.
    assert len(fast) > 300 and "tests/test_autograde_units.py" in modules and "tests/test_models.py" in modules
    assert any(item.startswith("tests/test_fast_split.py::") for item in fast)
    assert not [item for item in fast if item.split("::")[0].endswith(".ipynb")], "nbval's lessons are slow"
    for name in SLOW_MODULES:
        assert (TESTS / name).exists() and any(n.startswith("test_") for n in functions(TESTS / name)), name
        assert f"tests/{name}" not in modules, f"{name} starts kernels or grades: mark it slow (pytestmark)"


def test_no_fast_test_starts_a_kernel_or_grades_through_the_cli():
    offenders = {}
    for item in collected("-m", "not slow"):
        if not item.startswith("tests/"):
            continue
        path, name = item.split("::")[0], item.split("::")[-1].split("[")[0]
        found = launches(ROOT / path, name)
        if found and f"{Path(path).name}::{name}" not in NEVER_LAUNCH:
            offenders[item] = found
    assert not offenders, ("these tests start a kernel or grade, yet `make test-fast` runs them: mark them "
                           f"@pytest.mark.slow: {offenders}")


def test_the_check_finds_what_the_slow_tests_launch():
    """The check above cannot pass for want of seeing: it does see the kernels and the grading runs of tests that are
    marked slow for them."""
    assert launches(TESTS / "test_autograde_cli.py", "test_the_run_succeeds_with_one_row_per_submission")  # fixture
    assert launches(TESTS / "test_autograde_kernel.py", "test_a_kernel_whose_first_reply_comes_late_gets_ready")
    assert launches(TESTS / "test_autograde_judging.py", "test_the_reference_runs_once_per_seed")  # a helper
    assert launches(TESTS / "test_assignment_release.py", "test_untouched_student_copy_runs_in_a_plain_kernel")
    assert launches(TESTS / "test_autograde_sandbox.py", "test_memory_of_all_processes_counts")
    assert launches(TESTS / "test_autograde_lms.py", "test_moodle_download_graded")  # run_cli, in autograde_fixtures
    assert launches(TESTS / "test_autograde_nbgrader_courses.py",
                    "test_a_notebook_with_only_a_task_grades_through_both")  # nbgrader autograde
    for test in NEVER_LAUNCH:  # each exception is still needed
        assert launches(TESTS / test.split("::")[0], test.split("::")[1]), test
