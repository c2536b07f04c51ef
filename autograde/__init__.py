"""Grade a whole class's notebooks on this course's nbgrader assignments: ``python -m autograde grade``.

The protections are nbgrader plugins, composed in ``nbgrader_config.py``, so that plain ``nbgrader autograde`` and
formgrader's Autograde button grade the same way; the rest is the parallel driver around them. The modules form
layers, from the bottom up; each imports only from its own layer and those before it, never in a cycle
(``tests/test_autograde_layers.py`` checks it, imports inside functions included):

1. **core** — this package's ``AutogradeError`` and ``GRADER_VERSION``; :mod:`~autograde.status` (the status
   words); :mod:`~autograde.results` (the Result record, grades.csv, the cache, the summary, atomic writes);
   :mod:`~autograde.safezip` (zips unpacked safely).
2. **sandbox** — :mod:`autograde.sandbox`: the OS isolation of every kernel (bubblewrap; container mode inside
   containers), its limits, warm kernels.
3. **nbgrader plugins** — :mod:`~autograde.preprocessors` (RestoreCells, HideHiddenTests);
   :mod:`~autograde.sanitize` (CleanHTML); :mod:`~autograde.execute` (JudgedExecute: isolated kernels, each test's
   probe in place of its cell, its judge's verdict); :mod:`~autograde.probing` and :mod:`~autograde.judging` (the
   kernel's and the grader's side of a test); :mod:`~autograde.feedback` (the feedback page);
   :mod:`~autograde.late` (the late-penalty plugin, extensions).
4. **course and template** — :mod:`~autograde.course`: the instructor's course, its configuration, the template
   every job copies.
5. **intake** — :mod:`~autograde.lms`, :mod:`~autograde.inputs`: one submission per student from a folder, a zip
   or an LMS download; :mod:`~autograde.roster`: the class list.
6. **publishing** — :mod:`~autograde.formgrader` (the class course for formgrader); :mod:`~autograde.exports` (the
   grade file each LMS imports); :mod:`~autograde.similarity` (pairs to look at).
7. **pipeline** — :mod:`~autograde.options` (the grading options, their defaults and argv form);
   :mod:`~autograde.parts` (which part of a class a student is in); :mod:`~autograde.worker` (grade one
   submission); :mod:`~autograde.scheduler` (in parallel, with progress and deadlines); :mod:`~autograde.run` (one
   grading run, or a merge, end to end, publishing included).
8. **deployment** — :mod:`~autograde.shards` (``merge``); :mod:`~autograde.slurm` (a class as a Slurm array job);
   :mod:`~autograde.gradescope` (Gradescope's autograder bundle and its runtime, which runs ``grade`` itself).
9. **command line** — :mod:`~autograde.cli`: the subcommands.
"""

# Part of every cache key: bump it when a change to the grader can change grades.
GRADER_VERSION = "4"


class AutogradeError(Exception):
    """The grader itself cannot run (missing assignment, unreadable input, ...): exit code 1."""
