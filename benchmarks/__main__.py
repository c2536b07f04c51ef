"""`make bench`: run every benchmark section and write BENCHMARKS.md.

Each section is a module in this package with a `run()` that measures and returns Markdown.
"""
import datetime
import importlib
import platform
import re
import sys
from pathlib import Path

import torch

from resnet_course.cores import available_cores

SECTIONS = ["lessons", "assignment", "grading", "shards", "nbgrader_compat"]
REPORT = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
_BLOCK = re.compile(r"<!-- bench:(\w+) -->\n(.*?)<!-- /bench:\1 -->", re.DOTALL)


def machine_line():
    cores = available_cores()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (everything ran on the CPU)"
    return (f"Measured {datetime.date.today()} on {platform.machine()} Linux, {cores} cores, {gpu}, "
            f"Python {platform.python_version()}, torch {torch.__version__}.")


def main(names):
    """Run the sections *names* (all by default); the report keeps the other sections of its last version."""
    chosen = names or SECTIONS
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        sys.exit(f"unknown benchmark section(s): {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    blocks = dict(_BLOCK.findall(REPORT.read_text())) if REPORT.exists() else {}
    for name in chosen:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"benchmark: {name} ...", flush=True)
        blocks[name] = "\n".join([machine_line(), "", module.run().rstrip(), ""])
    parts = ["# Benchmarks", "", "Written by `make bench` (`python -m benchmarks SECTION...` measures some sections "
             "again); numbers below are from real runs, not estimates. Each section says when and where it ran.", ""]
    parts += [f"<!-- bench:{name} -->\n{blocks[name]}<!-- /bench:{name} -->\n" for name in SECTIONS if name in blocks]
    REPORT.write_text("\n".join(parts))
    print(f"wrote {REPORT}")


if __name__ == "__main__":
    main(sys.argv[1:])
