"""Probes and judges (autograde.probing, autograde.judging, autograde.execute.JudgedExecute) on tiny notebooks.

The codec and the judges' side run in this process; the executor runs real kernels (without isolation: the
sandbox has tests of its own), with a tiny judged assignment whose probes and judges are written here."""
import json
import sys
import textwrap

import numpy as np
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook
from traitlets.config import Config

from autograde import execute
from autograde.execute import JudgedExecute
from autograde.judging import Grading, Malformed, Observations, check, decode
from autograde.probing import encode

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the supervisor uses Linux features")


# -- the transport -------------------------------------------------------------------------------------------

def roundtrip(value):
    return decode(json.loads(json.dumps(encode(value))))


def test_observations_travel_as_plain_json_and_come_back_as_arrays():
    sent = {"ints": torch.arange(6).reshape(2, 3), "floats": torch.rand(2, 2, dtype=torch.float64),
            "singles": torch.ones(3), "flags": torch.tensor([True, False]), "numbers": [1, 2.5, float("nan")],
            "half": torch.ones(2, dtype=torch.float16), "nested": {"deep": [np.zeros((0, 4))]}, "scalar": torch.tensor(3)}
    got = roundtrip(sent)
    assert got["ints"].dtype == np.int64 and got["ints"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert got["floats"].dtype == np.float64 and np.array_equal(got["floats"], sent["floats"].numpy())
    assert got["singles"].dtype == np.float32 and got["half"].dtype == np.float32
    assert got["flags"].tolist() == [True, False] and got["scalar"] == 3
    assert got["numbers"][:2] == [1, 2.5] and np.isnan(got["numbers"][2])
    assert got["nested"]["deep"][0].shape == (0, 4)
    assert roundtrip({"module": torch.nn.ReLU()})["module"].startswith("ReLU(")  # only its text form travels


@pytest.mark.parametrize("forged, why", [
    ({"__array__": "|O", "shape": [1], "data": "AA=="}, "dtype"),  # an object array would need pickle
    ({"__array__": "<f8", "shape": [2], "data": "AAAAAAAAAAA="}, "base64 of its shape"),
    ({"__array__": "<f8", "shape": [-1], "data": ""}, "dtype, shape"),
    ({"__array__": "<f8", "shape": [0, 2 ** 63], "data": ""}, "dtype, shape"),  # numpy could not even reshape it
    ({"__array__": "<f8", "shape": [1], "data": "not base64!"}, "base64"),
    ({"__array__": "<f8", "shape": [1], "data": "A" * 10_000}, "does not fit its shape"),  # refused before decoding
])
def test_malformed_arrays_are_refused(forged, why):
    with pytest.raises(Malformed, match=why):
        decode({"a": [forged]})


def test_observations_larger_than_the_budget_are_refused(monkeypatch):
    from autograde import judging

    monkeypatch.setattr(judging, "MAX_ELEMENTS", 10)
    six = encode(torch.zeros(6))
    decode({"a": six})
    with pytest.raises(Malformed, match="larger than"):
        decode({"a": six, "b": six})


def test_observations_nested_too_deeply_are_refused():
    deep = {}
    for _ in range(40):
        deep = {"d": deep}
    with pytest.raises(Malformed, match="nested"):
        decode(deep)


def test_the_getters_name_what_is_missing_or_of_another_type():
    seen = Observations(decode({"n": 3, "flag": True, "text": "x", "array": encode(torch.zeros(2))}))
    assert seen.integer("n") == 3 and seen.flag("flag") is True and seen.tensor("array").dtype == torch.float64
    for getter, key in ((seen.integer, "flag"), (seen.flag, "n"), (seen.text, "n"), (seen.array, "n"),
                        (seen.integer, "missing")):
        with pytest.raises(Malformed, match=key):
            getter(key)
    with pytest.raises(Malformed, match="shape"):
        seen.array("array", (3,))


# -- a tiny judged assignment --------------------------------------------------------------------------------

PROBES = '''
import torch
from autograde.probing import attempt, need

def inputs(seed):
    return torch.randn(4, generator=torch.Generator().manual_seed(seed))

def test_square(namespace, seed):
    return {"y": attempt("square(x)", need(namespace, "square"), inputs(seed))}

def test_twice(namespace, seed):
    if namespace.get("TWICE"):
        from IPython.display import publish_display_data
        publish_display_data({"application/vnd.autograde.observations+json": {"y": 0}})
    return {"y": 1}

def test_slow(namespace, seed):
    if namespace.get("SLOW"):
        import time
        time.sleep(600)
    return {}

def test_big(namespace, seed):
    return {"y": torch.zeros(100_000 if namespace.get("BIG") else 1)}

def test_cwd(namespace, seed):
    import os
    return {"cwd": os.getcwd(), "files": sorted(os.listdir("."))}

def test_odd(namespace, seed):
    return {"value": namespace.get("ODD")}
'''
JUDGES = '''
import torch
from autograde.judging import check
from . import probes

def test_square(student, reference, seed):
    x = probes.inputs(seed).double()
    check(torch.allclose(student.tensor("y"), x * x), "square(x) should be x * x")
    check(torch.allclose(reference.tensor("y"), x * x), "the reference is wrong")
    return "square squares"

def test_twice(student, reference, seed):
    return "never"

test_slow = test_big = test_odd = test_twice

def test_cwd(student, reference, seed):
    return "in " + student.text("cwd") + ": " + ", ".join(student.items("files"))
'''


@pytest.fixture
def course(tmp_path):
    grading = tmp_path / "source" / "tiny" / "grading"
    grading.mkdir(parents=True)
    (grading / "probes.py").write_text(PROBES)
    (grading / "judges.py").write_text(JUDGES)
    return tmp_path


def _cell(source, grade_id, grade=False, solution=False):
    cell = new_code_cell(source)
    cell.metadata.nbgrader = {"grade": grade, "grade_id": grade_id, "locked": not solution, "solution": solution,
                              "schema_version": 3, **({"points": 1} if grade else {})}
    return cell


def _notebook(answer, *tests, before_tests=""):
    cells = [_cell("import torch", "setup"), _cell(answer, "square", solution=True)]
    if before_tests:
        cells.append(new_code_cell(before_tests))
    return new_notebook(cells=cells + [_cell(test, name, grade=True) for name, test in tests])


def _grade(course, nb, reference=None, **options):
    import nbformat

    reference = reference or _notebook("def square(x):\n    return x * x", *[(c.metadata.nbgrader.grade_id, c.source)
                                                                             for c in nb.cells if c.metadata.get(
                                                                                 "nbgrader", {}).get("grade")])
    path = course / "source" / "tiny" / "tiny.ipynb"
    nbformat.write(reference, path)
    config = Config()
    config.IsolatedKernelManager.isolation = "none"
    config.JudgedExecute.update({"timeout": 300, "grading_dir": str(course / "source" / "tiny" / "grading"),
                                 "reference_notebook": str(path), **options})
    grader = JudgedExecute(config=config)
    graded, _ = grader.preprocess(nb, {"metadata": {"path": str(course)}})
    return {c.metadata.nbgrader.grade_id: c.outputs for c in graded.cells if c.metadata.get("nbgrader", {}).get(
        "grade")}, grader.report


def _verdict(outputs):
    assert len(outputs) == 1, outputs
    return ("passed", outputs[0].text) if outputs[0].output_type == "stream" else ("failed", outputs[0].evalue)


@pytest.mark.slow
@linux
def test_a_test_cell_never_runs_in_the_kernel_its_probe_does(course):
    # The test cell's own code would fail, print and raise: it never runs; the judge decides from the probe.
    test = "print('the test cell ran')\nraise AssertionError('the test cell ran')"
    nb = _notebook("def square(x):\n    return x * x", ("test_square", test))
    outputs, report = _grade(course, nb)
    assert _verdict(outputs["test_square"]) == ("passed", "square squares\n")
    assert nb.cells[-1].source == test and {"iopub.execute_input", "shell.execute_reply"} <= set(
        nb.cells[-1].metadata.execution)  # the test cell, with the times its probe ran
    outputs, _ = _grade(course, _notebook("def square(x):\n    return x + x", ("test_square", "pass")))
    assert _verdict(outputs["test_square"]) == ("failed", "square(x) should be x * x")


@pytest.mark.slow
@linux
def test_what_the_kernel_prints_in_a_test_cell_counts_for_nothing(course):
    # A cell of the student's own publishes observations and prints "passed": neither reaches the verdict.
    forged = ("from IPython.display import publish_display_data\n"
              "publish_display_data({'application/vnd.autograde.observations+json': {'y': [1.0]}})\n")
    outputs, _ = _grade(course, _notebook("def square(x):\n    raise ValueError('no')", ("test_square", "pass"),
                                          before_tests=forged))
    assert _verdict(outputs["test_square"]) == ("failed", "square(x) raised ValueError: no")


@pytest.mark.slow
@linux
def test_an_answer_sent_twice_or_too_large_or_never_fails(course):
    outputs, report = _grade(course, _notebook("def square(x):\n    return x * x", ("test_twice", "pass"),
                                          ("test_big", "pass"), ("test_slow", "pass"),
                                          before_tests="TWICE = BIG = SLOW = True"),
                        max_observation_bytes=100_000,  # and only the slow probe gets a short time limit
                        timeout_func=lambda cell: 2 if "'test_slow'" in cell.source else 300)
    assert "more than once" in _verdict(outputs["test_twice"])[1] and "tampering detected" in report["statuses"]
    assert "larger than the grader accepts" in _verdict(outputs["test_big"])[1]
    assert _verdict(outputs["test_slow"]) == ("failed", "this test did not finish: it ran past the time limit")


@pytest.mark.slow
@linux
def test_a_probe_says_what_stopped_it_whatever_the_students_code_raised(course):
    answer = ("def square(x):\n    raise SystemExit('bye')\n\n"
              "class Odd:\n    def __repr__(self):\n        raise RuntimeError('no repr')\n\nODD = Odd()")
    nb = _notebook(answer, ("test_square", "pass"), ("test_odd", "pass"))
    nb.cells += [new_code_cell("import IPython.display\nIPython.display.publish_display_data = lambda *a, **k: None"),
                 _cell("pass", "test_twice", grade=True)]
    outputs, _ = _grade(course, nb)
    assert _verdict(outputs["test_square"]) == ("failed", "the test stopped: SystemExit: bye")
    assert _verdict(outputs["test_odd"]) == ("failed", "the test stopped: RuntimeError: no repr")
    assert _verdict(outputs["test_twice"]) == ("failed", "this test ran, but its probe sent nothing back: the "
                                                         "notebook's code interfered with it")


@pytest.mark.slow
@linux
def test_a_kernel_that_sends_what_the_grader_cannot_read_is_stopped(course):
    # A kernel holds the key that signs its messages: it can send a display whose content is no mapping.
    forged = ("kernel = get_ipython().kernel\n"
              "kernel.session.send(kernel.iopub_socket, 'display_data', b'[1]', parent=kernel.get_parent())\n")
    outputs, report = _grade(course, _notebook("def square(x):\n    return x * x", ("test_square", "pass"),
                                               before_tests=forged))
    status, message = _verdict(outputs["test_square"])
    assert status == "failed" and message.startswith("this test did not run: the kernel sent a message the grader "
                                                     "could not read (AttributeError"), message
    assert "tampering detected" in report["statuses"]


@pytest.mark.slow
@linux
def test_a_kernel_is_sent_the_probes_once_and_a_notebook_that_drops_them_fails_the_tests_after(course, monkeypatch):
    sent = []
    probe_code = Grading.probe_code
    monkeypatch.setattr(Grading, "probe_code", lambda self, grade_id, seed, limit, with_source=True: sent.append(
        (grade_id, with_source)) or probe_code(self, grade_id, seed, limit, with_source))
    nb = _notebook("def square(x):\n    return x * x", ("test_slow", "pass"), ("test_square", "pass"),
                   before_tests="SLOW = True")
    nb.cells += [new_code_cell("import autograde.probing\nautograde.probing._MODULES.clear()"),
                 _cell("pass", "test_big", grade=True)]
    outputs, _ = _grade(course, nb, timeout_func=lambda cell: 2 if "'test_slow'" in cell.source else 300)
    # The slow probe was interrupted: the source goes again with the next one, and never after.
    assert sent[-3:] == [("test_slow", True), ("test_square", True), ("test_big", False)]
    assert _verdict(outputs["test_square"]) == ("passed", "square squares\n")
    assert _verdict(outputs["test_big"]) == ("failed", "the test stopped: ProbeError: the grader's probes are gone "
                                                       "from the kernel: the notebook's code removed them")


def test_rehearsing_judges_every_test_of_the_reference_once(course, monkeypatch):
    grading = Grading(course / "source" / "tiny" / "grading")
    seen = []
    for name in ("test_square", "test_twice"):
        monkeypatch.setattr(grading.judges, name, lambda student, reference, seed, name=name: seen.append(
            (name, student.get("y"), reference.get("y"), seed)))
    grading.rehearse({"test_square": {"y": 2}, "test_twice": {"y": 3}, "not_a_test": {}}, 7)
    assert seen == [("test_square", 2, 2, 7), ("test_twice", 3, 3, 7)]


def test_every_grading_run_draws_its_own_seed():
    # nbgrader's Autograde makes a JudgedExecute for every notebook, twice, registering it with the exporter it made
    # for the whole run (formgrader's button included): the run's notebooks share a seed, the next run draws another.
    from nbconvert.exporters import NotebookExporter

    def seeds(exporter, notebooks=3):
        for _ in range(notebooks):
            exporter.register_preprocessor(JudgedExecute, enabled=True)
        return {pp.run_seed() for pp in exporter._preprocessors if isinstance(pp, JudgedExecute)}

    first, second = seeds(NotebookExporter()), seeds(NotebookExporter())
    assert len(first) == len(second) == 1 and first != second
    assert len({JudgedExecute().run_seed() for _ in range(5)}) == 5 and JudgedExecute(seed=7).run_seed() == 7


@pytest.mark.slow
@linux
def test_the_reference_runs_once_per_seed(course, monkeypatch):
    runs = []
    real = JudgedExecute.observe_reference
    monkeypatch.setattr(JudgedExecute, "observe_reference", lambda self, *a: runs.append(1) or real(self, *a))
    monkeypatch.setattr(execute, "_REFERENCES", {})
    nb = _notebook("def square(x):\n    return x * x", ("test_square", "pass"))
    _grade(course, nb, seed=5)
    _grade(course, _notebook("def square(x):\n    return x", ("test_square", "pass")), seed=5)
    assert len(runs) == 1
    _grade(course, nb, seed=6)
    assert len(runs) == 2


@pytest.mark.slow
@linux
def test_a_reference_that_fails_its_own_probe_stops_the_grading(course):
    nb = _notebook("def square(x):\n    return x * x", ("test_square", "pass"))
    with pytest.raises(RuntimeError, match="fail their own probes: test_square: square.x. raised ZeroDivisionError"):
        _grade(course, nb, reference=_notebook("def square(x):\n    return 1 / 0", ("test_square", "pass")))


def test_a_test_without_its_judge_is_a_configuration_error(course):
    with pytest.raises(RuntimeError, match="no probe or no judge for the test cells test_cube"):
        _grade(course, _notebook("def square(x):\n    return x * x", ("test_cube", "pass")))


@pytest.mark.slow
@linux
def test_the_kernel_works_in_a_new_folder_with_copies_of_the_data_files(course):
    (course / "data.csv").write_text("1,2\n")
    (course / "secret.txt").write_text("the grader's\n")
    (course / "link.csv").symlink_to(course / "secret.txt")
    outputs, _ = _grade(course, _notebook("def square(x):\n    return x * x", ("test_cwd", "pass")))
    status, message = _verdict(outputs["test_cwd"])
    folder, files = message.strip().split(": ")
    assert folder != str(course) and files.split(", ") == ["data.csv", "secret.txt"]  # no link, no notebook, no source/


@pytest.mark.slow
@linux
def test_an_assignment_without_judges_is_graded_as_stock_nbgrader_grades_it(tmp_path):
    config = Config()
    config.IsolatedKernelManager.isolation = "none"
    config.JudgedExecute.grading_dir = str(tmp_path / "none")
    skipped = _cell("assert square(2) == 5", "skipped", grade=True)
    skipped.metadata["tags"] = ["skip-execution"]  # nbclient skips it: no credit for what did not run
    nb = _notebook("def square(x):\n    return x * x", ("right", "assert square(3) == 9"),
                   ("wrong", "assert square(3) == 6"))
    nb.cells.append(skipped)
    graded, _ = JudgedExecute(config=config).preprocess(nb, {})
    errors = [[o.ename for o in c.outputs if o.output_type == "error"] for c in graded.cells[2:]]
    assert errors == [[], ["AssertionError"], ["NotRun"]]


def test_a_judge_that_breaks_fails_the_test_and_tells_the_instructor(course):
    (course / "source" / "tiny" / "grading" / "judges.py").write_text(textwrap.dedent('''
        def test_square(student, reference, seed):
            return 1 / 0
    '''))
    grading = Grading(course / "source" / "tiny" / "grading")
    verdict = grading.judge("test_square", {"y": 1}, {"y": 1}, 0)
    assert not verdict.passed and "could not judge" in verdict.message and "ZeroDivisionError" in verdict.note


def test_a_stop_says_which_call_failed_and_what_is_undefined(course):
    grading = Grading(course / "source" / "tiny" / "grading")
    stopped = grading.judge("test_square", {"stopped": {"what": "square(x)", "type": "TypeError", "message": "no"}},
                            {}, 0)
    undefined = grading.judge("test_square", {"stopped": {"what": "square", "type": "NameError", "message": "x",
                                                          "undefined": "square"}}, {}, 0)
    assert stopped.message == "square(x) raised TypeError: no"
    assert undefined.message.startswith("square is not defined: the cell that defines it must run")


def test_check_fails_with_its_message():
    check(True, "never shown")
    with pytest.raises(AssertionError, match="shown"):
        check(0, "shown")


def test_a_course_that_requires_judges_refuses_an_assignment_without_them(tmp_path):
    config = Config()
    config.JudgedExecute.update({"grading_dir": str(tmp_path / "none"), "require_judges": True})
    nb = _notebook("def square(x):\n    return x * x", ("right", "# judged by the grader"))
    with pytest.raises(RuntimeError, match="no probes and judges in"):
        JudgedExecute(config=config).preprocess(nb, {})


def test_a_template_of_a_course_that_requires_judges_refuses_an_assignment_without_them_each_time(tmp_path):
    from types import SimpleNamespace

    from autograde import AutogradeError
    from autograde.course import Template

    import nbformat
    from nbformat.v4 import new_markdown_cell, new_notebook

    from autograde_fixtures import mini_source

    config = Config()
    config.JudgedExecute.require_judges = True
    nbformat.write(mini_source(), tmp_path / "tiny.ipynb")
    template = Template(SimpleNamespace(config=config, assignment="tiny", notebook_path=tmp_path / "tiny.ipynb"),
                        tmp_path)
    for _ in range(2):  # a later call must not find None remembered, and grade the stock way
        with pytest.raises(AutogradeError, match="no probes and judges in"):
            template.grading()
    # A notebook without test cells (answers graded by hand, tasks) has nothing to judge, nor to pass by itself.
    task = {"grade_id": "task", "task": True, "points": 2, "locked": True, "grade": False, "solution": False}
    nbformat.write(new_notebook(cells=[new_markdown_cell("Describe it.", metadata={"nbgrader": task})]),
                   tmp_path / "task.ipynb")
    tasks = Template(SimpleNamespace(config=config, assignment="task", notebook_path=tmp_path / "task.ipynb"),
                     tmp_path)
    assert tasks.grading() is None


def test_this_course_requires_judges():
    from pathlib import Path

    from autograde.course import load_course_config

    config = load_course_config(Path(__file__).resolve().parent.parent)
    assert config.JudgedExecute.require_judges is True


@pytest.mark.slow
@linux
def test_comms_and_display_updates_cannot_grow_outputs_past_the_caps(course):
    flood = ("from IPython.display import display\n"
             "handle = display({'text/plain': 'small'}, raw=True, display_id=True)\n"
             "handle.update({'text/plain': 'x' * 3_000_000}, raw=True)\n"
             "from ipykernel.comm import Comm\n"
             "Comm(target_name='jupyter.widget', data={'state': {}})\n"  # no _model_module: nbclient's handler fails
             "Comm(target_name='anything', data={'state': {'blob': 'y' * 3_000_000}})\n")
    nb = _notebook("def square(x):\n    return x * x", ("test_square", "pass"), before_tests=flood)
    outputs, report = _grade(course, nb, max_output_bytes=100_000)
    assert _verdict(outputs["test_square"]) == ("passed", "square squares\n")
    sizes = [len(json.dumps(o)) for o in nb.cells[2].outputs]
    assert sizes and max(sizes) < 10_000, sizes
