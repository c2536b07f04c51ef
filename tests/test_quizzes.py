import json

import pytest

from resnet_course import quizzes
from resnet_course.quizzes import Quiz, answer_digest, load_questions


@pytest.fixture
def question_file(tmp_path):
    path = tmp_path / "questions.json"
    path.write_text(json.dumps([{
        "key": "sum", "prompt": "What is 1 + 1?", "options": ["1", "2", "3"],
        "digest": answer_digest("sum", "B"), "hint": "Count on your fingers.",
        "explanation": "One plus one is two.", "code": "print(1 + 1)",
    }]))
    return path


def test_right_answer_gives_the_explanation(question_file):
    question = load_questions(question_file)["sum"]
    feedback = question.check("b")
    assert feedback.correct and "One plus one is two." in feedback.message


@pytest.mark.parametrize("letter", ["A", "C"])
def test_wrong_answer_gives_the_hint_not_the_answer(question_file, letter):
    feedback = load_questions(question_file)["sum"].check(letter)
    assert not feedback.correct
    assert "Count on your fingers." in feedback.message and "two" not in feedback.message


@pytest.mark.parametrize("letter", ["E", "", "  ", "AB", "abc", "B C"])
def test_answers_outside_the_options_are_explained(question_file, letter):
    feedback = load_questions(question_file)["sum"].check(letter)
    assert not feedback.correct and "A, B, C" in feedback.message and "Hint" not in feedback.message


def test_answer_is_not_readable_in_the_data(question_file):
    text = question_file.read_text()
    assert '"answer"' not in text and answer_digest("sum", "B") in text


def test_quiz_counts_attempts_and_renders_with_a_text_fallback(question_file):
    quiz = Quiz(load_questions(question_file)["sum"])
    assert not quiz.answer("A").correct and quiz.answer("B").correct and quiz.attempts == 2
    bundle = quiz._repr_mimebundle_()
    assert "What is 1 + 1?" in bundle["text/plain"] and "B. 2" in bundle["text/plain"]
    assert 'quiz("sum").answer(' in bundle["text/plain"]
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_plain_python_shows_the_question_as_text(question_file):
    quiz = Quiz(load_questions(question_file)["sum"])
    for shown in (repr(quiz), str(quiz)):
        assert shown.startswith("What is 1 + 1?") and "B. 2" in shown and "print(1 + 1)" in shown
        assert "object at 0x" not in shown


def test_without_widgets_the_quiz_is_plain_text(question_file, monkeypatch):
    monkeypatch.setattr(quizzes, "widgets", None)
    bundle = Quiz(load_questions(question_file)["sum"])._repr_mimebundle_()
    assert list(bundle) == ["text/plain"]


def test_clicking_check_shows_hint_then_explanation(question_file):
    quiz = Quiz(load_questions(question_file)["sum"])
    _, choices, button, result = quiz._view.children
    button.click()
    assert "Pick an option" in result.value
    choices.value = "C"
    button.click()
    assert "Hint" in result.value
    choices.value = "B"
    button.click()
    assert "Correct" in result.value and quiz.attempts == 2


def test_duplicate_keys_are_refused(tmp_path):
    entry = {"key": "k", "prompt": "?", "options": ["x", "y"], "digest": answer_digest("k", "A"),
             "hint": "h", "explanation": "e"}
    path = tmp_path / "questions.json"
    path.write_text(json.dumps([entry, entry]))
    with pytest.raises(ValueError, match="share the key 'k'"):
        load_questions(path)


def test_unknown_key_lists_the_known_ones():
    with pytest.raises(KeyError, match="no question 'nope'"):
        quizzes.quiz("nope")
