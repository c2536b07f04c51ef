"""The graded assignment: its master copy, the released student copy, and grading them with nbgrader.

* the source notebook has the graded answer cells with the contract's signatures, and its points;
* release/ is exactly what `make release` generates, and holds no solution and no hidden test;
* the student copy imports only torch, numpy, matplotlib and the standard library, and runs in a kernel that
  cannot import anything else of this course;
* through `nbgrader autograde` in a temporary course, the reference solution gets every autograded point within
  15 s of CPU, and the untouched release gets none;
* no graded solution hides in the lessons (notebooks/) or the helper package (resnet_course/): by name, and by
  trying every object of the package against the hidden tests.
"""
import ast
import importlib
import inspect
import pkgutil
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

import assignment_helpers as ah

POINTS = {"conv_output_size": 2, "make_shortcut": 3, "ResidualBlock": 6, "PlainBlock": 3, "build_network": 4,
          "train": 4, "plot_loss_curves": 3}
AUTOGRADED = sum(POINTS.values())
SIGNATURES = {
    "conv_output_size": "(size, kernel_size, stride=1, padding=0)",
    "make_shortcut": "(in_channels, out_channels, stride=1)",
    "ResidualBlock": "(self, in_channels, out_channels, stride=1)",
    "PlainBlock": "(self, in_channels, out_channels, stride=1)",
    "build_network": "(blocks_per_stage, residual=True, in_channels=1, num_classes=10, widths=(16, 32, 64))",
    "train": "(model, images, labels, steps, lr=0.002, batch_size=128, seed=0)",
    "plot_loss_curves": "(histories)",
}
WRITTEN_ANSWER = "The deeper plain network fits its training data worse, so this is optimization, not overfitting."


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def signature_of(node):
    """The signature of a FunctionDef, or of a ClassDef's __init__, as source text."""
    if isinstance(node, ast.ClassDef):
        node = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    return "(" + ast.unparse(node.args) + ")"


# ---------------------------------------------------------------------------------------------- the master copy

def test_source_has_the_graded_answer_cells_with_the_contract_signatures():
    nb = ah.read_notebook(ah.SOURCE_NB)
    answers = ah.answer_cells(nb)
    assert set(answers) == set(ah.GRADED), "one answer cell per graded name, with the name as its grade_id"
    for name, cell in answers.items():
        meta = ah.nbgrader_meta(cell)
        assert meta["solution"] and not meta["grade"] and not meta["locked"], f"{name}: an autograded answer cell"
        assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
        tree = ast.parse(cell.source)
        defined = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        assert name in defined, f"the answer cell {name} defines {name} at top level"
        assert signature_of(defined[name]) == SIGNATURES[name]
        if name in ("ResidualBlock", "PlainBlock"):
            assert [ast.unparse(b) for b in defined[name].bases] == ["nn.Module"]


def test_source_points_per_graded_part():
    nb = ah.read_notebook(ah.SOURCE_NB)
    cells = ah.graded_test_cells(nb)
    totals = {}
    for grade_id, (part, points, _) in cells.items():
        totals[part] = totals.get(part, 0) + points
    assert None not in totals, "every graded cell tests an answer above it (the grader needs no set-up cell)"
    assert totals == POINTS
    for part in ah.GRADED:
        assert len(ah.cells_of({part}, nb)) >= 2, f"{part}: a visible test cell and at least one hidden one"
    for grade_id, (part, points, has_hidden) in cells.items():
        cell = next(c for c in code_cells(nb) if ah.nbgrader_meta(c).get("grade_id") == grade_id)
        assert ah.nbgrader_meta(cell)["locked"], f"{grade_id}: test cells are read-only"
        assert has_hidden == ("visible" not in grade_id), f"{grade_id}: hidden tests exactly in the non-visible cells"
    written = [c for c in nb.cells if c.cell_type == "markdown" and ah.nbgrader_meta(c).get("solution")]
    assert len(written) == 1 and ah.nbgrader_meta(written[0])["points"] == 2, "one written answer, graded by hand"


def test_source_imports_only_torch_numpy_matplotlib_and_the_standard_library():
    nb = ah.read_notebook(ah.SOURCE_NB)
    for cell in code_cells(nb):
        modules = ah.imported_modules(ast.parse(ah.python_of_cell(cell.source)))
        extra = {m for m in modules if m not in ah.ALLOWED_IMPORTS and m not in sys.stdlib_module_names}
        assert not extra, f"cell {ah.nbgrader_meta(cell).get('grade_id')} imports {extra}"


def test_reference_solution_passes_every_test_in_process_and_matches_the_contract_numbers():
    result = ah.grade_in_process()
    assert not result.failures, result.failures
    assert result.passed == set(ah.graded_test_cells(ah.read_notebook(ah.SOURCE_NB)))
    namespace = {"__name__": "__main__"}
    exec("import torch\nfrom torch import nn\nimport torch.nn.functional as F", namespace)  # noqa: S102
    for source in ah.reference_answers().values():
        exec(source, namespace)  # noqa: S102
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(namespace["build_network"](3, in_channels=3)) == 272_474
    assert count(namespace["build_network"](3, residual=False, in_channels=3)) == 269_722
    assert namespace["conv_output_size"](32, 3, stride=2, padding=1) == 16


def test_a_probe_pins_torch_for_itself_and_leaves_the_notebooks_settings_as_they_were():
    """probing() runs a probe in float32 on the CPU whatever the notebook chose, and then gives the notebook its
    own settings back, leaving no torch function mode behind (one would slow every later torch call: the
    student's training cells run after the probes)."""
    import torch
    from torch.overrides import _get_current_function_mode_stack

    probes = ah.grading().probes
    with probes.probing():
        pass
    assert _get_current_function_mode_stack() == []
    dtype = torch.get_default_dtype()
    torch.set_default_device("meta")
    torch.set_default_dtype(torch.float64)
    try:
        with probes.probing():
            inside = torch.empty(1)
        assert (inside.device.type, inside.dtype) == ("cpu", torch.float32)
        assert (torch.get_default_device().type, torch.get_default_dtype()) == ("meta", torch.float64)
    finally:
        torch.set_default_device(None)
        torch.set_default_dtype(dtype)


# ----------------------------------------------------------------------------------------------- the release

def test_make_release_runs_nbgrader_generate_assignment_without_a_database():
    recipe = []
    lines = (ah.REPO / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("release:"))
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    assert recipe == ["$(BIN)/nbgrader generate_assignment $(ASSIGNMENT) --force --no-db"]


@pytest.mark.slow
def test_release_is_exactly_what_make_release_generates(tmp_path):
    shutil.copy2(ah.REPO / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    shutil.copytree(ah.SOURCE_DIR, tmp_path / "source" / ah.ASSIGNMENT)
    ah.nbgrader(["generate_assignment", ah.ASSIGNMENT, "--force", "--no-db"], cwd=tmp_path)
    assert not (tmp_path / "gradebook.db").exists(), "--no-db leaves no gradebook behind"
    generated = tmp_path / "release" / ah.ASSIGNMENT
    files = lambda root: sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())  # noqa: E731
    assert files(ah.RELEASE_DIR) == files(generated), "release/ holds exactly the generated files"
    for relative in files(generated):
        assert (ah.RELEASE_DIR / relative).read_bytes() == (generated / relative).read_bytes(), (
            f"release/{ah.ASSIGNMENT}/{relative} is out of date: run `make release` and commit the result")


def test_release_holds_no_solution_and_no_hidden_test():
    source = ah.read_notebook(ah.SOURCE_NB)
    release = ah.read_notebook(ah.RELEASE_NB)
    text = "\n".join(c.source for c in release.cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "_g_", "_G_"):
        assert marker not in text, f"{marker!r} appears in the release"
    # No line of a solution reaches the release (short lines like `return out` may, by coincidence).
    for cell in ah.answer_cells(source).values():
        for line in ah.marked_lines(cell.source, "SOLUTION"):
            assert line not in text, f"the solution line {line!r} appears in the release"
    assert "YOUR ANSWER HERE" in text, "the written answer is cleared"
    assert not (ah.RELEASE_DIR / "grading").exists(), "the probes and judges are the grader's, never released"
    # Every graded definition in the release is a stub that raises NotImplementedError.
    for cell in code_cells(release):
        tree = ast.parse(ah.python_of_cell(cell.source))
        for name, node in ah.defined_names(tree):
            if name not in ah.GRADED:
                continue
            functions = [node] if isinstance(node, ast.FunctionDef) else [
                n for n in node.body if isinstance(n, ast.FunctionDef)]
            assert functions, f"{name} in the release has no method to fill in"
            for function in functions:
                body = [ast.unparse(s) for s in function.body
                        if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]  # docstrings
                assert body in (["raise NotImplementedError()"], ["super().__init__()", "raise NotImplementedError()"]), (
                    f"{name}.{function.name} in the release should be a stub, found {body}")


def test_release_imports_only_torch_numpy_matplotlib_and_the_standard_library():
    for cell in code_cells(ah.read_notebook(ah.RELEASE_NB)):
        modules = ah.imported_modules(ast.parse(ah.python_of_cell(cell.source)))
        extra = {m for m in modules if m not in ah.ALLOWED_IMPORTS and m not in sys.stdlib_module_names}
        assert not extra, f"the student copy imports {extra}"


BLOCKER = '''
"""Loaded by the kernel at start-up: this course's own packages and its other dependencies cannot be imported."""
import importlib.abc
import importlib.machinery
import sys

BLOCKED = {"resnet_course", "autograde", "benchmarks", "nbgrader", "sklearn", "tqdm", "ipywidgets", "pandas", "scipy"}


class _Blocked(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    # A spec without an origin, whose module cannot be created: importing fails, while importlib.util.find_spec()
    # answers as for a module it cannot place (torch asks it about optional packages when Adam first steps).
    def find_spec(self, name, path=None, target=None):
        return importlib.machinery.ModuleSpec(name, self) if name.split(".")[0] in BLOCKED else None

    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r} (blocked: the student copy must not need it)")

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _Blocked())
'''


def run_in_plain_kernel(nb, workdir):
    """Execute a notebook in a fresh kernel that can import torch, numpy and matplotlib but nothing of the course."""
    import os

    from nbclient import NotebookClient
    blocker = Path(workdir) / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    env = ah.nbgrader_env()
    env["PYTHONPATH"] = str(blocker)
    client = NotebookClient(nb, kernel_name="python3", timeout=120, allow_errors=True,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute(env=env)
    assert os.environ.get("PYTHONPATH") != str(blocker)
    return nb


def errors_of(nb):
    return [(ah.nbgrader_meta(c).get("grade_id"), o.ename, o.evalue) for c in code_cells(nb)
            for o in c.outputs if o.output_type == "error"]


@pytest.mark.slow
def test_blocker_really_blocks_the_course_packages(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import resnet_course")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    assert [e[1] for e in errors_of(run_in_plain_kernel(nb, tmp_path))] == ["ModuleNotFoundError"]


@pytest.mark.slow
def test_untouched_student_copy_runs_in_a_plain_kernel(tmp_path):
    nb = run_in_plain_kernel(ah.read_notebook(ah.RELEASE_NB), tmp_path)
    errors = errors_of(nb)
    assert all(ename == "NotImplementedError" for _, ename, _ in errors), errors
    assert "imports" not in {grade_id for grade_id, _, _ in errors}


@pytest.mark.slow
def test_completed_student_copy_runs_in_a_plain_kernel_without_errors(tmp_path):
    nb = run_in_plain_kernel(ah.submission(ah.reference_answers()), tmp_path)
    assert errors_of(nb) == []
    printed = "".join(o.get("text", "") for c in code_cells(nb) for o in c.outputs if o.output_type == "stream")
    for name in ah.GRADED:
        assert f"{name}: the visible tests pass" in printed
    assert any(o.output_type == "display_data" and "image/png" in o.data for c in code_cells(nb) for o in c.outputs), (
        "the gradient-norm plot is drawn")


# ------------------------------------------------------------------------------------------ nbgrader autograde

@pytest.fixture(scope="module")
def graded_course():
    """A temporary course with two submissions: the reference solution and the untouched release."""
    workdir = Path(tempfile.mkdtemp(prefix="residual-blocks-course-"))
    course = ah.new_course(workdir / "course")
    ah.write_submission(course, "reference", ah.submission(ah.reference_answers(), written_answer=WRITTEN_ANSWER))
    ah.write_submission(course, "untouched", ah.read_notebook(ah.RELEASE_NB))
    for student in ("reference", "untouched"):
        ah.autograde_student(course, student)
    scores = ah.read_scores(course, ["reference", "untouched"])
    yield course, scores
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.slow
def test_reference_solution_gets_full_autograded_marks(graded_course):
    course, scores = graded_course
    score, maximum = ah.autograded_score(scores["reference"])
    assert maximum == AUTOGRADED == 25
    assert score == maximum, f"lost points in {ah.lost_points(scores['reference'])}"
    nb = ah.autograded_notebook(course, "reference")
    outputs = {ah.nbgrader_meta(c).get("grade_id"): "".join(o.get("text", "") for o in c.outputs)
               for c in code_cells(nb)}
    for grade_id, (part, _, _) in ah.graded_test_cells(nb).items():  # the judge's verdict, and nothing else
        assert outputs[grade_id].startswith(f"{part}: ") and outputs[grade_id].count("\n") == 1, (
            grade_id, outputs[grade_id])
    written = [g for g in scores["reference"].values() if g[2] == "markdown"]
    assert written == [(0.0, 2.0, "markdown")], "the written answer waits for a human"


@pytest.mark.slow
def test_untouched_release_gets_zero(graded_course):
    _, scores = graded_course
    score, maximum = ah.autograded_score(scores["untouched"])
    assert maximum == AUTOGRADED and score == 0, scores["untouched"]
    assert sum(g[0] for g in scores["untouched"].values()) == 0


# ------------------------------------------------------------------------- lessons and the helper package

def python_sources():
    """(where, parsed module) for every .py of the helper package and every code cell of the lessons."""
    found = []
    for path in sorted((ah.REPO / "resnet_course").rglob("*.py")):
        found.append((str(path.relative_to(ah.REPO)), ast.parse(path.read_text())))
    for path in sorted((ah.REPO / "notebooks").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        for index, cell in enumerate(ah.read_notebook(path).cells):
            if cell.cell_type == "code":
                found.append((f"{path.relative_to(ah.REPO)} cell {index}", ast.parse(ah.python_of_cell(cell.source))))
    return found


def test_no_graded_name_is_defined_in_the_lessons_or_the_helper_package():
    for where, tree in python_sources():
        for parsed in [tree, *ah.code_strings(tree)]:  # code kept in strings too, e.g. worked solutions
            names = {name for name, _ in ah.defined_names(parsed)} & set(ah.SECRET)
            assert not names, f"{where} defines {sorted(names)}: a graded solution must not ship with the course"


CONTRACT_CALLS = {
    "conv_output_size": dict(size=8, kernel_size=3, stride=1, padding=0),
    "make_shortcut": dict(in_channels=4, out_channels=4, stride=1),
    "ResidualBlock": dict(in_channels=4, out_channels=4, stride=1),
    "PlainBlock": dict(in_channels=4, out_channels=4, stride=1),
    "build_network": dict(blocks_per_stage=1, residual=True, in_channels=1, num_classes=10, widths=(4, 8, 16)),
    "train": dict(model=None, images=None, labels=None, steps=1, lr=0.1, batch_size=4, seed=0),
    "plot_loss_curves": dict(histories={}),
}


def helper_package_objects():
    """Every function and class of resnet_course's modules, private ones and those defined in code strings too."""
    import torch
    from torch import nn
    from torch.nn import functional as F
    import numpy as np
    import resnet_course
    objects = {}
    for info in pkgutil.walk_packages(resnet_course.__path__, "resnet_course."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (inspect.isfunction(value) or inspect.isclass(value)) and getattr(value, "__module__", "").startswith(
                    "resnet_course"):
                objects[f"{value.__module__}.{value.__qualname__}"] = value
        tree = ast.parse(inspect.getsource(module))
        for index, code in enumerate(ah.code_strings(tree)):
            namespace = {"torch": torch, "nn": nn, "F": F, "np": np, "__name__": f"{info.name}.<string {index}>"}
            try:
                exec(compile(code, f"{info.name}:<string {index}>", "exec"), namespace)  # noqa: S102
            except Exception:  # noqa: BLE001 - a fragment that needs more context cannot be a graded solution
                continue
            for name, value in namespace.items():
                if inspect.isfunction(value) or inspect.isclass(value):
                    objects[f"{info.name}:<string {index}>.{name}"] = value
    return objects


def binds(candidate, kwargs):
    try:
        inspect.signature(candidate).bind(**kwargs)
    except (TypeError, ValueError):
        return False
    return True


@pytest.mark.slow
def test_helper_package_exposes_nothing_that_passes_the_hidden_tests():
    objects = helper_package_objects()
    assert len(objects) > 20, "the package's objects were found"
    reference = ah.reference_answers()
    tried = 0
    for graded, kwargs in CONTRACT_CALLS.items():
        # Only what accepts the contract's keyword call can pass: every graded part's hidden tests make that call.
        candidates = {where: value for where, value in objects.items() if binds(value, kwargs)}
        for where, candidate in candidates.items():
            tried += 1
            result = ah.grade_in_process(reference, extra_globals={graded: candidate})
            passed_all = not (set(result.failures) & ah.cells_of({graded}))
            assert not passed_all, f"{where} passes every test of {graded}: the helper package gives it away"
    print(f"tried {tried} callables of the helper package against the hidden tests")


def near_miss_adapters(objects):
    """graded name -> {description: adapter}: the package's blocks, shortcuts and networks given the contract's
    signature, the one-line wrappers a learner might write around them. Found by parameter names, not by name."""
    from torch import nn
    adapters = {name: {} for name in ("make_shortcut", "ResidualBlock", "PlainBlock", "build_network")}
    for where, obj in objects.items():
        try:
            names = set(inspect.signature(obj).parameters)
        except (TypeError, ValueError):
            continue
        if inspect.isclass(obj) and issubclass(obj, nn.Module) and {"in_channels", "out_channels", "stride"} <= names:
            for graded, residual in (("ResidualBlock", True), ("PlainBlock", False)):
                extra = {"residual": residual} if "residual" in names else {}

                class Adapted(nn.Module):
                    def __init__(self, in_channels, out_channels, stride=1, _obj=obj, _extra=extra):
                        super().__init__()
                        self.inner = _obj(in_channels=in_channels, out_channels=out_channels, stride=stride, **_extra)
                        skips = [m for n, m in self.inner.named_children() if "skip" in n or "short" in n]
                        if skips:
                            self.shortcut = skips[0]

                    def forward(self, x):
                        return self.inner(x)

                adapters[graded][f"{where}(..., **{extra})"] = Adapted
        if {"out_channels", "stride"} <= names and "in_channels" not in names:
            def shortcut(in_channels, out_channels, stride=1, _obj=obj):
                if in_channels == out_channels and stride == 1:
                    return nn.Identity()
                return _obj(out_channels=out_channels, stride=stride)
            adapters["make_shortcut"][f"identity or {where}"] = shortcut
        if {"depth", "residual"} <= names:
            def network(blocks_per_stage, residual=True, in_channels=1, num_classes=10, widths=(16, 32, 64), _obj=obj):
                return _obj(depth=6 * blocks_per_stage + 2, residual=residual, in_channels=in_channels,
                            num_classes=num_classes, widths=widths)
            adapters["build_network"][f"{where}(depth=6n+2, ...)"] = network
    return adapters


def adapters_that_pass(graded):
    reference = ah.reference_answers()
    passing = []
    for description, adapter in near_miss_adapters(helper_package_objects())[graded].items():
        result = ah.grade_in_process(reference, extra_globals={graded: adapter})
        if not set(result.failures) & ah.cells_of({graded}):
            passing.append(description)
    return passing


@pytest.mark.parametrize("graded", ["make_shortcut", "ResidualBlock", "PlainBlock", "build_network"])
def test_no_wrapper_around_the_helper_package_passes_the_hidden_tests(graded):
    passing = adapters_that_pass(graded)
    assert not passing, f"wrapped to the contract's signature, {passing} pass every test of {graded}"
