"""nbgrader settings for this course; the repository root is the course root (source/, release/, ...)."""
import os

from nbgrader.preprocessors import GetGrades
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor

from autograde.feedback import HideHiddenTests

c = get_config()  # noqa: F821 - injected by traitlets when nbgrader loads this file

COURSE_ROOT = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.root = COURSE_ROOT
c.CourseDirectory.course_id = "resnet-skip-connections"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(COURSE_ROOT, "gradebook.db")

# The exchange lives in the repository (git-ignored), so JupyterLab's assignment list works without set-up.
c.Exchange.root = os.path.join(COURSE_ROOT, "exchange")

# A whole notebook gets this long per cell; the reference solution needs a few seconds in all.
c.ExecutePreprocessor.timeout = 60
c.Execute.timeout = 60

# Feedback shows neither the hidden tests' code nor the hidden lines inside a traceback.
c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]
