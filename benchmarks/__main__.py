"""`make bench`: run every benchmark section and write BENCHMARKS.md.

Each section is a module in this package with a `run()` that measures and returns Markdown.
"""
import datetime
import importlib
import platform
import sys
from pathlib import Path

import torch

from resnet_course.cores import available_cores

SECTIONS = ["lessons", "assignment", "grading", "shards"]
REPORT = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def machine_line():
    cores = available_cores()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (everything ran on the CPU)"
    return (f"Measured {datetime.date.today()} on {platform.machine()} Linux, {cores} cores, {gpu}, "
            f"Python {platform.python_version()}, torch {torch.__version__}.")


def main(names):
    chosen = names or SECTIONS
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        sys.exit(f"unknown benchmark section(s): {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    parts = ["# Benchmarks", "", "Written by `make bench`; numbers below are from real runs, not estimates.", "",
             machine_line(), ""]
    for name in chosen:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"benchmark: {name} ...", flush=True)
        parts += [module.run().rstrip(), ""]
    REPORT.write_text("\n".join(parts))
    print(f"wrote {REPORT}")


if __name__ == "__main__":
    main(sys.argv[1:])
