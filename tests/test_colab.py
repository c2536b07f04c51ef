"""Every lesson and the completed student notebook run in a bare, Colab-like environment.

The environment holds torch, numpy, matplotlib, scikit-learn and tqdm at the locked versions, ipykernel to run
them, and nothing else; a local, non-editable install of the helper package stands in for the lessons' own
`%pip install` from the repository.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from packaging.requirements import Requirement

from assignment_helpers import reference_answers, submission

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # a fresh virtual environment, and every lesson run in its kernel
COLAB_PACKAGES = ["torch", "numpy", "matplotlib", "scikit-learn", "tqdm", "ipykernel"]
LESSONS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def locked_pins(names):
    wanted = {name.lower() for name in names}
    pins = []
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            if requirement.name.lower() in wanted and (requirement.marker is None or requirement.marker.evaluate()):
                pins.append(f"{requirement.name}{requirement.specifier}")
    return pins


@pytest.fixture(scope="module")
def colab_kernel(tmp_path_factory):
    """A kernel named "colab" running in a fresh virtual environment with only the Colab packages."""
    home = tmp_path_factory.mktemp("colab")
    venv = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = venv / "bin" / "python"
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + locked_pins(COLAB_PACKAGES), check=True)
    subprocess.run(pip + ["--no-deps", "--no-build-isolation", str(ROOT)], check=True, cwd=home)
    spec = home / "jupyter" / "kernels" / "colab"
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab-like", "language": "python",
        "env": {"PYTHONNOUSERSITE": "1", "PYTHONPATH": "",
                "RESNET_COURSE_THREADS": os.environ.get("RESNET_COURSE_THREADS", "1")}}))  # see conftest.py
    previous = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(home / "jupyter")
    yield python
    if previous is None:
        del os.environ["JUPYTER_PATH"]
    else:
        os.environ["JUPYTER_PATH"] = previous


def test_environment_holds_only_the_colab_packages(colab_kernel):
    probe = "import importlib.util as u; print([m for m in ('nbgrader', 'ipywidgets', 'sklearn', 'resnet_course') " \
            "if u.find_spec(m)])"
    found = subprocess.run([colab_kernel, "-c", probe], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONNOUSERSITE": "1", "PYTHONPATH": ""}).stdout
    assert found.strip() == "['sklearn', 'resnet_course']"


def run_in_colab(nb, cwd):
    NotebookClient(nb, kernel_name="colab", timeout=300, resources={"metadata": {"path": str(cwd)}}).execute()
    errors = [output for cell in nb.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
              if output.output_type == "error"]
    assert not errors, f"{errors[0].ename}: {errors[0].evalue}"
    return nb


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_in_a_colab_like_environment(colab_kernel, lesson, tmp_path):
    nb = run_in_colab(nbformat.read(lesson, as_version=4), tmp_path)
    first_code_cell = next(cell for cell in nb.cells if cell.cell_type == "code")
    setup = "".join(output.get("text", "") for output in first_code_cell.get("outputs", []))
    assert "pip" not in setup.lower(), "the set-up cell installed the package although it was there"


def test_completed_student_notebook_runs_in_a_colab_like_environment(colab_kernel, tmp_path):
    run_in_colab(submission(reference_answers()), tmp_path)
