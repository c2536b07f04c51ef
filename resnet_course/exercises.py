"""Self-checks for the lessons' "Your turn" exercises.

Each `check_...` function tests the learner's object by what it does, never by how it is written, and returns a
`CheckResult` that Jupyter shows as one coloured line: passed, not done yet (the placeholder is still there) or
what is wrong and how to fix it. A check never raises on the learner's mistakes, so "Run all" always works.
`show_solution(name)` prints a worked solution once the learner has tried (or when asked with force=True).
"""
import html
import math
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn

from .metrics import final_loss
from .solutions import SOLUTIONS

PASSED, NOT_DONE, FAILED = "passed", "not done yet", "failed"
_ICONS = {PASSED: "✅", NOT_DONE: "⏳", FAILED: "❌"}
_COLOURS = {PASSED: "#1a7f37", NOT_DONE: "#57606a", FAILED: "#b35900"}
_attempted = set()  # exercises the learner has really tried: their solution is then on offer


@dataclass(frozen=True)
class CheckResult:
    exercise: str
    status: str
    message: str

    @property
    def passed(self):
        return self.status == PASSED

    def __str__(self):
        return f"{_ICONS[self.status]} {self.exercise}: {self.message}"

    __repr__ = __str__

    def _repr_html_(self):
        return (f'<div style="color:{_COLOURS[self.status]}">{_ICONS[self.status]} <b>{html.escape(self.exercise)}'
                f"</b>: {html.escape(self.message)}</div>")


def _result(exercise, status, message):
    if status != NOT_DONE:
        _attempted.add(exercise)
    return CheckResult(exercise, status, message)


def _call(exercise, function, *args):
    """(value, None) when `function(*args)` ran, else (None, CheckResult) explaining why it did not."""
    try:
        return function(*args), None
    except NotImplementedError:
        return None, _result(exercise, NOT_DONE, "replace the `raise NotImplementedError(...)` line with your code, "
                                                 "then run this cell again.")
    except Exception as error:  # the learner's code failed: say where, do not crash the notebook
        arguments = ", ".join(_short(a) for a in args)
        return None, _result(exercise, FAILED, f"calling {getattr(function, '__name__', 'your function')}"
                                               f"({arguments}) raised {type(error).__name__}: {error}")


def _short(value):
    return f"tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else repr(value)


# Lesson 1 ---------------------------------------------------------------------------------------------------

def check_identity_conv(make_identity_conv):
    """`make_identity_conv(channels)` must return a 3x3 nn.Conv2d whose output equals its input."""
    name = "identity_conv"
    if isinstance(make_identity_conv, nn.Module) or not callable(make_identity_conv):
        return _result(name, FAILED, "pass the function itself: check_identity_conv(make_identity_conv), "
                                     "without calling it.")
    for channels in (8, 3):
        conv, problem = _call(name, make_identity_conv, channels)
        if problem:
            return problem
        if not isinstance(conv, nn.Conv2d):
            return _result(name, FAILED, f"make_identity_conv({channels}) returned {type(conv).__name__}, not an "
                                         "nn.Conv2d: the point is that a real convolution layer can compute x.")
        if conv.kernel_size != (3, 3):
            return _result(name, FAILED, f"the convolution has kernel_size {conv.kernel_size}; keep it 3x3, the "
                                         "size every layer of our networks uses.")
        x = torch.randn(2, channels, 8, 8, generator=torch.Generator().manual_seed(channels),
                        device=conv.weight.device)
        with torch.no_grad():
            try:
                y = conv(x)
            except RuntimeError as error:
                return _result(name, FAILED, f"the convolution cannot take {channels} input channels: {error}")
        if y.shape != x.shape:
            return _result(name, FAILED, f"a {tuple(x.shape)} input came out as {tuple(y.shape)}; use padding=1 "
                                         "so a 3x3 kernel keeps height and width, and as many output channels "
                                         "as input channels.")
        error = (y - x).abs().max().item()
        if error > 1e-5:
            return _result(name, FAILED, f"conv(x) differs from x by up to {error:.3g}. "
                                         + _identity_hint(conv, x, y))
    return _result(name, PASSED, "conv(x) equals x for 8 and for 3 channels. A ReLU after it changes nothing "
                                 "either, since its input already came out of a ReLU: a deeper plain net without "
                                 "BatchNorm could insert such layers and compute exactly what the shallow net "
                                 "computes (BatchNorm comes next).")


def _identity_hint(conv, x, y):
    if y.abs().max().item() < 1e-6:
        return ("The output is all zeros: now put a 1 at the centre of each channel's own kernel, "
                "weight[c, c, 1, 1] = 1.")
    if torch.allclose(y, x.sum(1, keepdim=True).expand_as(x), atol=1e-5):
        return ("Every output channel is the sum of all input channels: set only weight[c, c, 1, 1] (channel c to "
                "itself) to 1, and weight[c, d, 1, 1] to 0 for d != c.")
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        if torch.allclose(y[:, :, 1:-1, 1:-1], x.roll((dy, dx), (2, 3))[:, :, 1:-1, 1:-1], atol=1e-5):
            return "The output is the input shifted by one pixel: the 1 must sit at the kernel's centre, index [1, 1]."
    if conv.bias is not None and conv.bias.abs().max().item() > 0:
        return "The bias adds a constant: set it to zero (or build the conv with bias=False)."
    return ("Each output channel c should copy input channel c: weight[c, c, 1, 1] = 1 and every other weight 0 "
            "(start from conv.weight.zero_()).")


# Lesson 2 ---------------------------------------------------------------------------------------------------

def check_residual_chain(residual_chain):
    """`residual_chain(x, w, depth)` must apply `depth` residual steps x -> x + w * x."""
    name = "residual_chain"
    if not callable(residual_chain):
        return _result(name, FAILED, "pass the function itself: check_residual_chain(residual_chain).")
    for start, w, depth in ((1.5, 0.1, 20), (-2.0, 0.5, 3)):
        x = torch.tensor(start, requires_grad=True)
        out, problem = _call(name, residual_chain, x, w, depth)
        if problem:
            return problem
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            return _result(name, FAILED, "return a tensor computed from x with torch operations (no .item(), no "
                                         "float()), so autograd can follow it back to x.")
        (slope,) = torch.autograd.grad(out.sum(), x)
        want = (1 + w) ** depth
        if math.isclose(slope.item(), want, rel_tol=1e-4) and math.isclose(out.item(), start * want, rel_tol=1e-4):
            continue
        if math.isclose(slope.item(), w ** depth, rel_tol=1e-3):
            return _result(name, FAILED, "this is the plain chain (x -> w * x): add the input back at each step.")
        if math.isclose(slope.item(), 1.0, rel_tol=1e-4):
            return _result(name, FAILED, "the slope is exactly 1: you added w itself (x -> x + w). The branch "
                                         "should be w times the current value: x -> x + w * x.")
        if math.isclose(out.item(), start * (1 + depth * w), rel_tol=1e-4):
            return _result(name, FAILED, "every step added w times the ORIGINAL input; add w times the current "
                                         "value instead (reassign x in the loop).")
        return _result(name, FAILED, f"with x={start}, w={w}, depth={depth} the output is {out.item():.4g} and "
                                     f"d out/d x is {slope.item():.4g}; a residual chain gives "
                                     f"{start * want:.4g} and (1 + w)^depth = {want:.4g}.")
    return _result(name, PASSED, "d out / d x = (1 + w)^depth: expanding the product, one term is 1 * 1 * ... * 1, "
                                 "the path through the skips alone, so the slope cannot vanish the way w^depth does.")


# Lesson 3 ---------------------------------------------------------------------------------------------------

def check_same_padding(padding):
    """`padding` must keep a 32x32 map at 32x32 under a stride-1 5x5 convolution."""
    name, kernel_size, size = "same_padding", 5, 32
    if padding is None:
        return _result(name, NOT_DONE, "replace None with a whole number, then run this cell again.")
    if isinstance(padding, bool) or not isinstance(padding, int):
        return _result(name, FAILED, f"padding is a whole number of pixels added on each side; got {padding!r}.")
    if padding < 0:
        return _result(name, FAILED, "padding cannot be negative.")
    conv = nn.Conv2d(1, 1, kernel_size, padding=padding)
    with torch.no_grad():
        out = conv(torch.zeros(1, 1, size, size)).shape[-1]
    formula = f"({size} + 2*{padding} - {kernel_size}) // 1 + 1 = {out}"
    if out == size:
        return _result(name, PASSED, f"{formula}. For an odd kernel size k and stride 1, padding (k - 1) / 2 keeps "
                                     "the size: 1 for 3x3, 2 for 5x5, 3 for 7x7.")
    return _result(name, FAILED, f"with padding={padding} the {size}x{size} map becomes {out}x{out}: {formula}. "
                                 f"The kernel eats {kernel_size - 1} pixels per dimension; the padding on both "
                                 "sides must give them back.")


# Lesson 4 ---------------------------------------------------------------------------------------------------

def check_pad_shortcut(pad_shortcut):
    """`pad_shortcut(x, out_channels, stride)` must be the paper's option A: subsample, then zero channels."""
    name = "pad_shortcut"
    if not callable(pad_shortcut):
        return _result(name, FAILED, "pass the function itself: check_pad_shortcut(pad_shortcut).")
    generator = torch.Generator().manual_seed(0)
    for in_channels, out_channels, stride, size in ((4, 8, 2, 8), (3, 6, 1, 5), (4, 4, 2, 6)):
        x = torch.randn(2, in_channels, size, size, generator=generator)
        out, problem = _call(name, pad_shortcut, x, out_channels, stride)
        if problem:
            return problem
        call = f"pad_shortcut(x of shape {tuple(x.shape)}, out_channels={out_channels}, stride={stride})"
        if not isinstance(out, torch.Tensor):
            return _result(name, FAILED, f"{call} returned {type(out).__name__}; return a tensor.")
        kept = x[:, :, ::stride, ::stride]
        want = (2, out_channels, *kept.shape[2:])
        if tuple(out.shape) != want:
            fixes = []
            if out.dim() == 4 and out.shape[1] != out_channels:
                fixes.append(f"it has {out.shape[1]} channels: append zero channels up to out_channels")
            if out.dim() == 4 and tuple(out.shape[2:]) != tuple(kept.shape[2:]):
                fixes.append("keep every stride-th pixel in height and width: x[:, :, ::stride, ::stride]")
            return _result(name, FAILED, f"{call} has shape {tuple(out.shape)}, expected {want}"
                                         + (f"; {'; '.join(fixes)}." if fixes else "."))
        if out.dtype != x.dtype or out.device != x.device:
            return _result(name, FAILED, "keep the input's dtype and device (F.pad and slicing do).")
        first, rest = out[:, :in_channels], out[:, in_channels:]
        if not torch.equal(first, kept):
            if stride > 1 and torch.equal(first, x[:, :, 1::stride, 1::stride]):
                return _result(name, FAILED, "you kept pixels 1, 3, 5, ...; keep 0, 2, 4, ... as a stride-2 1x1 "
                                             "convolution does: x[:, :, ::stride, ::stride].")
            return _result(name, FAILED, f"{call}: the first {in_channels} channels must be the subsampled input "
                                         "unchanged (x[:, :, ::stride, ::stride]); no pooling, no scaling.")
        if rest.numel() and rest.abs().max().item() != 0:
            return _result(name, FAILED, "the added channels must be exactly zero: option A adds no information "
                                         "and no parameters.")
    return _result(name, PASSED, "the input is subsampled and padded with zero channels: the shapes match the "
                                 "branch and the shortcut has no parameters, as in the paper's option A.")


# Lesson 5 ---------------------------------------------------------------------------------------------------

def check_ranking(ranking, histories):
    """`ranking` must list the runs of `histories` from the lowest final training loss to the highest."""
    name = "ranking"
    if ranking is None:
        return _result(name, NOT_DONE, "replace None with a list of the four labels, lowest final loss first.")
    finals = {label: final_loss(losses) for label, losses in histories.items()}
    truth = sorted(finals, key=finals.get)
    if isinstance(ranking, str) or not isinstance(ranking, (list, tuple)):
        return _result(name, FAILED, f"give a list of labels, e.g. {list(histories)!r} in the right order.")
    ranking = list(ranking)
    unknown = [label for label in ranking if label not in finals]
    if unknown:
        return _result(name, FAILED, f"unknown label(s) {unknown}; the runs are called {sorted(finals)}.")
    if sorted(ranking) != sorted(finals):
        missing = sorted(set(finals) - set(ranking))
        return _result(name, FAILED, f"name every run exactly once; missing: {missing or 'none'}, given "
                                     f"{len(ranking)} labels for {len(finals)} runs.")
    for place, (mine, right) in enumerate(zip(ranking, truth), start=1):
        if mine != right:
            return _result(name, FAILED, f"place {place}: you put {mine} (final loss {finals[mine]:.3g}), but "
                                         f"{right} ended lower ({finals[right]:.3g}). Compare the right ends of "
                                         "the curves, or the printed numbers.")
    return _result(name, PASSED, "lowest first: " + " < ".join(f"{label} ({finals[label]:.3g})" for label in truth)
                   + ".")


def check_loss_plot(figure, histories):
    """`figure` must show every run of `histories` on one axis: labelled lines of the losses, a log-scaled loss
    axis, axis labels and a legend. It is judged by what it holds, however it was drawn."""
    name = "loss_plot"
    if figure is None:
        return _result(name, NOT_DONE, "replace None with your figure (figure, axes = plt.subplots() gives you "
                                       "one), then run this cell again.")
    if isinstance(figure, Axes):
        return _result(name, FAILED, "that is an Axes; pass the Figure it belongs to (figure, axes = "
                                     "plt.subplots() gives both, and axes.figure is the Figure too).")
    if not isinstance(figure, Figure):
        return _result(name, FAILED, f"figure should be a matplotlib Figure, got {type(figure).__name__}.")
    drawn = [axes for axes in figure.axes if axes.get_lines()]
    if len(drawn) != 1:
        return _result(name, FAILED, "the figure has no lines yet: axes.plot(losses, label=name) draws one run."
                       if not drawn else f"the lines are spread over {len(drawn)} axes; draw every run on the "
                                         "same one, so that the curves can be compared at a glance.")
    axes = drawn[0]
    problem = _loss_lines_problem(axes, histories) or _loss_axes_problem(figure, axes, histories)
    if problem:
        return _result(name, FAILED, problem)
    return _result(name, PASSED, f"{len(histories)} labelled runs on one log-scaled axis, with axis labels and a "
                                 "legend. On a log scale equal ratios look equal: 1 to 0.1 spans as much as 0.01 "
                                 "to 0.001, so the small late losses stay readable.")


def _loss_lines_problem(axes, histories):
    lines = {line.get_label(): line for line in axes.get_lines() if not line.get_label().startswith("_")}
    missing = [label for label in histories if label not in lines]
    if missing and len(lines) < len(axes.get_lines()):
        return (f"some lines have no label: pass label=name to axes.plot, with the run's name as in histories "
                f"({', '.join(histories)}).")
    if missing:
        return f"no line is labelled {', '.join(missing)}: draw every run of histories, each with label=its name."
    extra = [label for label in lines if label not in histories]
    if extra:
        return f"the line(s) {', '.join(extra)} are no run of histories; the runs are {', '.join(histories)}."
    for label, losses in histories.items():
        shown = np.asarray(lines[label].get_ydata(), dtype=float)
        if shown.shape != (len(losses),) or not np.allclose(shown, losses):
            return (f"the line labelled {label} does not show {label}'s losses: its y-values should be "
                    f"histories[{label!r}], the loss of every step.")
    return None


def _loss_axes_problem(figure, axes, histories):
    if axes.get_yscale() != "log":
        return ("the loss axis is linear, so the late losses, a hundred times smaller than the first ones, all "
                "look like zero: axes.set_yscale('log').")
    if not axes.get_xlabel().strip() or not axes.get_ylabel().strip():
        return "label both axes: axes.set_xlabel('step') and axes.set_ylabel('training loss')."
    legends = [axes.get_legend(), *figure.legends]
    shown = {text.get_text() for legend in legends if legend is not None for text in legend.get_texts()}
    if not shown:
        return "add a legend (axes.legend()), so that the reader knows which line is which run."
    if set(histories) - shown:
        return f"the legend misses {', '.join(sorted(set(histories) - shown))}."
    return None


# Lesson 9 ---------------------------------------------------------------------------------------------------

def check_projection_params(projection_params):
    """The parameters that ResNet-20's two projection shortcuts (1x1 conv + BatchNorm) add."""
    name = "projection_params"
    if projection_params is None:
        return _result(name, NOT_DONE, "replace None with a whole number (you may write it as arithmetic).")
    if isinstance(projection_params, float) and projection_params.is_integer():
        projection_params = int(projection_params)
    if isinstance(projection_params, bool) or not isinstance(projection_params, int):
        return _result(name, FAILED, f"give a whole number of parameters; got {projection_params!r}.")
    small, large = 16 * 32 + 2 * 32, 32 * 64 + 2 * 64
    diagnoses = {
        small + large: None,
        16 * 32 + 32 * 64: "that counts the 1x1 convolutions only; each BatchNorm adds a weight and a bias per "
                           "output channel.",
        16 * 32 + 32 * 64 + 32 + 64: "each BatchNorm has TWO learned numbers per channel (weight and bias); its "
                                     "running mean and variance are buffers, not parameters.",
        small: "that is the 16 -> 32 projection alone; the third stage (32 -> 64) needs one too.",
        large: "that is the 32 -> 64 projection alone; the second stage (16 -> 32) needs one too.",
        small + large + 16 * 16 + 2 * 16: "the first stage keeps 16 channels and stride 1, so its shortcuts stay "
                                          "plain identities: only two blocks change shape.",
    }
    if projection_params not in diagnoses:
        return _result(name, FAILED, f"{projection_params:,} is not it. A 1x1 conv from a to b channels has a*b "
                                     "weights (no bias before BatchNorm), its BatchNorm 2*b; ResNet-20 changes "
                                     "shape twice, 16 -> 32 and 32 -> 64.")
    if diagnoses[projection_params]:
        return _result(name, FAILED, f"{projection_params:,}: {diagnoses[projection_params]}")
    return _result(name, PASSED, f"(16*32 + 2*32) + (32*64 + 2*64) = {small} + {large} = {small + large:,}; and "
                                 f"269,722 + {small + large:,} = 272,474, the projection version's count.")


# Solutions --------------------------------------------------------------------------------------------------

def show_solution(name, force=False):
    """Print the worked solution of exercise `name`, once it has been tried (or with force=True)."""
    if name not in SOLUTIONS:
        raise KeyError(f"no exercise {name!r}; there are: {', '.join(sorted(SOLUTIONS))}")
    if name not in _attempted and not force:
        print(f"Have a go first: run the check with your own answer. If you are stuck, "
              f'show_solution("{name}", force=True) shows it anyway.')
        return
    print(SOLUTIONS[name].strip())


# Lesson 6 ---------------------------------------------------------------------------------------------------

def check_prediction(prediction, run, names=("plain-8", "plain-32", "res-8", "res-32")):
    """`prediction` orders `names` from the lowest final training loss to the highest, written before `run()`
    trains the networks and returns {label: losses}. Nothing trains until the prediction is complete."""
    name = "prediction"
    if prediction is None:
        return _result(name, NOT_DONE, "replace None with your predicted order; the networks train only once you "
                                       "have written it down.")
    if isinstance(prediction, str) or not isinstance(prediction, (list, tuple)):
        return _result(name, FAILED, f"give a list of labels, e.g. {list(names)!r} in the order you expect.")
    unknown = [label for label in prediction if label not in names]
    if unknown or sorted(prediction) != sorted(names):
        return _result(name, FAILED, f"name each of {sorted(names)} exactly once"
                                     + (f"; unknown: {unknown}" if unknown else "") + ". Nothing was trained yet.")
    verdict = check_ranking(list(prediction), run())
    if verdict.passed:
        return _result(name, PASSED, f"as you predicted, {verdict.message}")
    return _result(name, FAILED, f"not as you predicted. {verdict.message} Which of the two rules of this lesson "
                                 "did your setting test?")


# Lesson 7 ---------------------------------------------------------------------------------------------------

def check_preact_block(block_class):
    """`block_class(channels)` must compute x + conv(relu(bn(conv(relu(bn(x)))))), with nothing after the sum."""
    name = "preact_block"
    if not isinstance(block_class, type) or not issubclass(block_class, nn.Module):
        return _result(name, FAILED, "pass the class itself: check_preact_block(PreActBlock).")
    for channels in (8, 3):
        block, problem = _call(name, block_class, channels)
        if problem:
            return problem
        norms = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
        convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
        if len(norms) != 2 or len(convs) != 2:
            return _result(name, FAILED, f"the block has {len(norms)} BatchNorm and {len(convs)} convolution layers; "
                                         "keep the two of each that __init__ creates.")
        x = torch.randn(4, channels, 6, 6, generator=torch.Generator().manual_seed(channels),
                        device=convs[0].weight.device)
        block.train()
        ran, problem = _call(name, _run_recording, block, x, norms + convs)
        if problem:
            return problem
        out, calls = ran
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            return _result(name, FAILED, f"a {tuple(x.shape)} input must come out with the same shape; got {got}.")
        kinds = ["bn" if isinstance(m, nn.BatchNorm2d) else "conv" for m in calls]
        if len(kinds) != 4:
            return _result(name, FAILED, f"each of the four layers should run once; they ran {len(kinds)} times in "
                                         f"all ({' -> '.join(kinds) or 'none'}).")
        if kinds != ["bn", "conv", "bn", "conv"]:
            return _result(name, FAILED, f"the layers ran in the order {' -> '.join(kinds)}. Pre-activation means "
                                         "each convolution gets a normalised, activated input: bn1 -> relu -> conv1 "
                                         "-> bn2 -> relu -> conv2.")
        wrong = _preact_mistake(out, x, *calls)
        if wrong:
            return _result(name, FAILED, wrong)
    return _result(name, PASSED, "out = x + F(x), and nothing touches the sum: a stack of these blocks carries x_l "
                                 "to x_L unchanged, plus the branches' outputs, and the gradient the same way back.")


def _run_recording(block, x, layers):
    """block(x), and the `layers` in the order they ran."""
    calls = []
    hooks = [layer.register_forward_hook(lambda layer, args, out: calls.append(layer)) for layer in layers]
    try:
        return block(x), calls
    finally:
        for hook in hooks:
            hook.remove()


def _preact_mistake(out, x, bn1, conv1, bn2, conv2):
    """None when `out` is the pre-activation block's output, else what is wrong with it."""
    with torch.no_grad():
        def branch(first_relu=True, second_relu=True):
            h = bn1(x)
            h = conv1(torch.relu(h) if first_relu else h)
            h = bn2(h)
            return conv2(torch.relu(h) if second_relu else h)

        right = x + branch()
        candidates = [
            (right, None),
            (torch.relu(right), "a ReLU acts after the addition: that is the original block. Return the sum itself, "
                                "so that the shortcut stays an exact identity."),
            (right - x, "the output is F(x) alone: add the block's input x to it."),
            (torch.relu(bn1(x)) + branch(), "the shortcut carries relu(bn1(x)); add the raw input x, so that nothing "
                                            "but the identity sits on the shortcut."),
            (x + branch(second_relu=False), "the ReLU between bn2 and conv2 is missing."),
            (x + branch(first_relu=False), "the ReLU between bn1 and conv1 is missing."),
        ]
        for candidate, message in candidates:
            if torch.allclose(out, candidate, atol=1e-5):
                return message
    return ("the output is not x + conv2(relu(bn2(conv1(relu(bn1(x)))))); compute the branch step by step, "
            "then add x.")


# Lesson 8 ---------------------------------------------------------------------------------------------------

def check_response_ratio(response_ratio):
    """`response_ratio(block, x)` must be ||F(x)|| / ||x|| for a shape-keeping residual block of `models`."""
    from .models import ResidualUnit  # here: models is not needed by the other checks

    name = "response_ratio"
    if not callable(response_ratio):
        return _result(name, FAILED, "pass the function itself: check_response_ratio(response_ratio).")
    generator = torch.Generator().manual_seed(0)
    for channels in (8, 4):
        torch.manual_seed(channels)
        block = ResidualUnit(channels, channels, 1).eval()
        with torch.no_grad():
            for norm in (block.norm1, block.norm2):  # trained-looking statistics, so that F is not tiny
                norm.running_var.uniform_(0.5, 2.0, generator=generator)
                norm.weight.uniform_(0.2, 1.0, generator=generator)
        x = torch.relu(torch.randn(16, channels, 6, 6, generator=generator))  # a block's input comes out of a ReLU
        value, problem = _call(name, response_ratio, block, x)
        if problem:
            return problem
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _result(name, FAILED, f"return one number (a float or a one-element tensor); got {value!r}.")
        with torch.no_grad():
            wrong = _ratio_mistake(value, block, x)
        if wrong:
            return _result(name, FAILED, wrong)
    return _result(name, PASSED, "||F(x)|| / ||x||. A ratio below 1 means that the branch adds a correction "
                                 "smaller than what the shortcut carries. (block.branch(x) computes the same F(x).)")


def _ratio_mistake(value, block, x):
    branch = block.norm2(block.conv2(torch.relu(block.norm1(block.conv1(x)))))
    right = (branch.norm() / x.norm()).item()
    known = [
        (right, None),
        (1 / right, "the ratio is upside down: the branch's size F(x) goes on top, the input's size x below."),
        (branch.norm().item(), "that is ||F(x)|| alone: divide it by ||x||, so that the size means something "
                               "relative to what the shortcut carries."),
        (((block(x) - x).norm() / x.norm()).item(),
         "block(x) - x is not F(x): this block applies a ReLU after the addition, which changes the sum wherever it "
         "is negative. Compute F(x) from the layers: conv1, norm1, ReLU, conv2, norm2."),
        ((block(x).norm() / x.norm()).item(), "block(x) includes the shortcut; the response is the branch F(x) alone."),
        ((block.norm2(block.conv2(block.norm1(block.conv1(x)))).norm() / x.norm()).item(),
         "F(x) has a ReLU between norm1 and conv2."),
    ]
    for candidate, message in known:
        if math.isclose(value, candidate, rel_tol=1e-4):
            return message
    return (f"got {value:.4g}; for this block and input ||F(x)|| / ||x|| is {right:.4g}, with F(x) = "
            "norm2(conv2(relu(norm1(conv1(x))))).")
