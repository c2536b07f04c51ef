"""The environment variables a grading kernel gets: an allow-list, never the grader's own environment.

Whatever the instructor's shell holds (tokens, passwords, ``PWD``) would otherwise reach the student's code, which
can print it into its own feedback. A kernel gets the locale, the thread settings, a ``PATH`` of this environment's
programs and the system's, a private ``HOME`` and ``TMPDIR``, and the few settings below (Python's, matplotlib's,
nbgrader's).
"""
from __future__ import annotations

import os
import sys

LOCALE = ("LANG", "LANGUAGE", "TZ")  # and every LC_*
THREADS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
           "VECLIB_MAXIMUM_THREADS")
# How Python itself runs (an instructor's PYTHONPATH may make a course package importable), the GPUs to use, and
# what nbgrader tells notebooks (NBGRADER_EXECUTION=autograde: a notebook may skip its long training when graded).
SETTINGS = ("PYTHONPATH", "PYTHONHASHSEED", "PYTHONIOENCODING", "PYTHONUTF8", "PYTHONDONTWRITEBYTECODE",
            "PYTHONNOUSERSITE", "PYTHONWARNINGS", "MPLBACKEND", "CUDA_VISIBLE_DEVICES", "NBGRADER_EXECUTION",
            "NBGRADER_VALIDATING")
SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")


def kernel_environment(source, home: str, threads: int = 0) -> dict[str, str]:
    """What a kernel may see of *source* (the grader's environment), with *home* as its HOME and TMPDIR and
    *threads* (0: the libraries' default) for every thread pool that reads a variable."""
    env = {name: value for name, value in source.items()
           if name in LOCALE or name.startswith("LC_") or name in THREADS or name in SETTINGS}
    env["PATH"] = os.pathsep.join(dict.fromkeys([os.path.dirname(sys.executable), *SYSTEM_PATH]))
    env["HOME"] = env["TMPDIR"] = home
    if threads:
        env.update(dict.fromkeys(THREADS, str(threads)))
    return env
