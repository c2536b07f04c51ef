"""The lesson notebooks as files: committed clean, set up the same way, quizzes and exercises wired up, and no
graded-assignment code anywhere in the lessons or the helper package. (nbval executes them separately.)"""
import ast
import json
import re
from pathlib import Path

import pytest

from assignment_helpers import SECRET, python_of_cell
from resnet_course.quizzes import load_questions

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
LESSONS = [
    "01_why_depth_alone_fails.ipynb",
    "02_vanishing_gradients.ipynb",
    "03_the_residual_block.ipynb",
    "04_when_shapes_dont_match.ipynb",
    "05_plain_vs_residual.ipynb",
    "06_generalisation_vs_degradation.ipynb",
    "07_identity_mappings.ipynb",
    "08_inside_a_trained_resnet.ipynb",
    "09_from_block_to_network.ipynb",
]
GRADED_NAMES = set(SECRET)  # the lessons do use the package's train and plot_loss_curves
SETUP_CELL = '''try:
    import resnet_course
except ImportError:
    %pip install -q --no-deps "resnet-course @ git+https://github.com/resnet-course/resnet-skip-connections"'''


def load(name):
    return json.loads((NOTEBOOKS / name).read_text())


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def code_cells(notebook):
    return [source(cell) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def parse(code):
    """A code cell as a Python syntax tree, with IPython's %magics turned into plain calls first."""
    return ast.parse(python_of_cell(code))


def quiz_keys(code):
    return [node.args[0].value for node in ast.walk(parse(code))
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "quiz"
            and node.args and isinstance(node.args[0], ast.Constant)]


def defined_names(tree):
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {alias.asname or alias.name.split(".")[0] for alias in node.names}
    return names


def test_the_nine_lessons_are_there():
    assert sorted(path.name for path in NOTEBOOKS.glob("*.ipynb")) == LESSONS


def test_no_notebooks_under_tests():
    assert not list((ROOT / "tests").rglob("*.ipynb"))


@pytest.mark.parametrize("name", LESSONS)
def test_committed_without_outputs_and_with_minimal_metadata(name):
    notebook = load(name)
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    assert notebook["metadata"]["language_info"] == {"name": "python"}
    assert set(notebook["metadata"]) == {"kernelspec", "language_info"}
    for cell in notebook["cells"]:
        assert set(cell["metadata"]) <= {"tags"}, f"{name}: extra cell metadata {cell['metadata']}"
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{name} has outputs in: {source(cell)[:60]!r}"
            assert cell["execution_count"] is None, f"{name} has an execution count in: {source(cell)[:60]!r}"


@pytest.mark.parametrize("name", LESSONS)
def test_starts_with_the_colab_setup_then_start_lesson(name):
    notebook = load(name)
    assert notebook["cells"][0]["cell_type"] == "markdown" and source(notebook["cells"][0]).startswith("# Lesson")
    cells = code_cells(notebook)
    setup = "\n".join(line for line in cells[0].splitlines() if not line.lstrip().startswith("#"))
    assert setup.strip() == SETUP_CELL
    calls = [node for node in ast.walk(parse(cells[1])) if isinstance(node, ast.Assign)
             and isinstance(node.value, ast.Call) and getattr(node.value.func, "id", None) == "start_lesson"]
    assert len(calls) == 1, f"{name}: the second code cell must call device = start_lesson(seed=0)"
    assert [t.id for t in calls[0].targets] == ["device"]
    assert [(k.arg, k.value.value) for k in calls[0].value.keywords] == [("seed", 0)]


@pytest.mark.parametrize("name", LESSONS)
def test_no_graded_assignment_code(name):
    for code in code_cells(load(name)):
        clash = defined_names(parse(code)) & GRADED_NAMES
        assert not clash, f"{name} defines {clash}, a name the graded assignment asks learners to write"


@pytest.mark.parametrize("module", sorted((ROOT / "resnet_course").glob("*.py")), ids=lambda p: p.name)
def test_package_has_no_graded_assignment_code(module):
    clash = defined_names(ast.parse(module.read_text())) & GRADED_NAMES
    assert not clash, f"{module.name} defines {clash}, a name the graded assignment asks learners to write"


@pytest.mark.parametrize("name", LESSONS)
def test_has_a_checked_exercise_with_a_runnable_placeholder_and_a_solution(name):
    notebook = load(name)
    markdown = "\n".join(source(cell) for cell in notebook["cells"] if cell["cell_type"] == "markdown")
    assert "Your turn" in markdown
    cells = code_cells(notebook)
    checks = [code for code in cells if any(isinstance(node, ast.Call) and getattr(node.func, "id", "")
                                            .startswith("check_") for node in ast.walk(parse(code)))]
    assert checks, f"{name} has no exercise check"
    for code in checks:
        assert "raise NotImplementedError" in code or "= None" in code, f"{name}: no placeholder in {code[:60]!r}"
    assert any("show_solution(" in code for code in cells)


@pytest.mark.parametrize("name", LESSONS)
def test_asks_quizzes_and_never_answers_one_right_below_it(name):
    cells = load(name)["cells"]
    asked = [index for index, cell in enumerate(cells) if cell["cell_type"] == "code" and quiz_keys(source(cell))]
    assert asked, f"{name} asks no quiz"
    for index in asked[:-1] if asked[-1] == len(cells) - 1 else asked:
        below = cells[index + 1]
        assert below["cell_type"] == "markdown" or quiz_keys(source(below)), (
            f"{name}: the code right below quiz {quiz_keys(source(cells[index]))} would show its answer when run")


# Cells that show a quiz's answer (code that prints it, text that states it): the quiz must come first, and not
# right above them.
SPOILERS = [
    ("03_the_residual_block.ipynb", "same_padding_shape", r'print\("out:"'),
    ("03_the_residual_block.ipynb", "zero_init_identity", r"nn\.init\.zeros_\(bn2\.weight\)|exactly\* the identity"),
    ("03_the_residual_block.ipynb", "zero_weight_conv", r"conv\.bias\.fill_\(1\.0\)|Exactly 2\.0"),
    ("05_plain_vs_residual.ipynb", "training_loss_curves", r"\btrain\(|plot_loss_curves\("),
    ("09_from_block_to_network.ipynb", "resnet_depth_formula", r"6 \* n \+ 2"),
    ("09_from_block_to_network.ipynb", "option_a_parameters", r"count_parameters\(plain20\)|The same number"),
]


@pytest.mark.parametrize("name, key, pattern", SPOILERS, ids=[key for _, key, _ in SPOILERS])
def test_quiz_is_asked_before_the_lesson_shows_its_answer(name, key, pattern):
    cells = load(name)["cells"]
    asked = next(index for index, cell in enumerate(cells)
                 if cell["cell_type"] == "code" and key in quiz_keys(source(cell)))
    showing = [index for index, cell in enumerate(cells) if re.search(pattern, source(cell))]
    assert showing, f"{name}: nothing matches {pattern!r}; update this test"
    assert min(showing) > asked + 1, f"{name}: cell {min(showing)} shows the answer of quiz {key!r} (cell {asked})"


def test_quiz_keys_used_in_lessons_exist_and_every_question_is_used():
    questions = load_questions()
    used = {}
    for name in LESSONS:
        for code in code_cells(load(name)):
            for key in quiz_keys(code):
                assert key in questions, f"{name} asks for a missing quiz {key!r}"
                assert key not in used, f"quiz {key!r} is used in both {used.get(key)} and {name}"
                used[key] = name
    assert set(used) == set(questions), f"questions no lesson uses: {sorted(set(questions) - set(used))}"


@pytest.mark.parametrize("name", LESSONS)
def test_models_and_tensors_go_to_the_device(name):
    """Every model and tensor a lesson creates is put on `device`, so the lesson runs unchanged on a GPU."""
    for code in code_cells(load(name)):
        if "check_" in code:
            continue  # an exercise: the check runs the learner's layer wherever its weights are
        for line in code.splitlines():
            if "= cifar_style_net(" in line or "= nn.Conv2d(" in line or "= nn.BatchNorm2d(" in line:
                assert ".to(device)" in line, f"{name}: {line.strip()!r} is not moved to `device`"
            if any(f"torch.{make}(" in line for make in ("randn", "ones", "zeros", "tensor")):
                assert "device=device" in line, f"{name}: {line.strip()!r} is not created on `device`"
