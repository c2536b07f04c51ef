"""The lessons' "Your turn" checks: they pass a right answer, say "not done yet" for the placeholder, and reject
wrong answers with a message that points at the mistake. Also the gated solutions, and lesson 9's CIFAR-10 cell,
which CI only ever sees skipped."""
import json
import time
from pathlib import Path

import matplotlib
import pytest
import torch
from torch import nn
from torch.nn import functional as F

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402 - after choosing the backend

from resnet_course import availability, exercises
from resnet_course.exercises import (check_identity_conv, check_loss_plot, check_pad_shortcut, check_prediction,
                                     check_preact_block, check_projection_params, check_ranking, check_residual_chain,
                                     check_response_ratio, check_same_padding, show_solution)
from resnet_course.metrics import accuracy, final_loss
from resnet_course.solutions import SOLUTIONS

HISTORIES = {"plain-8": [2.3, 0.5, 0.12], "plain-32": [2.3, 1.5, 1.0], "res-8": [2.3, 0.3, 0.08],
             "res-32": [2.3, 0.1, 0.005]}


def solved(name):
    """The objects that the worked solution of exercise `name` defines."""
    namespace = {"torch": torch, "nn": nn, "F": F, "plt": plt, "final_loss": final_loss, "histories": HISTORIES}
    exec(SOLUTIONS[name], namespace)
    return namespace


def todo(*args):
    raise NotImplementedError("your turn")


relu = torch.relu


def preact_branch(s, x):
    return s.conv2(relu(s.norm2(s.conv1(relu(s.norm1(x))))))


def shortcut_after_activation(s, x):
    h = relu(s.norm1(x))  # a common slip: the activated input also feeds the shortcut
    return h + s.conv2(relu(s.norm2(s.conv1(h))))


def block_with(forward):
    """A pre-activation block class of lesson 7 whose forward pass is `forward(self, x)`."""
    class Block(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.norm1 = nn.BatchNorm2d(channels)
            self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.norm2 = nn.BatchNorm2d(channels)
            self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

        def forward(self, x):
            return forward(self, x)

    return Block


def predicted(prediction):
    return check_prediction(prediction, lambda: HISTORIES)


CHECKS = {
    "identity_conv": lambda ns: check_identity_conv(ns["make_identity_conv"]),
    "residual_chain": lambda ns: check_residual_chain(ns["residual_chain"]),
    "same_padding": lambda ns: check_same_padding(ns["padding_5x5"]),
    "pad_shortcut": lambda ns: check_pad_shortcut(ns["pad_shortcut"]),
    "ranking": lambda ns: check_ranking(ns["ranking"], HISTORIES),
    "loss_plot": lambda ns: check_loss_plot(ns["figure"], HISTORIES),
    "projection_params": lambda ns: check_projection_params(ns["projection_params"]),
    "prediction": lambda ns: check_prediction(ns["prediction"], lambda: HISTORIES),
    "preact_block": lambda ns: check_preact_block(ns["PreActBlock"]),
    "response_ratio": lambda ns: check_response_ratio(ns["response_ratio"]),
}


@pytest.fixture(autouse=True)
def fresh_attempts(monkeypatch):
    monkeypatch.setattr(exercises, "_attempted", set())


def test_every_solution_has_a_check():
    assert set(SOLUTIONS) == set(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_worked_solution_passes(name):
    result = CHECKS[name](solved(name))
    assert result.passed, str(result)
    assert result.status == "passed" and result.exercise == name


@pytest.mark.parametrize("check, placeholder", [
    (check_identity_conv, todo), (check_residual_chain, todo), (check_pad_shortcut, todo),
    (check_same_padding, None), (check_projection_params, None),
    (lambda r: check_ranking(r, HISTORIES), None),
    (lambda p: check_prediction(p, lambda: pytest.fail("nothing may train before the prediction")), None),
    (check_preact_block, block_with(lambda self, x: todo())), (check_response_ratio, todo),
    (lambda figure: check_loss_plot(figure, HISTORIES), None),
])
def test_the_placeholder_is_not_done_yet(check, placeholder):
    result = check(placeholder)
    assert result.status == "not done yet" and not result.passed
    assert "then run this cell again" in result.message or "replace None" in result.message


def identity_conv_with(fill):
    def make(channels):
        conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        with torch.no_grad():
            conv.weight.zero_()
            fill(conv.weight, channels)
        return conv
    return make


def diagonal(row, col):
    def fill(weight, channels):
        for c in range(channels):
            weight[c, c, row, col] = 1.0
    return fill


WRONG = [
    (check_identity_conv, identity_conv_with(lambda w, c: None), "all zeros"),
    (check_identity_conv, identity_conv_with(lambda w, c: w[:, :, 1, 1].fill_(1.0)), "sum of all input channels"),
    (check_identity_conv, identity_conv_with(diagonal(0, 1)), "shifted by one pixel"),
    (check_identity_conv, lambda c: nn.Identity(), "not an nn.Conv2d"),
    (check_identity_conv, lambda c: nn.Conv2d(c, c, 3), "padding=1"),
    (check_identity_conv, lambda c: 1 / 0, "ZeroDivisionError"),
    (check_identity_conv, nn.Conv2d(3, 3, 3), "pass the function itself"),
    (check_residual_chain, lambda x, w, depth: x * w ** depth, "plain chain"),
    (check_residual_chain, lambda x, w, depth: x + w * depth, "added w itself"),
    (check_residual_chain, lambda x, w, depth: x + depth * w * x, "ORIGINAL input"),
    (check_residual_chain, lambda x, w, depth: (1 + w) ** depth * x.item(), "autograd"),
    (check_same_padding, 1, "becomes 30x30"),
    (check_same_padding, 2.0, "whole number"),
    (check_same_padding, -1, "negative"),
    (check_pad_shortcut, lambda x, c, s: x[:, :, ::s, ::s], "append zero channels"),
    (check_pad_shortcut, lambda x, c, s: F.pad(x, (0, 0, 0, 0, 0, c - x.shape[1])), "every stride-th pixel"),
    (check_pad_shortcut, lambda x, c, s: F.pad(x[:, :, 1::s, 1::s], (0, 0, 0, 0, 0, c - x.shape[1])),
     "pixels 1, 3, 5"),
    (check_pad_shortcut, lambda x, c, s: F.pad(F.avg_pool2d(x, s), (0, 0, 0, 0, 0, c - x.shape[1])),
     "no pooling"),
    (check_pad_shortcut, lambda x, c, s: F.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, 0, c - x.shape[1]), value=1.0),
     "exactly zero"),
    (check_projection_params, 2560, "BatchNorm adds a weight and a bias"),
    (check_projection_params, 2656, "TWO learned numbers"),
    (check_projection_params, 576, "third stage"),
    (check_projection_params, 2176, "second stage"),
    (check_projection_params, 3040, "first stage keeps 16 channels"),
    (check_projection_params, 1234, "1x1 conv from a to b channels"),
    (check_projection_params, "2752", "whole number"),
    (lambda r: check_ranking(r, HISTORIES), ["plain-8", "res-8", "res-32", "plain-32"], "place 1"),
    (lambda r: check_ranking(r, HISTORIES), ["res-32", "res-8", "plain-8"], "missing: ['plain-32']"),
    (lambda r: check_ranking(r, HISTORIES), ["res-32", "res-8", "plain-8", "plain-64"], "unknown label"),
    (lambda r: check_ranking(r, HISTORIES), "res-32", "give a list"),
    (predicted, ["plain-8", "res-8", "res-32", "plain-32"], "not as you predicted. place 1"),
    (predicted, ["res-32", "res-8", "plain-8"], "exactly once"),
    (predicted, ["res-32", "res-8", "plain-8", "plain-64"], "unknown: ['plain-64']"),
    (predicted, "res-32", "give a list"),
    (check_preact_block, block_with(lambda s, x: relu(s.norm2(s.conv2(relu(s.norm1(s.conv1(x))))) + x)),
     "order conv -> bn -> conv -> bn"),
    (check_preact_block, block_with(lambda s, x: relu(x + preact_branch(s, x))), "ReLU acts after the addition"),
    (check_preact_block, block_with(preact_branch), "F(x) alone"),
    (check_preact_block, block_with(lambda s, x: shortcut_after_activation(s, x)), "add the raw input x"),
    (check_preact_block, block_with(lambda s, x: x + s.conv2(s.norm2(s.conv1(relu(s.norm1(x)))))),
     "between bn2 and conv2 is missing"),
    (check_preact_block, block_with(lambda s, x: x + s.conv2(relu(s.norm2(s.conv1(s.norm1(x)))))),
     "between bn1 and conv1 is missing"),
    (check_preact_block, block_with(lambda s, x: x + preact_branch(s, x) + preact_branch(s, x)), "should run once"),
    (check_preact_block, block_with(lambda s, x: (x + preact_branch(s, x))[:, :, ::2, ::2]), "same shape"),
    (check_preact_block, block_with(lambda s, x: x + 2 * preact_branch(s, x)), "step by step"),
    (check_preact_block, block_with(lambda s, x: x)(3), "pass the class itself"),
    (check_response_ratio, lambda b, x: ((b(x) - x).norm() / x.norm()).item(), "block(x) - x is not F(x)"),
    (check_response_ratio, lambda b, x: (x.norm() / b.branch(x).norm()).item(), "upside down"),
    (check_response_ratio, lambda b, x: b.branch(x).norm().item(), "divide it by ||x||"),
    (check_response_ratio, lambda b, x: (b(x).norm() / x.norm()).item(), "includes the shortcut"),
    (check_response_ratio, lambda b, x: (b.norm2(b.conv2(b.norm1(b.conv1(x)))).norm() / x.norm()).item(),
     "a ReLU between norm1 and conv2"),
    (check_response_ratio, lambda b, x: (b.branch(x).abs().mean() / x.abs().mean()).item(), "with F(x) ="),
    (check_response_ratio, lambda b, x: [1.0], "return one number"),
    (check_response_ratio, lambda b, x: 1 / 0, "ZeroDivisionError"),
]



def loss_plot(log=True, xlabel="step", legend=True, labels=None, data=None, skip=(), split=False):
    """A figure of HISTORIES drawn with one of the usual slips."""
    figure = plt.figure()
    axes = figure.add_subplot(2 if split else 1, 1, 1)
    for index, (label, losses) in enumerate(HISTORIES.items()):
        if label in skip:
            continue
        target = figure.add_subplot(2, 1, 2) if split and index == 1 else axes
        target.plot(data(label) if data else losses, **({} if labels is False else {"label": label}))
    axes.set(xlabel=xlabel, ylabel="loss", yscale="log" if log else "linear")
    if legend:
        axes.legend()
    return figure


LOSS_PLOT_WRONG = [
    (loss_plot(log=False), "axes.set_yscale('log')"),
    (loss_plot(legend=False), "add a legend"),
    (loss_plot(xlabel=""), "label both axes"),
    (loss_plot(labels=False, legend=False), "have no label"),
    (loss_plot(skip=("res-8",)), "no line is labelled res-8"),
    (loss_plot(data=lambda label: HISTORIES["plain-8"]), "does not show plain-32's losses"),
    (loss_plot(split=True), "spread over 2 axes"),
    (plt.figure(), "no lines yet"),
    (loss_plot().axes[0], "that is an Axes"),
    ({"plain-8": [1.0]}, "should be a matplotlib Figure"),
]
WRONG += [(lambda figure: check_loss_plot(figure, HISTORIES), figure, says) for figure, says in LOSS_PLOT_WRONG]
plt.close("all")


@pytest.mark.parametrize("check, answer, says", WRONG, ids=lambda v: v if isinstance(v, str) else None)
def test_a_wrong_answer_is_rejected_with_a_pointer(check, answer, says):
    result = check(answer)
    assert result.status == "failed" and not result.passed
    assert says in result.message, result.message


def test_a_right_answer_written_differently_passes():
    def dirac(channels):
        conv = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.dirac_(conv.weight)
        nn.init.zeros_(conv.bias)
        return conv

    assert check_identity_conv(dirac).passed
    assert check_projection_params(16 * 32 + 2 * 32 + 32 * 64 + 2 * 64).passed
    assert check_projection_params(2752.0).passed
    assert check_ranking(("res-32", "res-8", "plain-8", "plain-32"), HISTORIES).passed
    for label, losses in HISTORIES.items():   # pyplot's own calls, legend on the figure, steps from 0
        plt.semilogy(losses, label=label)
    plt.xlabel("step")
    plt.ylabel("loss")
    plt.gcf().legend()
    assert check_loss_plot(plt.gcf(), HISTORIES).passed
    plt.close("all")
    assert check_response_ratio(lambda block, x: block.branch(x).norm() / x.norm()).passed   # a tensor is fine
    swapped = block_with(lambda s, x: x + s.conv1(relu(s.norm2(s.conv2(relu(s.norm1(x)))))))
    assert check_preact_block(swapped).passed   # the layers' names do not matter, only what runs in what order


def test_a_prediction_trains_only_once_it_is_complete():
    runs = []

    def run():
        runs.append(1)
        return HISTORIES

    assert not check_prediction(["res-32"], run).passed and not runs
    assert check_prediction(["res-32", "res-8", "plain-8", "plain-32"], run).passed and len(runs) == 1


def test_results_display_as_one_line():
    result = check_same_padding(None)
    assert str(result).startswith("⏳ same_padding:") and repr(result) == str(result)
    assert "<div" in result._repr_html_() and "same_padding" in result._repr_html_()


def test_show_solution_waits_for_an_attempt(capsys):
    show_solution("same_padding")
    assert "Have a go first" in capsys.readouterr().out
    check_same_padding(None)                      # the untouched placeholder is not an attempt
    show_solution("same_padding")
    assert "Have a go first" in capsys.readouterr().out
    check_same_padding(1)                         # a real, wrong, attempt
    show_solution("same_padding")
    assert "padding_5x5 = 2" in capsys.readouterr().out
    show_solution("ranking", force=True)
    assert "sorted(histories" in capsys.readouterr().out
    with pytest.raises(KeyError, match="there are"):
        show_solution("nonsense")


def test_final_loss_and_accuracy():
    assert final_loss([5.0] * 5 + [1.0] * 10) == 1.0
    assert final_loss([3.0, 1.0], last=10) == 2.0
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
        model.bias.zero_()
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    assert accuracy(model, images, torch.tensor([0, 1, 1, 1]), batch_size=3) == 0.75
    assert model.training


# Lesson 9's optional CIFAR-10 run ------------------------------------------------------------------------------

def test_cifar_run_is_skipped_at_once_on_a_cpu(monkeypatch):
    monkeypatch.delenv(availability.CIFAR_VARIABLE, raising=False)
    monkeypatch.setattr(availability, "can_reach", lambda *a, **k: pytest.fail("a CPU run must not go online"))
    started = time.perf_counter()
    reason = availability.cifar10_skip_reason(torch.device("cpu"))
    assert time.perf_counter() - started < 0.5
    assert "no GPU" in reason and "RUN_ON_CPU = True" in reason


def test_cifar_run_needs_the_data_or_the_network(monkeypatch, tmp_path):
    monkeypatch.delenv(availability.CIFAR_VARIABLE, raising=False)
    monkeypatch.setattr(availability, "can_reach", lambda *a, **k: False)
    assert "offline" in availability.cifar10_skip_reason("cpu", allow_cpu=True, root=tmp_path)
    assert "offline" in availability.cifar10_skip_reason("cuda", root=tmp_path)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    assert availability.cifar10_skip_reason("cuda", root=tmp_path) is None
    monkeypatch.setenv(availability.CIFAR_VARIABLE, "0")
    assert "turns the CIFAR-10 run off" in availability.cifar10_skip_reason("cuda", root=tmp_path)
    monkeypatch.setenv(availability.CIFAR_VARIABLE, "1")
    assert availability.cifar10_skip_reason("cpu", root=tmp_path) is None


def test_can_reach_gives_up_quickly():
    started = time.perf_counter()
    assert availability.can_reach("192.0.2.1", 443, timeout=0.3) is False   # TEST-NET-1: never answers
    assert time.perf_counter() - started < 2


def test_the_cifar_cell_runs_when_it_is_not_skipped():
    """CI never has a GPU, so run lesson 9's CIFAR-10 cell here on fake data, with 2 steps instead of 300."""
    from resnet_course import cifar_style_net, seed_everything, train

    notebook = json.loads((Path(__file__).resolve().parent.parent / "notebooks"
                           / "09_from_block_to_network.ipynb").read_text())
    (cell,) = ["".join(c["source"]) for c in notebook["cells"]
               if c["cell_type"] == "code" and "cifar10_skip_reason(" in "".join(c["source"])]

    def fake_cifar10(train=True, limit=None, device="cpu"):
        # Small 8x8 colour images: the network pools globally, so any size runs, and this one runs fast.
        generator = torch.Generator().manual_seed(int(train))
        return (torch.randn(16, 3, 8, 8, generator=generator).to(device),
                torch.randint(0, 10, (16,), generator=generator).to(device))

    namespace = {
        "device": torch.device("cpu"), "cifar10_skip_reason": lambda device, allow_cpu: None,
        "load_cifar10": fake_cifar10, "cifar_style_net": cifar_style_net, "seed_everything": seed_everything,
        "train": lambda *args, **kwargs: train(*args, **{**kwargs, "steps": 2, "batch_size": 8, "progress": False}),
        "final_loss": final_loss, "accuracy": accuracy, "print": lambda *args: None,
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread is fastest, and immune to a busy machine
    try:
        exec(cell, namespace)
    finally:
        torch.set_num_threads(threads)
    assert set(namespace["cifar_histories"]) == {"plain-56", "res-56"}
    assert all(len(losses) == 2 for losses in namespace["cifar_histories"].values())
