"""Helpers for the tests of the graded assignment (source/residual_blocks): build submissions, grade them.

Two graders:

* `grade_with_nbgrader` is the real pipeline: a temporary course (a copy of the repository's nbgrader_config.py
  and source/), `nbgrader generate_assignment`, the submissions under submitted/<student>/, one `nbgrader
  autograde` per process for all of its students (so that nbgrader starts once), and the scores read back from
  the gradebook with nbgrader's API.
* `grade_in_process` runs the master copy's cells with some answer cells replaced, in this Python process: no
  kernel, no nbgrader, a fraction of a second. It gives quick, readable failures while the notebook is edited,
  and it is how the helper package's objects are tried against the hidden tests.
"""
import ast
import contextlib
import functools
import io
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENT = "residual_blocks"
NOTEBOOK = "residual_blocks"  # the notebook's name without .ipynb
SOURCE_DIR = REPO / "source" / ASSIGNMENT
RELEASE_DIR = REPO / "release" / ASSIGNMENT
SOURCE_NB = SOURCE_DIR / f"{NOTEBOOK}.ipynb"
RELEASE_NB = RELEASE_DIR / f"{NOTEBOOK}.ipynb"
BIN = Path(sys.executable).parent

# The graded contract: each name is defined in the answer cell whose grade_id is that name.
GRADED = ("conv_output_size", "make_shortcut", "ResidualBlock", "PlainBlock", "build_network", "train",
          "plot_loss_curves")
# Graded parts that the lessons do with the helper package's own train and plot_loss_curves, openly: the lessons and
# the package may use these names, and the hidden tests refuse an answer that runs the package's code instead.
LESSON_TOOLS = ("train", "plot_loss_curves")
# The names that no lesson and no module of the helper package may define: those solutions are the learner's alone.
SECRET = tuple(name for name in GRADED if name not in LESSON_TOOLS)
# The later parts use the earlier ones. Their visible tests run on the learner's own earlier answers; their hidden
# tests on the reference answers (the grader binds them for the while), so each part is graded on its own.
DOWNSTREAM = {
    "conv_output_size": (),
    "make_shortcut": ("ResidualBlock", "build_network"),
    "ResidualBlock": ("build_network",),
    "PlainBlock": ("build_network",),
    "build_network": (),
    "train": (),
    "plot_loss_curves": (),
}
ALLOWED_IMPORTS = {"torch", "numpy", "matplotlib"}
SOLUTION_MARKERS = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")


def nbgrader_meta(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def read_notebook(path):
    return nbformat.read(str(path), as_version=4)


def answer_cells(nb):
    """grade_id -> cell, for the autograded answer (solution) code cells."""
    return {nbgrader_meta(c)["grade_id"]: c for c in nb.cells
            if c.cell_type == "code" and nbgrader_meta(c).get("solution")}


def graded_test_cells(nb):
    """grade_id -> (the graded part it tests, points, whether it is hidden: not one of the visible tests the learner
    runs), in notebook order. A test cell tests the part of the answer cell above it."""
    part, cells = None, {}
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type != "code":
            continue
        if meta.get("solution") and meta.get("grade_id") in GRADED:
            part = meta["grade_id"]
        elif meta.get("grade") and not meta.get("solution"):
            cells[meta["grade_id"]] = (part, float(meta["points"]), not cell.source.startswith("# Visible tests"))
    return cells


@functools.cache
def _source_test_cells():
    """graded_test_cells of the master copy, read once (read-only: the packing of the wrong solutions asks often)."""
    return types.MappingProxyType(graded_test_cells(read_notebook(SOURCE_NB)))


def cells_of(parts, nb=None, hidden=None):
    """The grade ids of the test cells of these graded parts (only hidden or only visible ones if asked)."""
    cells = graded_test_cells(nb) if nb else _source_test_cells()
    return {grade_id for grade_id, (part, _, has_hidden) in cells.items()
            if part in parts and (hidden is None or hidden == has_hidden)}


def affected_cells(parts, nb=None):
    """The test cells that answers to these parts can change: their own, and the visible tests of later parts."""
    later = set().union(*(DOWNSTREAM[part] for part in parts)) - set(parts) if parts else set()
    return cells_of(parts, nb) | cells_of(later, nb, hidden=False)


def marked_lines(source, what, min_length=25):
    """The lines (stripped) of at least `min_length` characters between `### BEGIN <what>` and `### END <what>`."""
    lines, inside = [], False
    for line in source.splitlines():
        if f"BEGIN {what}" in line:
            inside = True
        elif f"END {what}" in line:
            inside = False
        elif inside and len(line.strip()) >= min_length:
            lines.append(line.strip())
    return lines


def conv_size(size, kernel_size, stride=1, padding=0):
    """The size of a convolution's output (part 1's formula)."""
    return (size + 2 * padding - kernel_size) // stride + 1


def strip_solution_markers(source):
    return "\n".join(line for line in source.splitlines() if not SOLUTION_MARKERS.match(line))


def reference_answers():
    """The master copy's solutions, as a learner would type them (without the nbgrader markers)."""
    return {gid: strip_solution_markers(cell.source) for gid, cell in answer_cells(read_notebook(SOURCE_NB)).items()}


def submission(answers, written_answer=None):
    """The released notebook with some answer cells replaced, as a learner would submit it."""
    nb = read_notebook(RELEASE_NB)
    cells = answer_cells(nb)
    unknown = set(answers) - set(cells)
    assert not unknown, f"no answer cell with grade_id {sorted(unknown)} in {RELEASE_NB}"
    for grade_id, source in answers.items():
        cells[grade_id].source = source.strip("\n")
    if written_answer is not None:
        for cell in nb.cells:
            if cell.cell_type == "markdown" and nbgrader_meta(cell).get("solution"):
                cell.source = written_answer
    return nb


# ------------------------------------------------------------------------------------------------ in-process

SEED = 20_261_206  # the probes' seed in-process; the grader draws a new one for every run


@dataclass
class InProcessResult:
    failures: dict  # grade_id of a test cell -> "AssertionError: message", for the cells that failed
    passed: set  # grade ids of the test cells that passed
    seconds: float


@functools.cache
def grading():
    from autograde.judging import Grading
    return Grading(SOURCE_DIR / "grading")


def _observe_notebook(answers, extra_globals, seed):
    """grade_id -> raw observations: the master copy's locked and answer cells run in order in one namespace (with
    `answers` replacing answer cells), each test cell's probe run in its place, as the grader's kernel does."""
    namespace, observed = {"__name__": "__main__"}, {}
    for cell in read_notebook(SOURCE_NB).cells:
        meta = nbgrader_meta(cell)
        grade_id = meta.get("grade_id")
        if cell.cell_type != "code" or grade_id is None:
            continue
        if meta.get("grade") and not meta.get("solution"):
            namespace.update(extra_globals or {})
            observed[grade_id] = grading().observe_here(grade_id, namespace, seed)
            continue
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                exec(compile(answers.get(grade_id, cell.source), f"<cell {grade_id}>", "exec"), namespace)  # noqa: S102
            except Exception:  # noqa: BLE001 - a failing answer cell is the answer's problem, as in a kernel
                pass
    return observed


@functools.cache
def _reference(seed):
    return _observe_notebook({}, None, seed)


def grade_in_process(answers=None, extra_globals=None, seed=SEED):
    """Grade the master copy with `answers` (grade_id -> source) replacing answer cells, in this Python process: the
    probes run here instead of in a kernel, the judges decide as they do in the grader. `extra_globals` are bound
    before each test's probe (to try objects from elsewhere in place of the learner's)."""
    import matplotlib
    matplotlib.use("Agg")
    import torch
    threads, rng, dtype = torch.get_num_threads(), torch.get_rng_state(), torch.get_default_dtype()  # (the notebook may
    # change them)
    reference = _reference(seed)
    start = time.process_time()
    observed = _observe_notebook(answers or {}, extra_globals, seed)
    torch.set_default_dtype(dtype)
    failures, passed = {}, set()
    for grade_id, raw in observed.items():
        verdict = grading().judge(grade_id, raw, reference[grade_id], seed)
        if verdict.passed:
            passed.add(grade_id)
        else:
            failures[grade_id] = f"AssertionError: {verdict.message}"
    torch.set_num_threads(threads)
    torch.set_rng_state(rng)
    return InProcessResult(failures, passed, time.process_time() - start)


# ------------------------------------------------------------------------------------------ nbgrader pipeline

def nbgrader_env():
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # nbgrader runs alembic and the kernel from PATH
    env.pop("JUPYTER_CONFIG_DIR", None)
    return env


def nbgrader(args, cwd, check=True):
    result = subprocess.run([str(BIN / "nbgrader"), *args], cwd=cwd, env=nbgrader_env(), text=True,
                            capture_output=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-5000:]}")
    return result


def new_course(root):
    """A course folder like the repository (same nbgrader_config.py, same source/), with its own gradebook."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    # The repository's config puts the course root, gradebook and exchange next to the config file itself.
    shutil.copy2(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    shutil.copytree(SOURCE_DIR, root / "source" / ASSIGNMENT)
    nbgrader(["generate_assignment", ASSIGNMENT, "--force"], cwd=root)
    return root


def write_submission(course, student, nb):
    folder = Path(course) / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(folder / f"{NOTEBOOK}.ipynb"))


def autograded_path(course, student):
    return Path(course) / "autograded" / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb"


def autograde_student(course, student, attempts=2):
    """`nbgrader autograde` for one student (again if a kernel fails to start); returns the CPU seconds it took."""
    target = autograded_path(course, student)
    for _ in range(attempts):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = nbgrader(["autograde", ASSIGNMENT, "--force", "--student", student], cwd=course, check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if result.returncode == 0 and target.exists():
            return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    raise RuntimeError(f"nbgrader autograde failed for {student} in {course}:\n{result.stderr[-5000:]}")


def read_scores(course, students):
    """student -> {grade_id: (score, max_score, cell_type)} from the course's gradebook."""
    from nbgrader.api import Gradebook
    scores = {}
    with Gradebook(f"sqlite:///{Path(course) / 'gradebook.db'}") as gradebook:
        for student in students:
            notebook = gradebook.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student)
            scores[student] = {g.name: (g.score, g.max_score, g.cell_type) for g in notebook.grades}
    return scores


def autograded_notebook(course, student):
    return read_notebook(autograded_path(course, student))


@dataclass
class PipelineResult:
    scores: dict  # student -> {grade_id: (score, max_score, cell_type)}
    courses: dict  # student -> its course folder
    cpu_seconds: float  # nbgrader and its kernels, all processes together
    wall_seconds: float
    logs: list

    def autograded(self, student):
        return autograded_notebook(self.courses[student], student)


def grade_with_nbgrader(submissions, workdir, processes=1):
    """Grade {student: notebook} through `nbgrader autograde`, in `processes` courses side by side."""
    workdir = Path(workdir)
    students = list(submissions)
    groups = [students[i::processes] for i in range(processes) if students[i::processes]]
    courses, running = {}, []
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall_start = time.monotonic()
    for index, group in enumerate(groups):
        course = new_course(workdir / f"course{index}")
        for student in group:
            write_submission(course, student, submissions[student])
            courses[student] = course
        log = open(course / "autograde.log", "w")  # noqa: SIM115 - closed below
        process = subprocess.Popen([str(BIN / "nbgrader"), "autograde", ASSIGNMENT, "--force"], cwd=course,
                                   env=nbgrader_env(), stdout=log, stderr=subprocess.STDOUT)
        running.append((process, log, course))
    logs = []
    for process, log, course in running:
        process.wait()
        log.close()
        logs.append((course / "autograde.log").read_text())
    # Kernels started side by side can, rarely, pick the same TCP port; nbgrader then drops that submission.
    # Those are graded again, one at a time.
    for student in students:
        if not autograded_path(courses[student], student).exists():
            autograde_student(courses[student], student)
    wall = time.monotonic() - wall_start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    scores = {}
    for course in {id(c): c for c in courses.values()}.values():
        scores.update(read_scores(course, [s for s in students if courses[s] == course]))
    return PipelineResult(scores, courses, cpu, wall, logs)


def autograded_score(grades):
    """(score, max score) over the autograded (code) grade cells."""
    code = [(score, maximum) for score, maximum, cell_type in grades.values() if cell_type == "code"]
    return sum(s for s, _ in code), sum(m for _, m in code)


def lost_points(grades):
    """The grade ids of the autograded cells that did not get full marks."""
    return {gid for gid, (score, maximum, cell_type) in grades.items() if cell_type == "code" and score < maximum}


# ------------------------------------------------------------------------------------------------ source text

def python_of_cell(source):
    """A code cell's source as plain Python (IPython magics and shell escapes turned into calls)."""
    from IPython.core.inputtransformer2 import TransformerManager
    return TransformerManager().transform_cell(source)


def defined_names(tree):
    """Every function and class name defined anywhere in an AST, with its node."""
    return [(node.name, node) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def imported_modules(tree):
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.add((node.module or "").split(".")[0] if node.level == 0 else ".")
    return modules


def code_strings(tree):
    """String constants in an AST that are Python code defining something (e.g. worked solutions kept as text),
    parsed, with only their imports, functions and classes kept (so that running them does nothing else)."""
    found = []
    kept = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and ("def " in node.value
                                                                              or "class " in node.value):
            try:
                parsed = ast.parse(node.value)
            except SyntaxError:
                continue
            parsed.body = [statement for statement in parsed.body if isinstance(statement, kept)]
            if parsed.body:
                found.append(parsed)
    return found


def judge_forged(forgers, seed=SEED):
    """The verdicts on an EMPTY submission (the release's answer cells) whose probes' observations come from
    *forgers* (grade_id -> fn(probe module, namespace, seed)) where they have one, as a hijacked kernel sends them."""
    import json

    from autograde.probing import encode

    answers = {grade_id: cell.source for grade_id, cell in answer_cells(read_notebook(RELEASE_NB)).items()}
    real = _observe_notebook(answers, None, seed)
    reference = _reference(seed)
    return {grade_id: grading().judge(grade_id, json.loads(json.dumps(encode(forgers[grade_id](grading().probes, {},
                                                                                              seed))))
                                      if grade_id in forgers else real[grade_id], reference[grade_id], seed)
            for grade_id in real}
