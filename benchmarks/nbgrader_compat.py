"""How long `make nbgrader-compat` takes: nbgrader's own tests of the apps the grading plugins touch, run with the
plugins loaded (tools/nbgrader_compat.py), as CI runs them after `make test`."""
from __future__ import annotations

import os
import sys

from .grading import REPO

sys.path.insert(0, str(REPO / "tools"))
import nbgrader_compat  # noqa: E402 - the target's own runner


def run() -> str:
    load = os.getloadavg()[0]
    found, seconds = nbgrader_compat.run_suite(["-q"])
    problems = nbgrader_compat.verdict(found, nbgrader_compat.EXCUSED)
    verdict = "as expected" if not problems else "NOT as expected: " + "; ".join(problems)
    return "\n".join([
        "## nbgrader's own tests with the course's plugins (`make nbgrader-compat`)", "",
        f"nbgrader's tests of {', '.join(nbgrader_compat.MODULES)}, one process, with the plugins loaded from "
        f"`nbgrader_config.py` as a global configuration. Load average when the run began: {load:.2f}.", "",
        f"{nbgrader_compat.summary(found, seconds)}: {verdict}.", ""])
