"""Grade a whole class's notebooks on this course's nbgrader assignments: ``python -m autograde grade``.

Modules, in the order a grading run uses them:

* :mod:`autograde.cli` — the command line; :mod:`autograde.runner` — one grading run end to end;
* :mod:`autograde.submissions`, :mod:`autograde.safezip` — find one submission per student in a folder or zip;
* :mod:`autograde.course` — the instructor's course and the private nbgrader template built from it;
* :mod:`autograde.scheduler` — grade submissions in parallel worker processes, with progress and deadlines;
* :mod:`autograde.worker` — grade one submission with nbgrader's Autograde and GenerateFeedback converters;
* :mod:`autograde.normalize` — read a submitted file; put the assignment's cells and metadata back;
* :mod:`autograde.execute` — nbgrader's Execute preprocessor with a tamper guard, hard timeouts, output caps;
* :mod:`autograde.kernel_guard` — the part of the tamper guard that runs inside the student's kernel;
* :mod:`autograde.kernels`, :mod:`autograde.sandbox`, :mod:`autograde.zygote` — sandboxed (and warm) kernels;
* :mod:`autograde.report` — grades.csv, feedback pages, the cache and the summary;
* :mod:`autograde.feedback` — feedback that never shows hidden tests.
"""

# Part of every cache key: bump it when a change to the grader can change grades.
GRADER_VERSION = "1"


class AutogradeError(Exception):
    """The grader itself cannot run (missing assignment, unreadable input, ...): exit code 1."""
