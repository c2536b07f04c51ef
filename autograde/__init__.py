"""Grade a whole class's notebooks on this course's nbgrader assignments: ``python -m autograde grade``.

The protections are nbgrader plugins, composed in ``nbgrader_config.py``, so that plain ``nbgrader autograde`` and
formgrader's Autograde button grade the same way:

* :mod:`autograde.preprocessors` — RestoreCells (put the assignment's cells back), HideHiddenTests (feedback);
* :mod:`autograde.execute` — GuardedExecute: isolated kernels, the tamper guard, timeouts that hold;
* :mod:`autograde.guard` — the tamper guard's code inside the kernel, and what it protects;
* :mod:`autograde.sandbox` — the OS isolation of every kernel (bubblewrap), its limits, warm kernels.

The rest is the parallel driver around them, in the order a grading run uses it:

* :mod:`autograde.cli` — the command line; :mod:`autograde.run` — one grading run end to end;
* :mod:`autograde.inputs`, :mod:`autograde.lms`, :mod:`autograde.safezip` — one submission per student from a
  folder or zip, LMS downloads read by their naming patterns;
* :mod:`autograde.course` — the instructor's course, its configuration, the template every job copies;
* :mod:`autograde.scheduler` — grade submissions in parallel worker processes, with progress and deadlines;
* :mod:`autograde.worker` — grade one submission with nbgrader's Autograde and GenerateFeedback;
* :mod:`autograde.results` — the Result record, grades.csv, the cache and the summary;
  :mod:`autograde.exports` — the grade file each LMS imports;
* :mod:`autograde.feedback` — feedback pages; :mod:`autograde.formgrader` — the class course for formgrader.

Beyond one machine: :mod:`autograde.shards` — ``grade --shard I/N`` and ``merge``; :mod:`autograde.slurm` — a class
as a Slurm array job and a merge job; :mod:`autograde.gradescope` — Gradescope's autograder bundle and its runtime.
"""

# Part of every cache key: bump it when a change to the grader can change grades.
GRADER_VERSION = "4"


class AutogradeError(Exception):
    """The grader itself cannot run (missing assignment, unreadable input, ...): exit code 1."""
