"""Keeping the graded test cells honest inside the student's kernel (which the OS sandbox cannot do).

* :mod:`autograde.guard.in_kernel` — the code the grader sends into the kernel before the notebook runs;
* :mod:`autograde.guard.source` — what the instructor's cells import and bind, read from their source.
"""
