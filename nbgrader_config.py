"""nbgrader settings for this course; the repository root is the course root (source/, release/, ...).

The grading plugins make plain `nbgrader autograde`, formgrader's Autograde button and `python -m autograde grade`
grade the same way, with the same protection (docs/instructors.md, "How grading works"):

* RestoreCells puts back test and locked cells a submission deleted, edited, converted or unlocked;
* JudgedExecute runs the notebook in a kernel isolated by the OS (bubblewrap: no view of the course, the
  gradebooks, other submissions or the network) with timeouts that hold; in place of each test cell the kernel runs
  the test's probe, and the test's judge decides in the grader's process (source/<assignment>/grading/);
* HideHiddenTests keeps hidden tests (of assignments graded the stock way) out of feedback;
* CleanHTML cleans students' HTML and markdown, in feedback and in formgrader, and FeedbackExporter gives each
  feedback page a policy that lets no script run but its own MathJax, inlined (no network needed);
* AwaitingHandGrading and NameGradedCells let the feedback page's summary name each test and say which answers
  await grading by hand.
"""
import os

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearOutput, DeduplicateIds, GetGrades,
                                    IgnorePattern, LimitOutput, OverwriteCells, OverwriteKernelspec, SaveAutoGrades)

from autograde.execute import JudgedExecute
from autograde.feedback import AwaitingHandGrading, FeedbackExporter, NameGradedCells
from autograde.preprocessors import HideHiddenTests, RestoreCells
from autograde.sanitize import CleanHTML

c = get_config()  # noqa: F821 - injected by traitlets when nbgrader loads this file

COURSE_ROOT = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.root = COURSE_ROOT
c.CourseDirectory.course_id = "resnet-skip-connections"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(COURSE_ROOT, "gradebook.db")

# An assignment's probes and judges (source/<assignment>/grading/) are the grader's: never released, never copied
# next to a submission.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "grading"]

# The exchange lives in the repository (git-ignored), so JupyterLab's assignment list works without set-up.
c.Exchange.root = os.path.join(COURSE_ROOT, "exchange")

# nbgrader's own steps, with the grading plugins in their places.
c.Autograde.sanitize_preprocessors = [ClearOutput, RestoreCells, DeduplicateIds, OverwriteKernelspec, OverwriteCells,
                                      CheckCellMetadata]
# (nbgrader's default checks the cells' nbgrader metadata once more at the end: JudgedExecute gives back the cells
# it was given with their metadata untouched, so the check while sanitizing is enough.)
c.Autograde.autograde_preprocessors = [JudgedExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                       SaveAutoGrades, AssignLatePenalties]
# CleanHTML comes after HideHiddenTests: a line redacted from clean HTML could leave a tag open.
# AwaitingHandGrading corrects the total GetGrades reads; NameGradedCells names cells after the hidden lines are gone.
c.GenerateFeedback.preprocessors = [GetGrades, AwaitingHandGrading, HideHiddenTests, NameGradedCells, CleanHTML,
                                    CSSHTMLHeaderPreprocessor]
c.GenerateFeedback.exporter_class = FeedbackExporter
# Formgrader shows submissions with an HTMLExporter of its own, built from this file when Jupyter starts in this
# folder: it cleans them too. Feedback's exporter does not clean first as well (the redaction above would not
# recognise hidden lines in HTML already escaped).
c.HTMLExporter.preprocessors = [CleanHTML]
c.GenerateFeedback.HTMLExporter.preprocessors = []

# Every assignment of this course is judged: one without source/<assignment>/grading/ is refused, never graded the
# stock way (its test cells hold no tests of their own, and would pass by themselves).
c.JudgedExecute.require_judges = True

# A whole notebook gets this long per cell; the reference solution needs a few seconds in all.
c.Execute.timeout = 60
# Each kernel: 2 GB for all its processes together (like mybinder.org). Set `isolation = "none"` only to grade
# code you trust on a machine without bubblewrap: the notebooks then run with your own access.
c.IsolatedKernelManager.memory_mb = 2048
c.IsolatedKernelManager.isolation = "bwrap"
