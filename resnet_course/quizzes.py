"""Auto-checked multiple-choice questions for the lessons.

A lesson cell holds only `quiz("key")`: the question, its options, hint and explanation live in questions.json
beside this file, and the right answer is stored as a salted hash, so neither the notebook nor the data file
gives it away. In JupyterLab, classic Jupyter, Binder and Colab the learner clicks an option and "Check";
wherever widgets cannot render, the same question shows as text and `quiz("key").answer("B")` checks it.
"""
import functools
import hashlib
import html
import json
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

try:
    import ipywidgets as widgets
except ImportError:  # a bare kernel still gets the plain-text quiz
    widgets = None


def answer_digest(key, letter):
    return hashlib.sha256(f"resnet-course:{key}:{letter.strip().upper()}".encode()).hexdigest()


@dataclass(frozen=True)
class Feedback:
    correct: bool
    message: str

    def __str__(self):
        return self.message

    def _repr_html_(self):
        colour = "#1a7f37" if self.correct else "#b35900"
        return f'<div style="color:{colour}">{html.escape(self.message)}</div>'


@dataclass(frozen=True)
class Question:
    key: str
    prompt: str
    options: tuple
    digest: str
    hint: str
    explanation: str
    code: str = ""

    @property
    def letters(self):
        return string.ascii_uppercase[:len(self.options)]

    def check(self, letter):
        """Feedback on one answer: the hint after a wrong one, the explanation after the right one."""
        letter = str(letter).strip().upper()
        if len(letter) != 1 or letter not in self.letters:  # "" and "AB" are substrings of "ABCD" too
            return Feedback(False, f"Answer with one of the letters {', '.join(self.letters)}; got {letter!r}.")
        if answer_digest(self.key, letter) == self.digest:
            return Feedback(True, f"Correct! {self.explanation}")
        return Feedback(False, f"Not quite. Hint: {self.hint}")

    def as_text(self):
        lines = [self.prompt]
        if self.code:
            lines += ["", self.code, ""]
        lines += [f"  {letter}. {option}" for letter, option in zip(self.letters, self.options)]
        lines += ["", f'Answer in code: quiz("{self.key}").answer("{self.letters[0]}")  (with your letter)']
        return "\n".join(lines)


class Quiz:
    """One question on screen: radio buttons and a Check button, or plain text where widgets cannot render."""

    def __init__(self, question):
        self.question = question
        self.attempts = 0
        self._view = self._build_view() if widgets is not None else None

    def answer(self, letter):
        self.attempts += 1
        return self.question.check(letter)

    def __repr__(self):
        # What plain Python (a terminal, print()) shows; Jupyter uses _repr_mimebundle_ below.
        return self.question.as_text()

    def _build_view(self):
        question = self.question
        header = widgets.HTML(f"<b>{html.escape(question.prompt)}</b>"
                              + (f"<pre>{html.escape(question.code)}</pre>" if question.code else ""))
        choices = widgets.RadioButtons(
            options=[(f"{letter}. {option}", letter) for letter, option in zip(question.letters, question.options)],
            value=None, layout=widgets.Layout(width="max-content"))
        button = widgets.Button(description="Check", button_style="primary")
        result = widgets.HTML()

        def on_check(_):
            if choices.value is None:
                result.value = "Pick an option first."
                return
            feedback = self.answer(choices.value)
            result.value = feedback._repr_html_()

        button.on_click(on_check)
        return widgets.VBox([header, choices, button, result])

    def _repr_mimebundle_(self, **kwargs):
        view = self._view._repr_mimebundle_(**kwargs) if self._view is not None else None
        return {**(view or {}), "text/plain": self.question.as_text()}


def load_questions(source=None):
    """All questions by key, from questions.json beside this module unless `source` names another file."""
    text = Path(source).read_text() if source else resources.files(__package__).joinpath("questions.json").read_text()
    questions = {}
    for entry in json.loads(text):
        question = Question(entry["key"], entry["prompt"], tuple(entry["options"]), entry["digest"],
                            entry["hint"], entry["explanation"], entry.get("code", ""))
        if question.key in questions:
            raise ValueError(f"two questions share the key {question.key!r}")
        questions[question.key] = question
    return questions


@functools.cache
def _course_questions():
    return load_questions()


def quiz(key):
    """The question called `key`, ready to display and answer."""
    questions = _course_questions()
    if key not in questions:
        raise KeyError(f"no question {key!r}; there are: {', '.join(sorted(questions))}")
    return Quiz(questions[key])
