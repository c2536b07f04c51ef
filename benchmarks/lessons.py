"""Time and memory of each lesson notebook, run top to bottom in a fresh kernel, against the course's budget.

Each notebook runs in its own runner process (nbclient, as nbval and nbconvert do), whose kernel is its child,
so the runner's resource usage of its children is exactly that kernel's: CPU time, and peak resident memory.
The runner and its kernel are pinned to ONE CPU core (like `taskset -c N`), as on Binder, which gives about one
core and 2 GB: the budget must hold there. $BENCH_CORE chooses the core (default: the first one allowed).
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
BUDGET_SECONDS = 60
BUDGET_BYTES = 1.5 * 2**30
THREADS = 1

# Runs one notebook and prints, as JSON, the kernel's CPU time and peak memory (Linux reports ru_maxrss in KiB).
RUNNER = r"""
import json, resource, sys
import nbclient, nbformat
path = sys.argv[1]
notebook = nbformat.read(path, as_version=4)
error = None
try:
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": sys.argv[2]}}).execute()
except Exception as exc:
    error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
kernel = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"error": error, "cpu_s": kernel.ru_utime + kernel.ru_stime, "peak_bytes": kernel.ru_maxrss * 1024}))
"""


def bench_core():
    """The core the lessons run on: $BENCH_CORE, else the first core this process may use."""
    return int(os.environ.get("BENCH_CORE", min(os.sched_getaffinity(0))))


def measure(notebook, threads=THREADS, core=None):
    """Wall time, the kernel's CPU time and peak RSS for one notebook on one core, or the error that stopped it."""
    env = {**os.environ, "RESNET_COURSE_THREADS": str(threads), "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    core = bench_core() if core is None else core
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUNNER, str(notebook), str(notebook.parent)],
                          capture_output=True, text=True, env=env,
                          preexec_fn=lambda: os.sched_setaffinity(0, {core}))  # the kernel inherits it
    wall = time.perf_counter() - started
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        result = {"error": f"runner failed (exit {done.returncode}): {tail}", "cpu_s": None, "peak_bytes": None}
    return {"wall_s": wall, **result}


def run(names=None):
    """The Markdown section: one row per lesson, with the budget and whether each lesson fits."""
    notebooks = sorted(NOTEBOOKS.glob("*.ipynb"))
    if names:
        notebooks = [nb for nb in notebooks if any(nb.name.startswith(name) for name in names)]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = []
    for notebook in notebooks:
        print(f"  {notebook.name} ...", flush=True)
        m = measure(notebook)
        fits = (m["error"] is None and m["wall_s"] <= BUDGET_SECONDS and m["peak_bytes"] <= BUDGET_BYTES)
        verdict = "yes" if fits else ("error: " + m["error"] if m["error"] else "**no**")
        cpu = f"{m['cpu_s']:.1f}" if m["cpu_s"] is not None else "-"
        peak = f"{m['peak_bytes'] / 2**20:,.0f}" if m["peak_bytes"] is not None else "-"
        rows.append(f"| {notebook.stem} | {m['wall_s']:.1f} | {cpu} | {peak} | {verdict} |")
    lines = [
        "## Lessons",
        "",
        f"Each lesson notebook executed top to bottom in a fresh kernel (nbclient), pinned to one CPU core (core "
        f"{bench_core()}, as `taskset -c {bench_core()}` would; Binder gives about one) with RESNET_COURSE_THREADS="
        f"{THREADS}. Wall time includes starting the kernel; CPU time and peak memory (maximum resident set size)"
        f" are the kernel process's. Budget per lesson: {BUDGET_SECONDS} s and {BUDGET_BYTES / 2**30:g} GB on that "
        f"one core. Load average when the run began: {load:.2f} (other work on the machine slows the wall times).",
        "",
        "| lesson | wall (s) | CPU (s) | peak memory (MiB) | fits the budget |",
        "|---|---:|---:|---:|---|",
        *rows,
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(sys.argv[1:]))
