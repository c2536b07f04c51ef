"""`make gpu-check` on a machine without a GPU: it picks CUDA whenever PyTorch sees one, says plainly when it falls
back to the CPU, forces the lessons onto the device it chose, and reports a lesson that missed it."""
import nbformat
import pytest
import torch

from benchmarks import gpu_check


def test_it_picks_cuda_when_pytorch_sees_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "NVIDIA H200")
    device, line = gpu_check.choose_device()
    assert device == "cuda" and "NVIDIA H200" in line and "CPU" not in line


def test_without_a_gpu_it_says_it_runs_on_the_cpu_instead(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    device, line = gpu_check.choose_device()
    assert device == "cpu" and line.startswith("NO GPU") and "CPU timings" in line


def tiny_lesson(folder):
    """A lesson in miniature: the course's set-up, then a tensor on the lesson's device."""
    path = folder / "00_tiny.ipynb"
    cells = ["from resnet_course import start_lesson\ndevice = start_lesson(seed=0)",
             "import torch\nprint(torch.ones(3, device=device).sum().item())"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback on a machine without a GPU")
def test_a_lesson_runs_on_the_device_the_check_chose(tmp_path):
    on_cpu = gpu_check.run_lesson(tiny_lesson(tmp_path), "cpu")
    assert on_cpu["error"] is None and on_cpu["where"].startswith("Running on cpu") and on_cpu["peak"] == 0
    # Forced onto a GPU this machine lacks, the lesson fails rather than quietly running on the CPU.
    on_cuda = gpu_check.run_lesson(tiny_lesson(tmp_path), "cuda")
    assert on_cuda["error"] and "CUDA" in on_cuda["error"]
    report = gpu_check.lesson_lines([on_cpu, on_cuda], "cuda")
    assert "NOT ON THE GPU: Running on cpu" in report[1] and on_cuda["error"] in report[2]


def test_grading_report_wants_full_autograded_marks_on_the_chosen_device():
    assert gpu_check.autograded_points() == 25   # the written answer's 2 points wait for a person
    rows = [{"student_id": "reference00", "score": "25.0", "max_score": "27.0", "status": "ok"},
            {"student_id": "untouched", "score": "0.0", "max_score": "27.0", "status": "ok"}]
    on_gpu = {"reference00": "<pre>torch 2.13.0, running on cuda</pre>", "untouched": "running on cuda"}
    lines, fine = gpu_check.grading_lines(10.0, rows, on_gpu, "cuda", 25)
    assert fine and "hidden tests ran on: cuda" in lines[1]
    lines, fine = gpu_check.grading_lines(10.0, rows, {**on_gpu, "reference00": "running on cpu"}, "cuda", 25)
    assert not fine and "expected full marks on cuda" in lines[1]
    lines, fine = gpu_check.grading_lines(10.0, [{**rows[0], "score": "24.0"}], on_gpu, "cuda", 25)
    assert not fine
