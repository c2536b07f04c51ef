"""The lessons' quizzes: every seed question is covered, every answer key is sound, and the code they show
behaves the way their right answers say."""
import contextlib
import io
import json
import string
from importlib import resources

import pytest
import torch
from torch import nn

from resnet_course.quizzes import answer_digest, load_questions, quiz

QUESTIONS = load_questions()

# Each question of the course's source pages (shared/seeds/, one file per page, questions numbered in order),
# what it asks, the quiz key(s) that cover it in the course's own words, and the letter that is right there.
SEED_COVERAGE = [
    ("000_234597eb44821898.txt", 1, "main reason for skip connections, thinking of gradients",
     {"why_skip_connections": "A"}),
    ("000_234597eb44821898.txt", 2, "output shape of a 'same'-padded Keras block on (32, 64, 64, 64)",
     {"same_padding_shape": "B"}),
    ("000_234597eb44821898.txt", 3, "how a shortcut handles an input/output channel mismatch",
     {"channel_mismatch_fix": "D"}),
    ("000_234597eb44821898.txt", 4, "training loss of a deep net with and without skip connections",
     {"training_loss_curves": "A"}),
    ("000_234597eb44821898.txt", 5, "the error a 64 -> 128 channel block raises at `out += x`",
     {"shape_error_block": "D"}),
    ("002_1bc3fb657c04aa7a.txt", 1, "main purpose of skip connections in a ResNet",
     {"what_skip_connections_do": "B"}),
    ("002_1bc3fb657c04aa7a.txt", 2, "which line adds a skip connection: + against -, *, / and others",
     {"skip_operator": "C"}),
    ("002_1bc3fb657c04aa7a.txt", 3, "zero-weight, bias-1 conv on an all-ones input, plus the skip: 2.0",
     {"zero_weight_conv": "D"}),
    ("002_1bc3fb657c04aa7a.txt", 4, "the cause of 'size of tensor a must match size of tensor b'",
     {"shape_error_cause": "B"}),
    ("002_1bc3fb657c04aa7a.txt", 5, "the shortcut for 64 -> 128 channels with stride 2: 1x1 conv, stride 2",
     {"projection_64_128": "C"}),
]
COVERAGE = {key: letter for *_, keys in SEED_COVERAGE for key, letter in keys.items()}


def right_option(key):
    question = QUESTIONS[key]
    return question.options[string.ascii_uppercase.index(COVERAGE[key])]


def test_every_seed_page_has_five_questions_mapped():
    pages = {}
    for page, number, _, keys in SEED_COVERAGE:
        pages.setdefault(page, []).append(number)
        assert keys, f"{page} question {number} is mapped to no quiz"
    assert pages == {page: [1, 2, 3, 4, 5] for page in pages}
    assert len(pages) == 2


@pytest.mark.parametrize("page, number, asks, keys", SEED_COVERAGE, ids=lambda v: str(v)[:30])
def test_seed_question_is_covered(page, number, asks, keys):
    for key, letter in keys.items():
        assert key in QUESTIONS, f"{page} question {number} ({asks}) maps to a missing quiz {key!r}"
        question = QUESTIONS[key]
        feedback = question.check(letter)
        assert feedback.correct, f"{key}: {letter} should be the right answer"
        assert question.explanation in feedback.message
        for other in question.letters.replace(letter, ""):
            assert not question.check(other).correct
        assert question.hint.strip() and question.explanation.strip()


def test_questions_file_is_well_formed():
    entries = json.loads(resources.files("resnet_course").joinpath("questions.json").read_text())
    assert len(entries) == len(QUESTIONS) >= 10
    for entry in entries:
        assert {"key", "prompt", "options", "digest", "hint", "explanation"} <= set(entry), entry["key"]
        assert set(entry) <= {"key", "prompt", "options", "digest", "hint", "explanation", "code"}
        assert entry["prompt"].strip() and entry["hint"].strip() and entry["explanation"].strip(), entry["key"]
        assert 3 <= len(entry["options"]) <= 5, entry["key"]
        assert len(set(entry["options"])) == len(entry["options"]), f"{entry['key']} repeats an option"


@pytest.mark.parametrize("key", sorted(QUESTIONS))
def test_exactly_one_option_matches_the_digest(key):
    question = QUESTIONS[key]
    matching = [letter for letter in question.letters if answer_digest(key, letter) == question.digest]
    assert len(matching) == 1, f"{key}: options matching the digest: {matching}"
    assert question.check(matching[0]).correct
    assert "Hint" in question.check(question.letters.replace(matching[0], "")[0]).message


def test_right_letters_vary():
    rights = [letter for key in QUESTIONS for letter in QUESTIONS[key].letters
              if answer_digest(key, letter) == QUESTIONS[key].digest]
    counts = {letter: rights.count(letter) for letter in "ABCD"}
    assert all(counts[letter] >= 2 for letter in "ABCD"), counts


def test_quiz_answers_in_code():
    assert quiz("zero_weight_conv").answer("d").correct
    assert not quiz("zero_weight_conv").answer("A").correct
    assert "letters" in quiz("zero_weight_conv").answer("Z").message


# The code in the questions really does what their right answers say ---------------------------------------

def run_question_code(key):
    """Run a question's code; returns (what it printed, the exception it raised or None)."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(QUESTIONS[key].code, {"torch": torch, "nn": nn})
    except Exception as error:  # the question may be about exactly this error
        return printed.getvalue(), error
    return printed.getvalue(), None


def test_zero_weight_conv_prints_two():
    printed, error = run_question_code("zero_weight_conv")
    assert error is None
    assert printed.strip() == right_option("zero_weight_conv") == "2.0"


def test_shape_error_block_shows_the_real_message():
    _, error = run_question_code("shape_error_block")
    assert isinstance(error, RuntimeError)
    assert right_option("shape_error_block") == f"RuntimeError: {error}"


def test_shape_error_cause_quotes_the_real_message():
    conv = nn.Conv2d(64, 128, 3, padding=1)
    x = torch.randn(1, 64, 8, 8)
    with pytest.raises(RuntimeError) as caught:
        torch.relu(conv(x)) + x   # out = out + x, as in the question's code
    assert str(caught.value) in QUESTIONS["shape_error_cause"].prompt
    assert "out = out + x" in QUESTIONS["shape_error_cause"].code


def test_projection_shortcut_gives_the_branch_shape():
    x = torch.randn(2, 64, 32, 32)
    branch = nn.Conv2d(64, 128, 3, stride=2, padding=1)(x)
    shortcut = nn.Conv2d(64, 128, 1, stride=2)(x)
    assert branch.shape == shortcut.shape == (2, 128, 16, 16)
    assert "1x1" in right_option("projection_64_128") and "stride 2" in right_option("projection_64_128")


def test_same_padding_keeps_the_shape():
    # The question's Keras batch is (N, H, W, C); the same block in PyTorch, channels first, keeps the shape too.
    x = torch.randn(2, 64, 64, 64)
    with torch.no_grad():
        y = nn.Conv2d(64, 64, 3, padding=1)(torch.relu(nn.Conv2d(64, 64, 3, padding=1)(x))) + x
    assert tuple(y.shape) == (2, 64, 64, 64)
    assert right_option("same_padding_shape") == "(32, 64, 64, 64)"


def letter_of(key):
    question = QUESTIONS[key]
    return next(letter for letter in question.letters if answer_digest(key, letter) == question.digest)


def option_of(key):
    question = QUESTIONS[key]
    return question.options[question.letters.index(letter_of(key))]


def test_path_counts_in_the_unravelled_view():
    # Every block is passed through its branch or skipped: one path per subset of the blocks whose branch it takes.
    blocks = 15
    paths = [{b for b in range(blocks) if mask >> b & 1} for mask in range(2 ** blocks)]
    assert f"{len(paths):,}" in option_of("ensemble_paths")
    untouched = [path for path in paths if not path & {3, 9}]   # skips the branches of two deleted blocks
    assert len(untouched) * 4 == len(paths) and "2^13" in option_of("paths_after_two_deletions")


def test_deleting_a_block_with_a_small_response_barely_changes_what_follows():
    from resnet_course.models import ResidualUnit

    torch.manual_seed(0)
    block = ResidualUnit(8, 8, 1).eval()
    x = torch.relu(torch.randn(4, 8, 6, 6))
    with torch.no_grad():
        block.norm2.weight.mul_(0.02 * x.norm() / block.branch(x).norm())   # scale F(x) to 2% of x
        block.norm2.bias.zero_()
        assert (block.branch(x).norm() / x.norm()).item() == pytest.approx(0.02, rel=1e-3)
        change = (block(x) - x).norm() / x.norm()   # with the block against without it (then x passes on)
    assert 0 < change.item() <= 0.02 + 1e-6
    assert "barely changes" in option_of("small_response_deletion")
