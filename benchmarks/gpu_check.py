"""`make gpu-check`: every lesson and the grading of the assignment on CUDA, with timings.

Meant for the day a machine with a GPU is at hand. Each lesson runs top to bottom in a fresh kernel with
RESNET_COURSE_DEVICE=cuda (so that a kernel which cannot see the GPU fails instead of quietly using the CPU), and
prints where it ran, its time and the GPU memory it held at most. Then copies of the assignment's reference
solution and one untouched copy are graded with `python -m autograde grade`; their feedback says which device
the hidden tests ran on. Without a GPU everything runs on the CPU instead, and every line says so.

    python -m benchmarks.gpu_check [--lessons 01 05] [--copies N] [--no-grading]
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import torch

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
ASSIGNMENT = "residual_blocks"
# Appended to each lesson: the most GPU memory its tensors held, read inside the lesson's own kernel.
PEAK_CELL = ("import torch\n"
             "print('gpu-check peak bytes:', torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0)")


def choose_device():
    """("cuda", a line naming the GPU) when PyTorch sees one, else ("cpu", a line saying that this is a fallback)."""
    if torch.cuda.is_available():
        return "cuda", f"CUDA: {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return "cpu", ("NO GPU: PyTorch sees no CUDA device here, so this runs everything on the CPU instead, as a dry "
                   "run of the check. The timings below are CPU timings, not GPU ones.")


def lesson_environment(device):
    """The environment of a lesson's kernel: the device forced, the course importable from this checkout."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "RESNET_COURSE_DEVICE": device, "PYTHONPATH": path, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


def run_lesson(path, device, timeout=600):
    """Run one notebook top to bottom; returns its wall time, where start_lesson said it ran, its GPU peak, error."""
    import nbclient

    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(PEAK_CELL))
    started, error = time.perf_counter(), None
    client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute(env=lesson_environment(device))
    except Exception as exc:  # noqa: BLE001 - a failing lesson is a result of the check, not its end
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
    printed = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for output in cell.get("outputs", []) if output.get("output_type") == "stream")
    where = next((line for line in printed.splitlines() if line.startswith("Running on")), "no start_lesson line")
    peak = next((int(line.rsplit(" ", 1)[1]) for line in printed.splitlines()
                 if line.startswith("gpu-check peak bytes:")), None)
    return {"lesson": path.stem, "seconds": time.perf_counter() - started, "where": where, "peak": peak,
            "error": error}


def lesson_lines(results, device):
    lines = [f"{'lesson':28s} {'time':>7s}  {'GPU peak':>9s}  where / error"]
    for r in results:
        peak = f"{r['peak'] / 2**20:,.0f} MiB" if r["peak"] else "-"
        note = r["error"] or r["where"]
        if not r["error"] and device == "cuda" and "cuda" not in r["where"]:
            note = f"NOT ON THE GPU: {r['where']}"
        lines.append(f"{r['lesson']:28s} {r['seconds']:6.1f}s  {peak:>9s}  {note}")
    return lines


def grade_copies(copies, workdir):
    """Grade `copies` reference solutions and one untouched release; returns (wall seconds, rows, feedback texts)."""
    from benchmarks.grading import reference_submission

    notebook = f"{ASSIGNMENT}.ipynb"
    folder = workdir / "class"
    folder.mkdir()
    solved = reference_submission(REPO, ASSIGNMENT, notebook)
    for index in range(copies):
        nbformat.write(solved, folder / f"reference{index:02d}.ipynb")
    nbformat.write(nbformat.read(REPO / "release" / ASSIGNMENT / notebook, as_version=4), folder / "untouched.ipynb")
    out = workdir / "out"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "autograde", "grade", str(folder), "--assignment", ASSIGNMENT,
                           "--out", str(out), "--course", str(REPO), "--no-progress"],
                          cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"python -m autograde grade failed ({done.returncode}):\n{done.stderr[-3000:]}")
    with open(out / "grades.csv", newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    feedback = {path.stem: path.read_text(encoding="utf-8") for path in (out / "feedback").glob("*.html")}
    return seconds, rows, feedback


def autograded_points():
    """The points of the assignment's test cells: what a correct solution gets before any hand grading."""
    source = nbformat.read(REPO / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    return sum(cell.metadata["nbgrader"].get("points", 0) for cell in source.cells
               if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade"))


def grading_lines(seconds, rows, feedback, device, full_marks):
    """The report of the grading, and whether every reference copy got `full_marks` with its tests on `device`."""
    lines = [f"graded {len(rows)} submissions in {seconds:.1f} s ({seconds / max(len(rows), 1):.1f} s each, "
             "wall clock, including the grader's start)"]
    fine = bool(rows)
    for row in sorted(rows, key=lambda r: r["student_id"]):
        text = feedback.get(row["student_id"], "")
        ran = "cuda" if "running on cuda" in text else "cpu" if "running on cpu" in text else "?"
        problem = ""
        if row["student_id"] != "untouched" and (ran != device or float(row["score"]) != full_marks):
            problem, fine = f"  <- expected full marks on {device}", False
        lines.append(f"  {row['student_id']:12s} {row['score']:>5s}/{row['max_score']:<3s} {row['status']:10s} "
                     f"hidden tests ran on: {ran}{problem}")
    return lines, fine


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--lessons", nargs="*", default=None, metavar="PREFIX", help="only these lessons (01, 05, ...)")
    parser.add_argument("--copies", type=int, default=4, help="reference solutions to grade (default 4)")
    parser.add_argument("--no-grading", action="store_true", help="run the lessons only")
    args = parser.parse_args(argv)
    device, line = choose_device()
    print(line, flush=True)
    lessons = sorted(NOTEBOOKS.glob("*.ipynb"))
    if args.lessons:
        lessons = [path for path in lessons if any(path.name.startswith(prefix) for prefix in args.lessons)]
    results = []
    for path in lessons:
        print(f"  running {path.name} on {device} ...", flush=True)
        results.append(run_lesson(path, device))
    print("\n".join(lesson_lines(results, device)), flush=True)
    failed = [r for r in results if r["error"] or (device == "cuda" and "cuda" not in r["where"])]
    if not args.no_grading:
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as workdir:
            print(f"  grading {args.copies} reference solutions and the untouched release on {device} ...", flush=True)
            seconds, rows, feedback = grade_copies(args.copies, Path(workdir))
        lines, graded_fine = grading_lines(seconds, rows, feedback, device, autograded_points())
        print("\n".join(lines))
        failed += [] if graded_fine else ["grading"]
    if device == "cpu":
        print("Reminder: no GPU was used; run this again where torch.cuda.is_available() is True.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
