"""What grading costs, part by part: the master copy of the assignment (its reference answers), with each test cell
replaced by its probe and its judge, executed top to bottom in one fresh kernel pinned to one CPU core, as a
grader's kernel runs a submission (the grader runs the judges in its own process: here they run in the kernel, to
count them too).

Every cell's time comes from nbclient's own timestamps (the kernel's execute_input to its execute_reply). A cell
belongs to the graded part whose answer cell comes last above it: its test cells, and the ungraded cells after
them (the training runs and plots that use the part), which a grader runs as well.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.lessons import bench_core

SOURCE = Path(__file__).resolve().parent.parent / "source" / "residual_blocks" / "residual_blocks.ipynb"

# Runs the notebook and prints, as JSON, [[grade id or cell id, is a test cell, seconds], ...] in notebook order.
RUNNER = r"""
import datetime, json, sys
import nbclient, nbformat
notebook = nbformat.read(sys.argv[1], as_version=4)
nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3", record_timing=True,
                        resources={"metadata": {"path": sys.argv[2]}}).execute()
rows = []
for cell in notebook.cells:
    if cell.cell_type != "code":
        continue
    timing, meta = cell.metadata.get("execution", {}), cell.metadata.get("nbgrader", {})
    start, end = (datetime.datetime.fromisoformat(timing[k].replace("Z", "+00:00"))
                  for k in ("iopub.execute_input", "shell.execute_reply"))
    test = bool(meta.get("grade")) and not meta.get("solution")
    rows.append([meta.get("grade_id", cell.get("id")), test, (end - start).total_seconds()])
print(json.dumps(rows))
"""


def probed(notebook, path: Path) -> Path:
    """A copy of *notebook* (written to *path*) whose test cells run their probe and judge instead."""
    import nbformat

    from benchmarks.grading import IN_KERNEL_TEST

    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            cell.source = IN_KERNEL_TEST.format(grade_id=meta["grade_id"])
    nbformat.write(notebook, path)
    return path


def cell_times(notebook=SOURCE, core=None):
    import tempfile

    import nbformat

    core = bench_core() if core is None else core
    with tempfile.TemporaryDirectory(dir=notebook.parent) as folder:  # beside grading/, which the kernel imports
        path = probed(nbformat.read(notebook, as_version=4), Path(folder) / notebook.name)
        done = subprocess.run([sys.executable, "-c", RUNNER, str(path), str(notebook.parent)], capture_output=True,
                              text=True, env={**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"},
                              preexec_fn=lambda: os.sched_setaffinity(0, {core}), check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def by_part(rows, answers):
    """[(what, seconds)]: the test cells of each graded part together, and each other cell (set-up, demonstrations)
    on its own, in notebook order; answer cells (a definition each) are left out."""
    table, part = [], None
    for grade_id, test, seconds in rows:
        if grade_id in answers:
            part = grade_id
            table.append([f"`{part}`: its tests' probes and judges", 0.0])
        elif test and part:
            table[-1][1] += seconds
        else:
            table.append([f"cell `{grade_id}`" + (f" (ungraded, after `{part}`)" if part else ""), seconds])
    return table


def run():
    import nbformat

    notebook = nbformat.read(SOURCE, as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"] for c in notebook.cells
               if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"}
    table = by_part(cell_times(), answers)
    lines = ["## Grading cost per part", "",
             f"The master copy of `residual_blocks` (reference answers, each test cell replaced by its probe and its "
             f"judge) executed in one fresh kernel pinned to core {bench_core()}, after the kernel has started. Seconds "
             "per graded part (its tests' probes and judges) and per ungraded cell (the imports, and the demonstrations "
             "that a grader runs too).", "", "| cells | seconds |", "|---|---:|"]
    lines += [f"| {what} | {seconds:.2f} |" for what, seconds in table]
    lines += ["", f"All cells together: {sum(seconds for _, seconds in table):.1f} s."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
