"""`python -m autograde gradescope`: the autograder bundle for Gradescope, and what it writes for one submission.

The bundle of the tiny course is built once, then every submission is graded the way Gradescope does it: the zip
unzipped into a stand-in /autograder (ROOT/source), run_autograder copied to ROOT, the upload in ROOT/submission,
and ROOT/results/results.json read back and checked against a JSON Schema written from Gradescope's
specification. setup.sh is not run (it would apt-get into this machine); its text is checked instead, and so is
requirements-grader.lock, what it installs, against requirements.lock and what the grader imports. PyTorch's CPU
index cannot be reached from here either: that the CPU build satisfies the lock's pin is checked with PEP 440's rules.

The stand-in roots are under the repository's build/ folder, as /autograder is outside /tmp; one test runs a
bundle under /tmp, whose grader each sandbox must bind into its private /tmp.
"""
import ast
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import jsonschema
import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from autograde_cheats import FORGERIES, patch_inside, with_forgery
from autograde_fixtures import (MINI, PYTHON, REPO, bracket_bombs, captured_mini, fill, gradescope_root, make_course,
                                release_and_answers, run_cli)

from autograde import gradescope

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox uses Linux features")

WRONG = "def double(x):\n    return 3 * x\n"
SCHEMA = json.loads((Path(__file__).parent / "gradescope_results.schema.json").read_text())
HIDDEN_CODE = ["BEGIN HIDDEN TESTS", "torch.equal(double(torch.arange(3))", "assert_close(double(torch.tensor([1.5"]
WRITTEN = "written (graded by hand)"
LINKS = """import os
for name, target in [("mini.ipynb", "{root}/results/results.json"), ("results.json", "{root}/results/results.json"),
                     ("mini.html", "{root}/source/settings.json"), ("gradebook.db", "{root}/source/template/gradebook.db")]:
    try:
        os.symlink(target, name)
    except OSError:
        pass
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("course"))
    out = tmp_path_factory.mktemp("bundle") / "autograder.zip"
    done = run_cli("gradescope", "--assignment", MINI, "--course", course, "--out", out, "--timeout", "10",
                   "--memory", "1024", "--jobs", "3")
    assert done.returncode == 0, done.stderr
    release, answers = release_and_answers(course)
    return {"zip": out, "stdout": done.stdout, "release": release, "answers": answers, "course": course,
            "captured": captured_mini(course, answers)[0]}


@pytest.fixture(scope="module")
def roots():
    """Where the stand-in /autograder folders go: outside /tmp, like Gradescope's."""
    (REPO / "build").mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="gradescope-test-", dir=REPO / "build"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def autograde(bundle, parent: Path, name: str, files: dict, path=None):
    """One submission through the bundle as Gradescope runs it: (exit code, stdout, results.json's text)."""
    root = gradescope_root(bundle["zip"], parent / name, files)
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON=str(PYTHON),
               PATH=path or f"{PYTHON.parent}:{os.environ.get('PATH', '')}")
    done = subprocess.run([str(root / "run_autograder")], env=env, capture_output=True, text=True, timeout=600)
    results = root / "results" / "results.json"
    return done.returncode, done.stdout + done.stderr, results.read_text(encoding="utf-8") if results.exists() else ""


@pytest.fixture(scope="module")
def graded(bundle, roots):
    release, answers = bundle["release"], bundle["answers"]
    cases = {
        "correct": {"mini.ipynb": fill(release, answers)},
        "wrong": {"mini.ipynb": fill(release, {"double": WRONG})},
        "broken": {"mini.ipynb": b"this is not JSON {"},
        "nested": {"mini.ipynb": bracket_bombs()["cells"]},
        "cheating": {"mini.ipynb": fill(release, {"double": patch_inside(WRONG, "double")})},
        **{f"forged_{name}": {"mini.ipynb": fill(release, {"double": with_forgery(WRONG, name, bundle["captured"])})}
           for name in FORGERIES},
        # A link to the bundle's own source (the solutions) is not the student's work: it is left out.
        "linked": {"mini.ipynb": roots / "correct" / "source" / "course" / "source" / MINI / f"{MINI}.ipynb"},
        # A kernel that fills its folder with links to the results and the bundle, under the names the grader writes.
        "links_out": {"mini.ipynb": fill(release, {"double": LINKS.format(root=roots / "links_out") + WRONG})},
    }
    return {name: autograde(bundle, roots, name, files) for name, files in cases.items()}


def _tests(text: str) -> dict:
    return {test["name"]: test for test in json.loads(text)["tests"]}


# -- the bundle ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_bundle_holds_the_grader_the_course_and_a_template_only(bundle):
    with zipfile.ZipFile(bundle["zip"]) as zf:
        infos = {info.filename: info for info in zf.infolist()}
        settings = json.loads(zf.read("settings.json"))
        setup = zf.read("setup.sh").decode()
    names = set(infos)
    assert {name.split("/")[0] for name in names} == {"setup.sh", "run_autograder", "settings.json", "project",
                                                      "course", "template"}
    for script in ("setup.sh", "run_autograder"):
        assert stat.S_IMODE(infos[script].external_attr >> 16) == 0o755
    assert {"project/pyproject.toml", "project/requirements-grader.lock", "project/autograde/gradescope.py",
            "project/resnet_course/__init__.py", "course/nbgrader_config.py", f"course/source/{MINI}/{MINI}.ipynb",
            "template/fingerprint", "template/gradebook.db", f"template/release/{MINI}/{MINI}.ipynb"} <= names
    leftovers = (".venv", "__pycache__", ".pyc", "submitted/", "autograded/", "feedback/", "tests/",
                 ".ipynb_checkpoints")
    assert not [name for name in names if any(part in name for part in leftovers)]
    assert settings["assignment"] == MINI and settings["isolation"] == "bwrap"
    assert settings["grading"] == ["--assignment", MINI, "--timeout", "10", "--memory", "1024"]  # no --jobs
    assert "apt-get install" in setup and "bubblewrap" in setup and "python3-venv" in setup
    assert setup == gradescope.setup_sh((REPO / gradescope.GRADER_LOCK).read_text(encoding="utf-8"))
    assert "project/requirements.lock" not in names and "requirements.lock" not in setup  # the test tools' lock
    assert "--no-deps" in setup and "/autograder/venv" in setup
    assert "Autograder points: 3" in bundle["stdout"] and "written (1 point)" in bundle["stdout"]


@pytest.mark.slow
def test_scripts_are_valid_bash(bundle, tmp_path):
    with zipfile.ZipFile(bundle["zip"]) as zf:
        zf.extractall(tmp_path)
    for script in ("setup.sh", "run_autograder"):
        assert subprocess.run(["bash", "-n", str(tmp_path / script)]).returncode == 0, script


# -- what setup.sh installs ---------------------------------------------------------------------------

def _lock(name: str) -> dict:
    """(name, marker) -> version, for each pin of a lock."""
    pins = [Requirement(line) for line in (REPO / name).read_text().splitlines() if line.strip()]
    return {(canonicalize_name(pin.name), str(pin.marker or "")): next(iter(pin.specifier)).version for pin in pins}


def _installed_closure(requirements) -> set[str]:
    """The distributions these requirements bring in on this machine, from the installed packages' metadata."""
    found, todo = {}, [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in found and set(requirement.extras) <= found[name]:
            continue
        found.setdefault(name, set()).update(requirement.extras)
        for line in metadata.requires(name) or []:
            dependency = Requirement(line)
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": extra})
                                                for extra in {"", *found[name]}):
                todo.append(dependency)
    return set(found)


def test_the_grader_lock_is_the_full_lock_without_what_only_tests_need():
    full, grader = _lock("requirements.lock"), _lock(gradescope.GRADER_LOCK)
    differ = {pin: (version, full.get(pin)) for pin, version in grader.items() if full.get(pin) != version}
    assert grader and not differ, f"(grader lock, requirements.lock) disagree: {differ}: run `make lock`"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = _installed_closure(project["dependencies"])
    only_tests = _installed_closure(project["optional-dependencies"]["test"]) - runtime
    names = {name for name, _ in grader}
    assert {"pytest", "nbval", "playwright"} <= only_tests
    assert not only_tests & names, f"only tests need {sorted(only_tests & names)}: run `make lock`"
    assert runtime <= names, f"the grader lock lacks {sorted(runtime - names)}: run `make lock`"
    assert {name for name, _ in full} - names <= only_tests  # only what tests need was left out


def _imported(source: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules


def test_the_grader_lock_has_what_the_grader_and_the_assignment_import():
    sources = [path.read_text() for folder in ("autograde", "resnet_course") for path in (REPO / folder).rglob("*.py")]
    for notebook in (REPO / "source").rglob("*.ipynb"):  # what students' kernels run, magics left out
        sources += ["\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
                    for cell in nbformat.read(notebook, as_version=4).cells if cell.cell_type == "code"]
    modules = set().union(*map(_imported, sources)) - set(sys.stdlib_module_names) - {"autograde", "resnet_course"}
    providers = metadata.packages_distributions()
    assert {"nbgrader", "torch", "nh3", "psutil"} <= modules and not modules - set(providers)
    names = {name for name, _ in _lock(gradescope.GRADER_LOCK)}
    missing = {m: providers[m] for m in modules if not {canonicalize_name(d) for d in providers[m]} & names}
    assert not missing, f"imported but not in the grader lock: {missing}"


def test_setup_sh_installs_cpu_torch_then_the_grader_lock():
    lock = (REPO / gradescope.GRADER_LOCK).read_text(encoding="utf-8")
    torch = gradescope.locked_torch(lock)
    assert f"torch=={torch}" in lock.splitlines()
    setup = gradescope.setup_sh(lock)
    cpu = f'pip install --no-deps --index-url https://download.pytorch.org/whl/cpu "torch=={torch}"\n'
    locked = f'pip install -r "$SOURCE/project/{gradescope.GRADER_LOCK}"\n'
    assert cpu in setup and locked in setup and setup.index(cpu) < setup.index(locked) < setup.index("-e ")
    # PyTorch's CPU build is X+cpu: the lock's torch==X accepts it, so its install leaves that torch in place.
    assert SpecifierSet(f"=={torch}").contains(f"{torch}+cpu")
    assert not SpecifierSet(f"=={torch}").contains(f"{torch}.post1")  # (== is no looser than that)
    split = "torch==2.13.0 ; sys_platform == 'linux'\ntorch==2.12.0 ; sys_platform != 'linux'\n"
    for lock_text in ("numpy==2.4.6\n", split):  # no torch, or one per platform: which one would be CPU's?
        with pytest.raises(ValueError, match="one torch version"):
            gradescope.setup_sh(lock_text)


# -- results.json -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_every_results_json_follows_gradescopes_specification(graded):
    for name, (code, log, text) in graded.items():
        assert text, f"{name}: no results.json\n{log}"
        jsonschema.validate(json.loads(text), SCHEMA)
        assert json.loads(text)["stdout_visibility"] == "hidden"
        assert code == 0, f"{name}: exit code {code}\n{log}"
        assert "using the bundled template" in log, name  # no GenerateAssignment per submission


@pytest.mark.slow
def test_correct_work_gets_every_automatic_point(graded):
    text = graded["correct"][2]
    results, tests = json.loads(text), _tests(text)
    assert results["score"] == 3
    assert "Status: ok." in results["output"] and "graded by hand" in results["output"]
    assert tests["test_visible"] == {"name": "test_visible", "score": 1, "max_score": 1, "output": "Passed.",
                                     "visibility": "visible", "status": "passed"}
    assert tests["test_hidden"]["score"] == 2 and tests["test_hidden"]["status"] == "passed"
    assert tests["test_hidden"]["visibility"] == "after_published"
    # The written answer: Gradescope's own manual question grades it; here it counts for nothing.
    assert tests[WRITTEN]["score"] == tests[WRITTEN]["max_score"] == 0 and "status" not in tests[WRITTEN]
    assert "by hand" in tests[WRITTEN]["output"]


@pytest.mark.slow
def test_wrong_work_gets_the_tests_error_messages_without_code(graded):
    text = graded["wrong"][2]
    tests = _tests(text)
    assert json.loads(text)["score"] == 0
    assert tests["test_visible"]["output"] == "AssertionError: double(x) should be 2 * x"
    assert tests["test_hidden"]["status"] == "failed" and tests["test_hidden"]["output"].startswith("AssertionError")


@pytest.mark.slow
def test_hidden_test_code_never_reaches_results_json(graded):
    for name, (_, _, text) in graded.items():
        assert not [code for code in HIDDEN_CODE if code in text], name
        assert "Traceback" not in text and "File \"" not in text, name


@pytest.mark.slow
@pytest.mark.parametrize("case", ["broken", "nested"])
def test_a_broken_file_gets_zero_and_says_why(graded, case):
    code, _log, text = graded[case]
    results = json.loads(text)
    assert code == 0 and results["score"] == 0
    assert "Status: invalid notebook." in results["output"] and "could not be read" in results["output"]
    automatic = [test for test in results["tests"] if test["name"] != WRITTEN]
    assert all(test["status"] == "failed" and test["output"].startswith("Not run") for test in automatic)


@pytest.mark.slow
def test_cheats_and_forgeries_score_zero(graded):
    for name in ["cheating", *(f"forged_{forgery}" for forgery in FORGERIES)]:
        results = json.loads(graded[name][2])
        assert results["score"] == 0, (name, results["output"])
        assert all(test["score"] == 0 for test in results["tests"]), name


@pytest.mark.slow
def test_links_a_kernel_makes_lead_nowhere(graded, roots, bundle):
    results = json.loads(graded["links_out"][2])
    assert results["score"] == 0 and "Status: ok." in results["output"]
    with zipfile.ZipFile(bundle["zip"]) as zf:
        settings = zf.read("settings.json")
    assert (roots / "links_out" / "source" / "settings.json").read_bytes() == settings
    assert not (roots / "links_out" / "results" / "results.json").is_symlink()


@pytest.mark.slow
def test_a_link_to_the_bundles_source_is_not_graded(graded):
    results = json.loads(graded["linked"][2])
    assert results["score"] == 0 and "Status: no notebook." in results["output"]


@pytest.mark.slow
def test_without_isolation_it_refuses_and_implies_no_grade(bundle, roots):
    # No bubblewrap on PATH: the container cannot isolate the student's code.
    code, log, text = autograde(bundle, roots, "unsafe", {"mini.ipynb": b"{}"}, path=str(PYTHON.parent))
    assert code != 0 and "bubblewrap is not installed" in log
    results = json.loads(text)
    jsonschema.validate(results, SCHEMA)
    assert results["tests"] == [] and "not a grade" in results["output"]


@pytest.mark.slow
def test_a_bundle_under_tmp_grades_too(bundle):
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:  # the sandboxes' own /tmp must not hide the grader
        code, log, text = autograde(bundle, Path(folder), "in-tmp",
                                    {"mini.ipynb": fill(bundle["release"], bundle["answers"])})
    assert code == 0, log
    assert json.loads(text)["score"] == 3


@pytest.mark.slow
def test_notes_that_quote_a_hidden_line_are_redacted(bundle, tmp_path, monkeypatch):
    from autograde.course import Course, Template
    from autograde.gradescope import _redacted

    monkeypatch.setenv("PATH", f"{PYTHON.parent}:{os.environ.get('PATH', '')}")  # nbgrader runs alembic
    with zipfile.ZipFile(bundle["zip"]) as zf:
        zf.extractall(tmp_path)
    template = Template(Course(tmp_path / "course", MINI), tmp_path / "template").prepare()
    hidden = "torch.testing.assert_close(double(torch.tensor([1.5, -2.0])), torch.tensor([3.0, -4.0]))"
    assert _redacted(["a note", f"the cell printed:\n    {hidden}"], template) == [
        "a note", "the cell printed:\n[hidden test line removed]"]


@pytest.mark.slow
def test_a_failure_while_writing_results_json_still_writes_one(bundle, tmp_path, monkeypatch):
    """Writing results.json reads the autograded notebook, which holds what the student's kernel printed: whatever
    goes wrong there, Gradescope gets a results.json that says it is no grade."""
    from autograde import gradescope
    from autograde.results import Result

    with zipfile.ZipFile(bundle["zip"]) as zf:
        zf.extractall(tmp_path / "source")
    graded = gradescope.Graded(Result("submission", "mini.ipynb", str(tmp_path / "feedback.html"), 4.0), None, None)
    monkeypatch.setattr(gradescope, "_grade", lambda root, settings: graded)

    def report(_graded):
        raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")

    monkeypatch.setattr(gradescope, "report", report)
    assert gradescope.run(tmp_path) == 1
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    jsonschema.validate(results, SCHEMA)
    assert results["tests"] == [] and "not a grade" in results["output"]
