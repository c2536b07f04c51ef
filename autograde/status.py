"""The short reasons that go into the ``status`` column of grades.csv, most severe first.

A submission can have several (a notebook whose test cells were restored *and* that timed out);
the ``status`` column shows the most severe, the ``notes`` column explains all of them.
"""

OK = "ok"

# The file could not be graded at all: score 0.
NO_SUBMISSION = "no submission"  # on the roster (--roster), with nothing handed in
EMPTY = "empty file"
NO_NOTEBOOK = "no notebook"
NOT_NOTEBOOK = "not a notebook"
TOO_LARGE = "file too large"
INVALID = "invalid notebook"
WRONG_ASSIGNMENT = "wrong assignment"
NOT_ATTEMPTED = "not attempted"  # graded, but every answer cell is the release's own, unchanged
GRADER_ERROR = "grader error"

# Graded, but something stopped or changed the normal run.
MEMORY = "memory limit"
PROCESSES = "too many processes"
OUTPUT_TOO_LARGE = "output too large"  # a message from the kernel over the cap: the kernel was cut off and stopped
TIMED_OUT = "timed out"
KERNEL_DIED = "kernel died"
TAMPERING = "tampering detected"
NEEDS_REVIEW = "needs review"  # graded by hand, then the answer or its automatic score changed: its old score is aside
ANSWER_UNCLEAR = "answer to find"  # an answer graded by hand lost its metadata, and several cells could be it
RESTORED = "cells restored"

SEVERITY = [GRADER_ERROR, NO_SUBMISSION, EMPTY, NO_NOTEBOOK, NOT_NOTEBOOK, TOO_LARGE, INVALID, WRONG_ASSIGNMENT,
            NOT_ATTEMPTED, MEMORY, PROCESSES, OUTPUT_TOO_LARGE, TIMED_OUT, KERNEL_DIED, TAMPERING, NEEDS_REVIEW, ANSWER_UNCLEAR,
            RESTORED, OK]


def most_severe(statuses) -> str:
    found = set(statuses) or {OK}
    for status in SEVERITY:
        if status in found:
            return status
    return sorted(found)[0]
