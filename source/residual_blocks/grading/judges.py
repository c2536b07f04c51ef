"""The judges of the residual_blocks assignment: one per graded test cell, named by its grade_id.

Each runs in the grader's process, never in a kernel that ran a student's code: ``judge(student, reference,
seed)`` reads what the probe of the same name (probes.py) observed in the student's kernel, and fails the test with
a teaching message (``check``) or returns the message of a passed test. It trusts no observation: inputs and the
weights the probe gave the student's layers are drawn again from the seed, and the values a test rests on are
recomputed here, with the student's own layers, by the formula the part asks for (the visible tests, like the
notebook's own, check shapes and signs). Observations that only describe (a type's name, a count, a flag) count
only together with values that only a working answer produces.
"""
import math

import torch
import torch.nn.functional as F

from autograde.judging import Malformed, Observations, check

from . import probes

torch.set_num_threads(1)  # tiny tensors: more threads only spin and fight for the cores
ATOL, RTOL = 1e-4, 1e-4
PADDING_HINT = "3x3 convolutions need padding=1 so that only the stride changes the size"
PROJECTION_HINT = "the 1x1 projection has no padding: its stride alone sets the size"
DEVICE_ADVICE = ("Inside forward, create tensors on the input's device (torch.zeros_like(x), x.new_zeros(...), "
                 "device=x.device) and never call .cpu(), .cuda() or .to('cpu').")


def hint(stop: dict) -> str:
    """More for a message of a failed call (autograde.judging appends it)."""
    if "must match the size of tensor" in str(stop.get("message")):
        return (" (tensors that are added must have the same shape: check the strides, the paddings and that the "
                "shortcut matches the branch)")
    return ""


# -- what every judge uses -----------------------------------------------------------------------------------

def seeded(seed, salt, shape, scale=1.0, shift=0.0):
    """The probe's input drawn with *salt*, in float64, on the CPU."""
    return probes.normal(seed, salt, shape, scale, shift).double()


def values(seed, salt, layer: dict) -> dict:
    return {name: value.double() for name, value in probes.layer_values(seed, salt, layer).items()}


def close(a, b, atol=ATOL, rtol=RTOL) -> bool:
    return tuple(a.shape) == tuple(b.shape) and bool(torch.allclose(a, b, atol=atol, rtol=rtol))


def gap(a, b) -> float:
    return (a - b).abs().max().item() if tuple(a.shape) == tuple(b.shape) else float("nan")


def expected_hw(size: int, stride: int) -> int:
    # A 3x3 convolution with padding 1, or a 1x1 convolution without padding: both give floor((size - 1) / s) + 1.
    return (size - 1) // stride + 1


def module(record, what: str, noun="an nn.Module"):
    """Fail unless the part returned a module."""
    check(record.flag("module"), f"{what} should be {noun}, got {record.text('type')}")


def tensor(record, what: str):
    """The output a probe recorded: a tensor, on the input's device."""
    check(record.flag("tensor"), f"{what} should return a tensor, got {record.get('type')}")
    device, given = record.text("device"), record.get("input_device", record.get("device"))
    check(device == given, f"{what}: the input is on {given} but the output is on {device}; keep every tensor on "
                           "the input's device")
    return record.tensor("values")


def shape_problem(what, expected, got, stride, hint=PADDING_HINT):
    """A teaching message for an output of the wrong shape, or None when the shape is right."""
    expected, got = tuple(expected), tuple(got)
    if got == expected:
        return None
    if len(got) != len(expected):
        return f"{what} should return a tensor of shape {expected}, got {got}"
    if got[1] != expected[1]:
        return f"{what} should output {expected[1]} channels: expected {expected}, got {got}"
    if stride > 1 and got[2:] == (expected[2] * stride, expected[3] * stride):
        change = "halve" if stride == 2 else f"divide by {stride}"
        return f"{what} has stride {stride}, so it must {change} H and W: expected {expected}, got {got}"
    return f"{what} changes H and W wrongly: expected {expected}, got {got} ({hint})"


def output(record, what, expected, stride=1, hint=PADDING_HINT):
    y = tensor(record, what)
    problem = shape_problem(what, expected, y.shape, stride, hint)
    check(problem is None, problem)
    return y


def conv(x, layer: dict, weights: dict, stride=None, padding=None):
    """A Conv2d layer's computation; *stride* and *padding* default to the layer's own."""
    stride = tuple(layer["stride"]) if stride is None else stride
    padding = (layer["padding"] if isinstance(layer["padding"], str) else tuple(layer["padding"])) \
        if padding is None else padding
    if layer.get("padding_mode", "zeros") != "zeros" and not isinstance(padding, str):
        x = F.pad(x, [p for p in reversed(padding) for _ in range(2)], mode=layer["padding_mode"])
        padding = 0
    return F.conv2d(x, weights["weight"], weights.get("bias"), stride, padding, tuple(layer["dilation"]),
                    layer["groups"])


def norm(x, layer: dict, weights: dict, training: bool):
    """A BatchNorm layer's computation, with the batch's statistics (training) or its running ones."""
    batch = training or not layer["tracks"]
    return F.batch_norm(x, None if batch else weights["running_mean"], None if batch else weights["running_var"],
                        weights["weight"] if layer["affine"] else None, weights["bias"] if layer["affine"] else None,
                        batch, 0.0, layer["eps"])


def compute(x, layer: dict, weights: dict, training=False):
    if layer["type"] == "conv":
        return conv(x, layer, weights)
    if layer["type"] == "bn":
        return norm(x, layer, weights, training)
    return F.linear(x, weights["weight"], weights.get("bias"))


MAX_WEIGHTS = 1 << 16  # of one layer: the assignment's largest (a 64-to-64 3x3 convolution) has 36,864
LAYER_RULES = ("the layers should be plain ones: nn.Conv2d without dilation, groups or a padding mode, "
               "nn.BatchNorm2d with its defaults (affine, running statistics, a small eps)")


def layer_list(record, count: int | None = None) -> list[dict]:
    """The layers a probe described, checked before a judge draws their weights: sizes the assignment can have, and
    the hyperparameters it asks for (a BatchNorm whose huge eps flattens whatever it gets computes nothing)."""
    layers = record.items("layers", count)
    for index, layer in enumerate(layers):
        if not isinstance(layer, dict) or layer.get("index") != index or layer.get("type") not in ("conv", "bn",
                                                                                                    "linear"):
            raise Malformed("a layer description that is not the probe's")
        shape = layer.get("weight") if layer["type"] != "bn" else [layer.get("features")]
        if not (isinstance(shape, list) and shape and all(isinstance(n, int) and 0 < n <= 4096 for n in shape)
                and math.prod(shape) <= MAX_WEIGHTS and len(shape) == {"conv": 4, "bn": 1, "linear": 2}[layer["type"]]):
            raise Malformed("a layer of a size this assignment never has")
        check(_plain(layer), f"{LAYER_RULES}; found {layer}")
    return layers


def _plain(layer: dict) -> bool:
    if layer["type"] == "bn":
        return layer.get("affine") is True and layer.get("tracks") is True and isinstance(layer.get("eps"), float) \
            and 0 < layer["eps"] <= 1e-3
    if layer["type"] == "linear":
        return isinstance(layer.get("bias"), bool)
    return (layer.get("dilation") == [1, 1] and layer.get("groups") == 1 and layer.get("padding_mode") == "zeros"
            and isinstance(layer.get("bias"), bool) and layer["weight"][2] <= 7 and layer["weight"][3] <= 7
            and all(isinstance(n, int) and 0 < n <= 8 for n in layer.get("stride", []))
            and (layer.get("padding") in ("same", "valid") or (
                isinstance(layer.get("padding"), list) and all(isinstance(n, int) and 0 <= n <= 8
                                                               for n in layer["padding"]))))


def from_input(x, strides=(1,)) -> list:
    """What a block's first layer may be given: its input, that after a ReLU, or every s-th pixel (or the average
    of s-by-s squares) of it, for a shortcut that subsamples first."""
    found = []
    for s in strides:
        found += [x[:, :, ::s, ::s], F.relu(x[:, :, ::s, ::s])] + ([F.avg_pool2d(x, s)] if s > 1 else [])
    return found


def verify_trace(what, gate, x, seed, salt, strides=(1,)) -> None:
    """The gate of the tests about layers: every Conv2d and BatchNorm layer of the module ran, each on what the
    module computed from the probe's input x (x itself, or an earlier layer's output, maybe after a ReLU), and
    each returned what such a layer computes with the weights the probe gave it. Only a module whose layers
    compute pass it: sending these values costs computing them."""
    layers, records = layer_list(gate), gate.each("trace")
    check(records, f"{what}: none of its Conv2d or BatchNorm layers ran in forward")
    check(len(records) <= 4 * len(layers), f"{what}: its layers ran {len(records)} times in one forward pass")
    seen, given_so_far = set(), from_input(x, strides)
    for record in records:
        index = record.integer("layer")
        check(0 <= index < len(layers), "the trace names a layer the probe did not describe")
        layer, given, returned = layers[index], record.tensor("input"), record.tensor("output")
        check(any(close(given, earlier, 1e-4, 1e-4) for earlier in given_so_far),
              f"{what}: its {layer['type']} layer {index + 1} gets something its forward did not compute from x")
        computed = compute(given, layer, values(seed, salt, layer))
        check(close(returned, computed, 1e-3, 1e-3),
              f"{what}: its {layer['type']} layer {index + 1} did not return what such a layer computes with its "
              f"weights (largest difference {gap(returned, computed):.3g}): does forward change them?")
        seen.add(index)
        given_so_far += [returned, F.relu(returned)]
    idle = [i + 1 for i, layer in enumerate(layers) if layer["type"] != "linear" and i not in seen]
    check(not idle, f"{what}: its layers {idle} never ran in forward; every layer it makes should be used")


def meta_messages(what, outcomes, expected, stride=1, hint=PADDING_HINT) -> None:
    """The meta-device runs (train and eval): no error, the output on the meta device, the right shape."""
    check(sorted(outcome.get("mode") for outcome in outcomes) == ["eval", "train"],
          "the observations do not cover the probe's meta-device runs")
    for outcome in outcomes:
        mode = outcome.text("mode")
        check(outcome.flag("ok"), f"{what} (in {mode} mode) fails on another device (here PyTorch's 'meta' device, "
                                  f"which has shapes but no values): {outcome.get('error')} {DEVICE_ADVICE}")
        check(outcome.flag("meta"), f"{what} should return its output on the input's device ('meta' here)")
        problem = shape_problem(what, expected, outcome.items("shape"), stride, hint)
        check(problem is None, problem)


def gradient_of(function, x, weights):
    """d sum(function(x) * weights) / dx, computed here."""
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        (function(x) * weights).sum().backward()
    return x.grad


def backward_record(record, what):
    check(record.flag("connected"), f"{what} returns a tensor cut off from the autograd graph (detach(), "
                                    "torch.no_grad() or .data): no gradient can flow back through it")
    return record.tensor("grad")


# -- part 1: conv_output_size ----------------------------------------------------------------------------

def number(answer) -> tuple:
    """(the value, whether it is a number) of what conv_output_size returned."""
    value = answer.get("value")
    return value, answer.text("type") not in ("bool", "str") and isinstance(value, (int, float))


def expected_sizes(reference, key, cases) -> list[int]:
    """What the source's own conv_output_size answered for *cases* (the reference run, with the same seed)."""
    answers = [number(answer)[0] for answer in reference.each(key)]
    check(len(answers) == len(cases), "the reference observations do not cover the probe's cases")
    return answers


def test_conv_output_size_visible(student, reference, seed):
    answers, cases = student.each("answers"), probes.visible_size_cases(seed)
    check(len(answers) == len(cases), "the observations do not cover the probe's cases")
    for args, answer, expected in zip(cases, answers, expected_sizes(reference, "answers", cases)):
        value, numeric = number(answer)
        check(numeric and value == expected, f"conv_output_size{args} should be {expected}, got {value}")
    return "conv_output_size: the visible cases, and more like them, are right"


def size_answer(what, answer, expected, rule="") -> None:
    """An int equal to *expected*: a float or a bool that compares equal is not one."""
    value, kind = answer.get("value"), answer.text("type")
    check(kind == "int", f"{what} should return an int, got {kind} {value!r}: use // for the floor division")
    check(value == expected, f"{what} should be {rule}{expected}, got {value}")


def test_conv_output_size_hidden(student, reference, seed):
    keyword, defaults = probes.hidden_size_cases(seed)
    named, positional, default = student.each("keyword"), student.each("positional"), student.each("defaults")
    check(len(named) == len(positional) == len(keyword) and len(default) == len(defaults),
          "the observations do not cover the probe's cases")
    right = expected_sizes(reference, "keyword", keyword)
    for (size, k, s, p), got, again, expected in zip(keyword, named, positional, right):
        size_answer(f"conv_output_size(size={size}, kernel_size={k}, stride={s}, padding={p})", got, expected,
                    f"floor(({size} + 2*{p} - {k}) / {s}) + 1 = ")
        size_answer(f"conv_output_size({size}, {k}, {s}, {p})", again, expected)
    for args, got, expected in zip(defaults, default, expected_sizes(reference, "defaults", defaults)):
        size_answer(f"conv_output_size{args} (the defaults are stride=1, padding=0)", got, expected)
    return f"conv_output_size: right for {len(keyword) + len(defaults)} sizes, kernels, strides and paddings"


# -- part 2: make_shortcut -------------------------------------------------------------------------------

def test_make_shortcut_visible(student, reference, seed):
    x = seeded(seed, "ms-visible", (2, 16, 8, 8))
    same, down = student.sub("same"), student.sub("down")
    module(same, "make_shortcut(16, 16)")
    y = output(same.sub("output"), "make_shortcut(16, 16)", (2, 16, 8, 8))
    check(torch.equal(y, x), "make_shortcut(16, 16) should return its input unchanged")
    module(down, "make_shortcut(16, 32, stride=2)")
    output(down.sub("output"), "make_shortcut(16, 32, stride=2)", (2, 32, 4, 4), 2, PROJECTION_HINT)
    check({layer["type"] for layer in layer_list(down)} == {"conv", "bn"},
          "make_shortcut(16, 32, stride=2) should be the projection: a 1x1 nn.Conv2d followed by nn.BatchNorm2d")
    verify_trace("make_shortcut(16, 32, stride=2)", down, x, seed, "ms-visible", strides=(1, 2))
    return "make_shortcut: the identity and the projection have the right shapes"


def test_make_shortcut_identity(student, reference, seed):
    configs = student.each("configs", len(probes.IDENTITY_CONFIGS))
    for (c, _), record in zip(probes.IDENTITY_CONFIGS, configs):
        what = f"make_shortcut({c}, {c}, stride=1)"
        module(record.sub("module"), what)
        n = record.sub("module").integer("parameters")
        check(n == 0, f"{what} keeps the shape (same channels, stride 1), so it must be the identity, a module "
                      f"without parameters; yours has {n} parameters. A projection is only for shape changes")
        default = record.sub("default")
        check(default.flag("module") and default.integer("parameters") == 0,
              f"make_shortcut({c}, {c}) (stride left at its default 1) should also be a parameter-free identity")
        for mode in ("train", "eval"):
            x = seeded(seed, f"identity/{c}/{mode}", (2, c, 6, 6))
            y = output(record.sub(mode).sub("output"), what, (2, c, 6, 6))
            check(torch.equal(record.sub(mode).tensor("input_after"), x),
                  f"{what} changed its input in place; it must leave x untouched")
            check(torch.equal(y, x), f"{what} should return its input unchanged (in {mode} mode); the largest "
                                     f"difference is {gap(y, x):.3g}")
        weights = seeded(seed, f"identity/{c}/weights", (2, c, 6, 6))
        grad = backward_record(record.sub("gradient"), what)
        check(close(grad, weights), f"{what}: the gradient must pass through the identity shortcut unchanged "
                                    "(d shortcut(x) / dx = 1)")
        meta_messages(what, record.each("meta", 2), (2, c, 6, 6))
    return "make_shortcut: the identity shortcut is right, in both modes, for gradients and on any device"


def projection_parameters(what, n, cin, cout) -> None:
    want = cin * cout + 2 * cout
    if n == want:
        return
    hints = {0: "it has no parameters, but the shape changes, so it needs the 1x1 projection",
             cin * cout: "it looks like a 1x1 convolution without the BatchNorm2d(out_channels) after it",
             9 * cin * cout + 2 * cout: "it looks like a 3x3 convolution; the projection is a 1x1 convolution",
             cin * cout + 3 * cout: "the 1x1 convolution has a bias; use bias=False (the BatchNorm after it has its "
                                    "own shift)",
             cin * cout + 2 * cin: "the BatchNorm normalizes the input instead of the convolution's output"}
    raise AssertionError(f"{what} should have {cin}*{cout} weights of a 1x1 convolution without bias plus 2*{cout} of "
                         f"BatchNorm2d({cout}) = {want} parameters, got {n}" + (f": {hints[n]}" if n in hints else ""))


def projection_layers(what, record, cout):
    layers = layer_list(record)
    convs, norms = by_type(layers)
    check(len(convs) == 1 and len(norms) == 1, f"{what} should be one 1x1 nn.Conv2d followed by one nn.BatchNorm2d, "
                                               f"found {len(convs)} Conv2d and {len(norms)} BatchNorm layers")
    check(tuple(convs[0]["weight"][2:]) == (1, 1), f"{what}: the projection is a 1x1 convolution, yours has "
                                                  f"kernel_size {tuple(convs[0]['weight'][2:])}")
    check(norms[0]["features"] == cout, f"{what}: the BatchNorm should be BatchNorm2d({cout}), it normalizes "
                                        f"{norms[0]['features']} channels")
    return convs[0], norms[0]


def test_make_shortcut_projection(student, reference, seed):
    configs = student.each("configs", len(probes.PROJECTION_CONFIGS))
    for (cin, cout, s, _), record in zip(probes.PROJECTION_CONFIGS, configs):
        what, hw, salt = f"make_shortcut({cin}, {cout}, stride={s})", expected_hw(8, s), f"projection/{cin}/{cout}/{s}"
        module(record.sub("module"), what)
        x = seeded(seed, salt + "/x", (2, cin, 8, 8), 2.0, 1.0)
        y = output(record.sub("eval").sub("output"), what, (2, cout, hw, hw), s, PROJECTION_HINT)
        check(torch.equal(record.tensor("input_after"), x), f"{what} changed its input in place; it must leave x "
                                                            "untouched")
        projection_parameters(what, record.sub("module").integer("parameters"), cin, cout)
        c, b = projection_layers(what, record, cout)
        cw, bw = values(seed, salt, c), values(seed, salt, b)

        def formula(t, training):
            return norm(conv(t, c, cw, s, 0), b, bw, training)

        if not close(y, formula(x, False)):
            changed = (tensor(record.sub("pixel"), what) - y).abs().sum(dim=(0, 1)) > 1e-6
            check(changed.sum().item() <= 1, f"{what}: changing one input pixel changes {int(changed.sum())} output "
                                             "pixels; a 1x1 convolution with stride s maps pixel (s*i, s*j) to pixel "
                                             "(i, j) only")
            raise AssertionError(f"{what} should compute BatchNorm2d(conv1x1(x, stride={s})): in eval mode the largest "
                                 f"difference from that is {gap(y, formula(x, False)):.3g} (is the BatchNorm applied "
                                 "to the convolution's output?)")
        trained = tensor(record.sub("train").sub("output"), what)
        check(close(trained, formula(x, True), 1e-3, 1e-3),
              f"{what}: in training mode the BatchNorm, the last layer, should normalize each output channel with the "
              f"batch's own mean and variance; the largest difference from that is {gap(trained, formula(x, True)):.3g}")
        grad = backward_record(record.sub("gradient"), what)
        weights = seeded(seed, salt + "/weights", (2, cout, hw, hw))
        check(grad.abs().sum().item() > 0 and close(grad, gradient_of(lambda t: formula(t, True), x, weights),
                                                    1e-3, 1e-3),
              f"{what}: the gradient that reaches the input through the projection is not the projection's")
        check(record.items("weight_grads", 1) == [True], f"{what}: the 1x1 convolution's weight gets no gradient")
        meta_messages(what, record.each("meta", 2), (2, cout, hw, hw), s, PROJECTION_HINT)
    return "make_shortcut: the projection is BatchNorm2d(conv1x1(x, stride)), in both modes, with its gradients"


# -- parts 3 and 4: the blocks ---------------------------------------------------------------------------

def shortcut_output(x, seed, config, lent: str, seeded_as: str, own=None, training=False):
    """What the block's shortcut computes: the stand-in the probe lent with salt *lent* (probes.StandInShortcut), or,
    when the block has a shortcut of its own (*own*: its layers, seeded with *seeded_as* + "/own-shortcut"), the
    identity or a 1x1 convolution followed by a BatchNorm, as make_shortcut gives them."""
    cin, cout, stride = config
    if own is None:
        if cin == cout and stride == 1:
            return x
        return F.conv2d(x, probes.shortcut_values(seed, lent, cin, cout).double(), stride=stride)
    layers = layer_list(Observations({"layers": own}, "the shortcut's layers"))
    if not layers:
        return x
    check([layer["type"] for layer in layers] == ["conv", "bn"] and tuple(layers[0]["weight"][2:]) == (1, 1),
          "its shortcut is neither the identity nor a 1x1 convolution followed by a BatchNorm, which make_shortcut "
          "gives: the block should take its shortcut from make_shortcut")
    salt = f"{seeded_as}/own-shortcut"
    return norm(conv(x, layers[0], values(seed, salt, layers[0])), layers[1], values(seed, salt, layers[1]), training)


def by_type(layers) -> tuple[list, list]:
    """The convolutions and the BatchNorms among *layers*, in order."""
    return [layer for layer in layers if layer["type"] == "conv"], [layer for layer in layers if layer["type"] == "bn"]


def split(layers, seed, salt):
    """The convolutions and BatchNorms among *layers*, each with the weights the probe gave it."""
    return tuple([(layer, values(seed, salt, layer)) for layer in kind] for kind in by_type(layers))


def two_and_two(what, convs, norms, residual):
    check(len(convs) == 2 and len(norms) == 2, f"{what} should have two 3x3 nn.Conv2d and two nn.BatchNorm2d layers"
                                               + (" besides its shortcut" if residual else "")
                                               + f", found {len(convs)} and {len(norms)}")


def stored_shortcut(record, what):
    shortcut = record.sub("shortcut")
    check(shortcut.flag("stored"), f"{what} should store its shortcut, the module returned by make_shortcut, as "
                                   f"self.shortcut; found {shortcut.get('type') or 'no attribute shortcut'}")
    return shortcut


def switched_off(layers, seed, salt, channels) -> list:
    """What a conv-BN branch seeded with *salt* outputs once probes.switch_off kept only its BatchNorms' biases: its
    last BatchNorm's bias on every pixel. One candidate per BatchNorm, as any of them could run last."""
    _, norms = split(layers, seed, salt)
    return [weights["bias"].view(1, -1, 1, 1) for layer, weights in norms if layer["features"] == channels]


def block_gate(what, record, seed, salt, cin, cout, stride) -> None:
    """The block test's gate (probes.gate): its layers, run on a seeded input, computed what layers compute."""
    gate = record.sub("gate")
    verify_trace(what, gate, seeded(seed, f"{salt}/{cin}/gate", (2, cin, 8, 8)), seed, f"{salt}/{cin}/gate")
    output(gate.sub("output"), what, (2, cout, expected_hw(8, stride), expected_hw(8, stride)), stride)


def branches(x, convs, norms, stride, training):
    """For every order of the two convolutions and two BatchNorms: the branch, and the usual mistakes in it."""
    def bn(h, pair):
        return norm(h, pair[0], pair[1], training)

    def cv(h, pair, s):
        return F.conv2d(h, pair[1]["weight"], pair[1].get("bias"), s, 1)

    found = []
    for c1, c2 in ((convs[0], convs[1]), (convs[1], convs[0])):
        for b1, b2 in ((norms[0], norms[1]), (norms[1], norms[0])):
            try:
                first = bn(cv(x, c1, stride), b1)
                found.append({"branch": bn(cv(F.relu(first), c2, 1), b2), "no_inner": bn(cv(first, c2, 1), b2),
                              "relu_before_bn": bn(cv(F.relu(bn(F.relu(cv(x, c1, stride)), b1)), c2, 1), b2)})
                if stride > 1:
                    found[-1]["late"] = bn(cv(F.relu(bn(cv(x, c1, 1), b1)), c2, stride), b2)
            except RuntimeError:  # this order does not fit the layers' shapes
                continue
    return found


LATE_STRIDE = "its stride is on the second convolution; the first one carries it"
# Mistakes of a residual block that the formula test and the adds-shortcut test both name.
MULTIPLIES = "it multiplies the branch by the shortcut; a residual block adds them"
RELU_ON_SHORTCUT = "it applies a ReLU to the shortcut before adding it"


def block_candidates(x, convs, norms, stride, training, shortcut):
    """(mistake or None, output): the block's formula with its own layers, and the usual mistakes."""
    relu, found = F.relu, []
    for b in branches(x, convs, norms, stride, training):
        if shortcut is None:
            found += [(None, relu(b["branch"])), ("it has no ReLU between the two conv-BN layers", relu(b["no_inner"])),
                      ("it has no ReLU at the end", b["branch"]),
                      ("it applies each ReLU before the BatchNorm; the order is conv -> BN -> ReLU",
                       relu(b["relu_before_bn"]))]
            if b["branch"].shape == x.shape:
                found.append(("it adds its input (a skip connection); a plain block has none", relu(b["branch"] + x)))
            if "late" in b:
                found.append((LATE_STRIDE, relu(b["late"])))
        elif b["branch"].shape == shortcut.shape:
            found += [(None, relu(b["branch"] + shortcut)),
                      ("it has no ReLU between the two conv-BN layers", relu(b["no_inner"] + shortcut)),
                      ("it applies the last ReLU before adding the shortcut; y = ReLU(F(x) + shortcut(x)) needs the ReLU "
                       "after the addition", relu(b["branch"]) + shortcut),
                      ("it has no ReLU after adding the shortcut", b["branch"] + shortcut),
                      (RELU_ON_SHORTCUT, relu(b["branch"] + relu(shortcut))),
                      ("it applies each ReLU before the BatchNorm; the order is conv -> BN -> ReLU",
                       relu(b["relu_before_bn"] + shortcut)),
                      (MULTIPLIES, relu(b["branch"] * shortcut)),
                      ("it does not add the shortcut", relu(b["branch"]))]
            if "late" in b and b["late"].shape == shortcut.shape:
                found.append((LATE_STRIDE, relu(b["late"] + shortcut)))
    return found


def block_formula(student, seed, name, salt, residual):
    formula = "ReLU(BN(conv3x3(ReLU(BN(conv3x3(x, stride)))))" + (" + shortcut(x))" if residual else ")")
    configs = student.each("configs", len(probes.BLOCK_CONFIGS))
    for (cin, cout, s), record in zip(probes.BLOCK_CONFIGS, configs):
        what = probes.signature(name, cin, cout, s)
        module(record.sub("module"), what)
        if residual:
            stored_shortcut(record, what)
        for mode in ("eval", "train"):
            observed, layer_salt = record.sub(mode), f"{salt}/{cin}/{cout}/{s}"
            convs, norms = split(layer_list(observed), seed, layer_salt)
            two_and_two(what, convs, norms, residual)
            x = seeded(seed, f"{layer_salt}/{mode}", (4, cin, 8, 8))
            y = output(observed.sub("output"), what, (4, cout, expected_hw(8, s), expected_hw(8, s)), s)
            shortcut = shortcut_output(x, seed, (cin, cout, s), salt, layer_salt, observed.get("shortcut_layers"),
                                       mode == "train") if residual else None
            candidates = block_candidates(x, convs, norms, s, mode == "train", shortcut)
            matches = [mistake for mistake, ref in candidates if close(y, ref, 1e-3, 1e-3)]
            if None in matches:
                continue
            check(not matches, f"{what} does not compute y = {formula}: {matches[0] if matches else ''}")
            right = [gap(y, ref) for mistake, ref in candidates if mistake is None and ref.shape == y.shape]
            raise AssertionError(
                f"{what} does not compute y = {formula} (in {mode} mode; largest difference "
                f"{min(right) if right else float('nan'):.3g}, using your block's own conv and BatchNorm weights). The "
                "order is conv3x3 (with the stride) -> BN -> ReLU -> conv3x3 -> BN"
                + (" -> add shortcut(x) -> ReLU" if residual else " -> ReLU") + "; both convolutions have padding 1")


def made_by_make_shortcut(record, cin, cout, stride) -> bool:
    """Whether the block's own shortcut (one it did not get from the lent make_shortcut: it bound make_shortcut
    early, say) is what make_shortcut gives: the identity, or a strided 1x1 convolution without bias and a
    BatchNorm."""
    own = record.get("shortcut_layers")
    if not isinstance(own, list):
        return False
    if cin == cout and stride == 1:
        return own == [] and record.sub("branch").get("shortcut_parameters") == 0
    layers = layer_list(Observations({"layers": own}, "the shortcut's layers"))
    return ([layer["type"] for layer in layers] == ["conv", "bn"] and layers[0]["weight"] == [cout, cin, 1, 1]
            and layers[0]["stride"] == [stride, stride] and layers[0]["padding"] in ([0, 0], "valid")
            and not layers[0]["bias"] and layers[1]["features"] == cout)


def block_layers(what, record, cin, cout, residual: bool):
    """The block's two 3x3 convolutions without bias, its two BatchNorms, its channels and parameter count."""
    branch = record.sub("branch")
    layers = layer_list(branch)
    convs, norms = by_type(layers)
    two_and_two(what, convs, norms, residual)
    for c in convs:
        check(tuple(c["weight"][2:]) == (3, 3), f"{what}: both convolutions of the block are 3x3, found kernel_size "
                                                f"{tuple(c['weight'][2:])}")
        check(not c["bias"], f"{what}: create the convolutions with bias=False; the BatchNorm right after each one "
                             "has its own shift, which makes a bias useless")
    pairs = sorted((c["weight"][1], c["weight"][0]) for c in convs)
    check(pairs == sorted([(cin, cout), (cout, cout)]), f"{what}: the first convolution maps {cin} to {cout} channels "
                                                        f"and the second {cout} to {cout}, found {pairs}")
    for b in norms:
        check(b["features"] == cout, f"{what}: both BatchNorms normalize {cout} channels, found BatchNorm2d("
                                     f"{b['features']})")
    n = branch.integer("parameters") - (branch.integer("shortcut_parameters") if residual else 0)
    want = 9 * cin * cout + 9 * cout * cout + 4 * cout
    check(n == want, f"{what} should have {want} parameters" + (" besides its shortcut" if residual else "")
          + f", got {n}")


def visible_blocks(student, name, seed, salt):
    """The two blocks the visible tests build: their shapes and final ReLU, and the trace of their layers. Returns
    the input they ran on."""
    x = seeded(seed, salt, (2, 16, 8, 8))
    for args, expected in [((16, 16), (2, 16, 8, 8)), ((16, 32, 2), (2, 32, 4, 4))]:
        what = f"{name}{args}"
        record = student.sub(what)
        module(record, what)
        y = tensor(record.sub("output"), what)
        check(tuple(y.shape) == expected, f"{what} should turn {tuple(x.shape)} into {expected}, got {tuple(y.shape)}")
        check(y.min().item() >= 0, f"{what} ends with a ReLU, so its output cannot be negative")
        verify_trace(what, record.sub("gate"), x, seed, f"{salt}/{what}")
    return x


def test_residual_block_visible(student, reference, seed):
    x = visible_blocks(student, "ResidualBlock", seed, "rb-visible")
    y = tensor(student.sub("off"), "ResidualBlock(16, 16)")
    check(close(y, F.relu(x), 1e-6, 0), "ResidualBlock(16, 16) with its BatchNorm weights and biases at zero should "
                                        "return relu(x): its conv-BN layers output zeros and its identity shortcut adds "
                                        "x; " + ("yours returns zeros, so the shortcut is not added"
                                                 if y.abs().max() < 1e-6 else f"yours differs by up to {gap(y, F.relu(x)):.3g}"))
    return "ResidualBlock: the shapes, the final ReLU and the identity shortcut are right"


def test_residual_block_layers(student, reference, seed):
    configs = student.each("configs", len(probes.BLOCK_CONFIGS))
    for (cin, cout, s), record in zip(probes.BLOCK_CONFIGS, configs):
        what = probes.signature("ResidualBlock", cin, cout, s)
        module(record.sub("module"), "ResidualBlock", "a subclass of nn.Module")
        shortcut = stored_shortcut(record, what)
        check(shortcut.flag("made") or made_by_make_shortcut(record, cin, cout, s),
              f"{what}.shortcut is not the module make_shortcut({cin}, {cout}, {s}) returns: build it with "
              "make_shortcut(in_channels, out_channels, stride), which gives the identity or the projection as the "
              "shapes need")
        block_layers(what, record, cin, cout, True)
        block_gate(what, record, seed, "rb-layers", cin, cout, s)
    return "ResidualBlock: two 3x3 convolutions without bias, two BatchNorms and make_shortcut's shortcut"


def test_residual_block_adds_shortcut(student, reference, seed):
    configs = student.each("configs", len(probes.BLOCK_CONFIGS))
    for (cin, cout, s), record in zip(probes.BLOCK_CONFIGS, configs):
        what = probes.signature("ResidualBlock", cin, cout, s)
        module(record.sub("module"), what)
        stored_shortcut(record, what)
        block_gate(what, record, seed, "rb-adds", cin, cout, s)
        check(record.integer("norms_off") >= 1, f"{what} has no BatchNorm2d outside its shortcut; the block is "
                                                "conv-BN-ReLU-conv-BN")
        salt = f"rb-adds/{cin}/{cout}/{s}"
        x = seeded(seed, f"{salt}/x", (2, cin, 8, 8))
        y = output(record.sub("output"), what, (2, cout, expected_hw(8, s), expected_hw(8, s)), s)
        shortcut = shortcut_output(x, seed, (cin, cout, s), "rb-adds", salt, record.get("shortcut_layers"))
        constants = switched_off(layer_list(record), seed, salt, cout)
        if any(close(y, F.relu(c + shortcut), 1e-3, 1e-3) for c in constants):
            continue
        adds_mistake(what, y, constants, shortcut)
    return "ResidualBlock: adds the shortcut to the branch, then applies the ReLU"


def adds_mistake(what, y, constants, shortcut) -> None:
    """Fail with what the block got wrong, its output *y* with the branch switched off being none of
    ReLU(b + *shortcut*) for the candidate biases b (*constants*): the usual mistakes, else the largest difference."""
    intro = (f"{what}: with the conv-BN branch switched off (its BatchNorm weights set to 0, eval mode) the branch "
             "outputs its last BatchNorm's bias b, so the block must return ReLU(b + shortcut(x))")
    check(y.min().item() >= -1e-6, f"{intro}, but the output has negative values (down to {y.min().item():.3g}): the "
                                   "ReLU must be the last step, after adding the shortcut")
    mistakes = [("it returns ReLU(b), the branch alone: the shortcut is not added to the branch",
                 [F.relu(c).expand_as(y) for c in constants]),
                ("it returns ReLU(shortcut(x)): the branch's output is not added", [F.relu(shortcut)]),
                (MULTIPLIES, [F.relu(c * shortcut) for c in constants]),
                ("it applies a ReLU to the branch and another to the shortcut, then adds them; one ReLU comes after "
                 "the addition", [F.relu(c) + F.relu(shortcut) for c in constants]),
                (RELU_ON_SHORTCUT, [F.relu(c + F.relu(shortcut)) for c in constants])]
    for mistake, outputs in mistakes:
        check(not any(close(y, wrong, 1e-3, 1e-3) for wrong in outputs), f"{intro}; {mistake}")
    raise AssertionError(f"{intro}; the largest difference is "
                         f"{min((gap(y, F.relu(c + shortcut)) for c in constants), default=float('nan')):.3g}")


def test_residual_block_formula(student, reference, seed):
    block_formula(student, seed, "ResidualBlock", "rb-formula", residual=True)
    return "ResidualBlock: the whole formula holds, in training and eval mode"


def input_and_gradients(configs, seed, name, salt, residual):
    for (cin, cout, s), record in zip(probes.BLOCK_CONFIGS[:2], configs):
        what, hw = probes.signature(name, cin, cout, s), expected_hw(8, s)
        module(record.sub("module"), what)
        block_gate(what, record, seed, salt, cin, cout, s)
        for mode in ("train", "eval"):
            observed = record.sub(mode)
            output(observed.sub("output"), what, (2, cout, hw, hw), s)
            check(torch.equal(observed.tensor("input_after"), seeded(seed, f"{salt}/{cin}/{mode}", (2, cin, 8, 8))),
                  f"{what} changed its input in place ({mode} mode). Work on new tensors: no x += ..., no relu_(x) or "
                  "ReLU(inplace=True) applied to x, and no out += shortcut(x) when the shortcut returns x itself "
                  "(out = out + shortcut(x) is safe)")
            check(not observed.flag("returned_input"), f"{what} returned its input tensor itself")
        grad = backward_record(record.sub("gradient"), what)
        idle = record.items("idle")
        check(not idle, f"{what}: these parameters get no gradient (or only zeros), so the output does not depend on "
                        f"them: {idle}")
        check(grad.abs().sum().item() > 0, f"{what}: no gradient reaches the input")
        if not residual:
            continue
        check("off" in record, f"{what} should store its shortcut, the module returned by make_shortcut, as "
                               "self.shortcut")
        x, weights = seeded(seed, f"{salt}/{cin}/off", (2, cin, 8, 8)), seeded(seed, f"{salt}/{cin}/off-weights",
                                                                              (2, cout, hw, hw))
        off = record.sub("off")
        got = off.tensor("grad") if off.flag("connected") and off.get("grad") is not None else torch.zeros_like(x)
        own = record.get("shortcut_layers")
        want = gradient_of(lambda t: F.relu(shortcut_output(t, seed, (cin, cout, s), salt, f"{salt}/{cin}/off", own)),
                           x, weights)
        check(close(got, want, 1e-3, 1e-3), f"{what}: with the conv-BN branch switched off, the gradient should still "
                                            "reach the input through the shortcut, d ReLU(shortcut(x)) / dx; it does "
                                            "not (is the shortcut detached, computed under torch.no_grad(), or taken "
                                            "from .data?)")


def test_residual_block_input_and_gradients(student, reference, seed):
    input_and_gradients(student.each("configs", 2), seed, "ResidualBlock", "rb-input", residual=True)
    return "ResidualBlock: leaves its input alone; every parameter and the input get gradients, through the shortcut too"


def devices(configs, seed, name, salt):
    for (cin, cout, s), record in zip(probes.BLOCK_CONFIGS[:2], configs):
        what, hw = probes.signature(name, cin, cout, s), expected_hw(8, s)
        module(record.sub("module"), what)
        meta_messages(what, record.each("meta", 2), (2, cout, hw, hw), s)
        block_gate(what, record, seed, salt, cin, cout, s)


def test_residual_block_devices(student, reference, seed):
    devices(student.each("configs", 2), seed, "ResidualBlock", "rb-devices")
    return "ResidualBlock: runs on any device"


def test_plain_block_visible(student, reference, seed):
    visible_blocks(student, "PlainBlock", seed, "pb-visible")
    return "PlainBlock: the shapes and the final ReLU are right"


def test_plain_block_no_shortcut(student, reference, seed):
    configs = student.each("configs", len(probes.BLOCK_CONFIGS))
    for (cin, cout, s), record in zip(probes.BLOCK_CONFIGS, configs):
        what, salt, shape = probes.signature("PlainBlock", cin, cout, s), f"pb-layers/{cin}/{cout}/{s}", \
            (2, cout, expected_hw(8, s), expected_hw(8, s))
        module(record.sub("module"), "PlainBlock", "a subclass of nn.Module")
        block_layers(what, record, cin, cout, False)
        verify_trace(what, record.sub("gate"), seeded(seed, salt, (2, cin, 8, 8)), seed, salt)
        output(record.sub("gate").sub("output"), what, shape, s)
        y = output(record.sub("off"), what, shape, s)
        constants = switched_off(layer_list(record.sub("gate")), seed, salt, cout)
        check(any(close(y, F.relu(c).expand_as(y), 1e-3, 1e-3) for c in constants),
              f"{what}: with its conv-BN layers switched off (BatchNorm weights 0, eval mode) the branch outputs its "
              "last BatchNorm's bias b on every pixel, so a plain block must return ReLU(b); yours does not: it must "
              "return its branch's output, and add neither its input nor any other shortcut")
    return "PlainBlock: the layers are right, and there is no shortcut of any kind"


def test_plain_block_formula(student, reference, seed):
    block_formula(student, seed, "PlainBlock", "pb-formula", residual=False)
    input_and_gradients(student.each("inputs", 2), seed, "PlainBlock", "pb-input", residual=False)
    devices(student.each("devices", 2), seed, "PlainBlock", "pb-devices")
    return "PlainBlock: the formula holds in both modes, with gradients, on any device"


# -- part 5: build_network -------------------------------------------------------------------------------

def block_parameters(cin, cout, stride, residual) -> int:
    """A real block's parameters (what the student's own blocks have), for the messages about totals."""
    projection = residual and (cin != cout or stride != 1)
    return 9 * cin * cout + 9 * cout * cout + 4 * cout + (cin * cout + 2 * cout if projection else 0)


def ran_blocks(record) -> list[dict]:
    """The stand-in blocks the network ran, in order: their configs (as the probe made them) and outputs."""
    made = {config.get("number"): config for config in record.items("made") if isinstance(config, dict)}
    found = []
    for run_ in record.each("blocks"):
        config = made.get(run_.integer("number"))
        if config is None or not isinstance(config.get("residual"), bool) or not all(
                isinstance(config.get(k), int) and 0 < config[k] <= limit
                for k, limit in (("in", 1024), ("out", 1024), ("stride", 8))):
            raise Malformed("a block the probe did not make")
        found.append(dict(config, output=run_.tensor("output")))
    return found


def stem_outputs(x, layers, seed, salt, training) -> list:
    """What the stem's layers (those outside the blocks and the head) compute from x: conv3x3 -> BatchNorm -> ReLU,
    and the same without the ReLU or the BatchNorm (which other tests name)."""
    convs, norms = by_type(layers)
    if len(convs) != 1 or len(norms) > 1 or convs[0]["weight"][1] != x.shape[1]:
        return []
    h = conv(x, convs[0], values(seed, salt, convs[0]))
    found = [h, F.relu(h)]
    if norms:
        h = norm(h, norms[0], values(seed, salt, norms[0]), training)
        found += [h, F.relu(h)]
    return found


def verify_blocks(what, record, seed, salt, x, training=True) -> list[dict]:
    """The gate of the network tests: the first block gets what the stem computes from x, with the weights the probe
    gave it, and every block's output is what that stand-in block computes from the output of the block before it.
    Only a network that really runs its stem and its blocks in a chain produces these values."""
    blocks = ran_blocks(record)
    check(blocks, f"{what} ran no ResidualBlock or PlainBlock")
    previous = record.tensor("first")
    check(any(close(previous, out, 1e-3, 1e-3) for out in stem_outputs(x, layer_list(record), seed, salt, training)),
          f"{what}: the first block does not get what the stem computes from the input: the stem is a 3x3 convolution "
          "(padding 1, no bias), a BatchNorm and a ReLU, and its output goes straight into the first block")
    for index, block in enumerate(blocks):
        weights = {k: v.double() for k, v in probes.standin_values(seed, salt, block["number"], block["residual"],
                                                                   block["in"], block["out"]).items()}
        try:
            expected = probes.standin_forward(previous, block, weights)
        except RuntimeError:
            expected = None
        check(expected is not None and close(block["output"], expected, 1e-3, 1e-3),
              f"{what}: block {index + 1} does not get the output of the block before it: the blocks must run one "
              "after the other, each on the previous one's output")
        previous = block["output"]
    return blocks


def linear_layers(record):
    return [layer for layer in layer_list(record) if layer["type"] == "linear"]


def check_kinds(what, blocks, n, residual, stages):
    wrong = sum(1 for block in blocks if block["residual"] != residual)
    right, other = ("ResidualBlock", "PlainBlock") if residual else ("PlainBlock", "ResidualBlock")
    check(wrong == 0, f"{what} should contain only {right}s: residual={residual} chooses {right}, but {wrong} of its "
                      f"{len(blocks)} blocks are {other}s")
    check(len(blocks) == stages * n, f"{what} should contain {stages * n} {right}s ({n} per stage, {stages} stages), "
                                     f"found {len(blocks)}")


def check_stem_and_head(what, record, cin, classes, widths, total=None):
    """The parameters outside the blocks: the stem (3x3 conv without bias + BatchNorm) and one nn.Linear."""
    found = record.sub("parts")
    stem, head = 9 * cin * widths[0] + 2 * widths[0], widths[-1] * classes + classes
    check(found.integer("stem") == stem, f"{what}: the stem should have 9*{cin}*{widths[0]} + 2*{widths[0]} = {stem} "
                                         f"parameters, got {found.integer('stem')}. The stem is a 3x3 conv without "
                                         "bias + BatchNorm")
    check(found.integer("linear") == head, f"{what}: the Linear layer should have {widths[-1]}*{classes} + {classes} = "
                                           f"{head} parameters, got {found.integer('linear')}; the head is one nn.Linear")
    if total is not None:
        got = stem + head + sum(block_parameters(b["in"], b["out"], b["stride"], b["residual"])
                                for b in ran_blocks(record))
        check(got == total, f"{what} should have {total:,} parameters, got {got:,} (with your blocks in place of the "
                            "grader's)")


def ran(record) -> None:
    """Fail with the error the network raised on the probe's batch, if it did."""
    failed = record.get("failed")
    if isinstance(failed, dict):
        raise AssertionError(f"{failed.get('what')} raised {failed.get('type')}: {failed.get('message')}{hint(failed)}")


def check_shapes(what, record, seed, salt, config):
    """The stem, the downsampling of every stage, the global average pooling and the logits (as in lesson 5)."""
    n, residual, cin, classes, widths, size, batch = config
    module(record.sub("module"), what, "an nn.Module")
    ran(record)
    logits = tensor(record.sub("logits"), what)
    check(tuple(logits.shape) == (batch, classes), f"{what} should map a batch of shape {(batch, cin, size, size)} to "
                                                   f"logits of shape {(batch, classes)}, got {tuple(logits.shape)}")
    blocks = ran_blocks(record)
    check(len(blocks) == len(widths) * n, f"{what} should run {len(widths) * n} blocks ({n} per stage, {len(widths)} "
                                          f"stages), ran {len(blocks)}")
    first = record.tensor("first")
    check(tuple(first.shape) == (batch, widths[0], size, size),
          f"{what}: the stem (3x3 conv with padding 1, BatchNorm, ReLU) should give the first block a tensor of shape "
          f"{(batch, widths[0], size, size)}, got {tuple(first.shape)}")
    check(first.min().item() >= 0, f"{what}: the first block receives negative values; the stem must end with a ReLU "
                                   "(3x3 conv -> BatchNorm -> ReLU)")
    h = size
    for index, block in enumerate(blocks):
        stage, position = divmod(index, n)
        h = expected_hw(h, 2) if stage > 0 and position == 0 else h
        hint = ("the first block of every stage after the first has stride 2" if position == 0 and stage > 0
                else "only the first block of a stage after the first one downsamples")
        got = tuple(block["output"].shape)
        check(got == (batch, widths[stage], h, h), f"{what}: block {index + 1} of {len(blocks)} (stage {stage + 1}) "
                                                   f"should output {(batch, widths[stage], h, h)}, got {got}; {hint}")
    verify_blocks(what, record, seed, salt, seeded(seed, f"{salt}/x", (batch, cin, size, size)))
    check_head(what, record, seed, salt, blocks[-1]["output"], logits, (batch, widths[-1]))


def check_head(what, record, seed, salt, last, logits, pooled_shape):
    """The Linear layer gets the global average of the last block's feature maps; its output is the logits."""
    linears, calls = linear_layers(record), record.each("linear")
    check(len(linears) == 1, f"{what} should end with one nn.Linear layer, found {len(linears)}")
    check(len(calls) == 1 and tuple(calls[0].tensor("input").shape) == pooled_shape,
          f"{what}: the Linear layer should receive {pooled_shape} (one value per channel), got "
          f"{[tuple(call.tensor('input').shape) for call in calls]}")
    given = calls[0].tensor("input")
    check(close(given, last.mean(dim=(2, 3)), 1e-4, 1e-4),
          f"{what}: the Linear layer should receive the global average of the last block's feature maps "
          "(nn.AdaptiveAvgPool2d(1) then flatten: the mean over H and W)")
    computed = compute(given, linears[0], values(seed, salt, linears[0]))
    check(close(calls[0].tensor("output"), computed, 1e-3, 1e-3) and close(logits, computed, 1e-3, 1e-3),
          f"{what} should return the Linear layer's output, the logits, with nothing after it")


def test_build_network_visible(student, reference, seed):
    module(student.sub("module"), "build_network(1)", "an nn.Module")
    logits = tensor(student.sub("logits"), "build_network(1)")
    check(tuple(logits.shape) == (4, 10), "build_network(1) should map (4, 1, 28, 28) to logits of shape (4, 10), got "
                                          f"{tuple(logits.shape)}")
    for residual, expected in [(True, 272_474), (False, 269_722)]:
        record = student.sub("counts").sub(str(residual)).sub("module")
        what = f"build_network(3, residual={residual}, in_channels=3)"
        module(record, what, "an nn.Module")
        name = "ResNet-20" if residual else "its plain twin"
        n = record.integer("parameters")
        check(n == expected, f"{what}, {name}, should have {expected:,} parameters, got {n:,} (your blocks' parameters "
                             "count too)")
    gate = student.sub("gate")
    module(gate.sub("module"), "build_network(1)", "an nn.Module")
    verify_blocks("build_network(1)", gate, seed, "bn-visible", seeded(seed, "bn-visible/x", (2, 1, 8, 8)))
    return "build_network: the logits' shape and the parameter counts are right"


def test_build_network_size(student, reference, seed):
    configs = [(n, residual, 1) for n in (1, 2, 3) for residual in (True, False)] + \
        [(3, residual, 3) for residual in (True, False)]
    networks = student.each("networks", len(configs))
    for (n, residual, cin), record in zip(configs, networks):
        what = probes.describe_network(n, residual, cin, 10, (16, 32, 64))
        module(record.sub("module"), what, "an nn.Module")
        salt = f"bn-size/{n}/{residual}" + ("/rgb" if cin == 3 else "")
        x = seeded(seed, f"{salt}/x", (2, cin, 8, 8))
        check_kinds(what, verify_blocks(what, record, seed, salt, x), n, residual, 3)
        total = ((272_474 if residual else 269_722) if cin == 3 else None)
        label = "" if cin == 1 else (" (ResNet-20)" if residual else " (the plain twin of ResNet-20)")
        check_stem_and_head(what + label, record, cin, 10, (16, 32, 64), total)
    return "build_network: the number of blocks of each kind and the parameter counts are right"


def test_build_network_shapes(student, reference, seed):
    networks = student.each("networks", len(probes.SHAPE_CONFIGS))
    for index, (config, record) in enumerate(zip(probes.SHAPE_CONFIGS, networks)):
        check_shapes(probes.describe_network(*config[:5]), record, seed, f"bn-shapes/{index}", config)
    return "build_network: the stem, the downsampling, the pooling and the logits are right"


def test_build_network_options(student, reference, seed):
    networks = student.each("networks", len(probes.OPTION_CONFIGS))
    for index, (config, record) in enumerate(zip(probes.OPTION_CONFIGS, networks)):
        n, residual, cin, classes, widths = config[:5]
        what = probes.describe_network(n, residual, cin, classes, widths)
        check_shapes(what, record, seed, f"bn-options/{index}", config)
        check_kinds(what, ran_blocks(record), n, residual, len(widths))
        check_stem_and_head(what, record, cin, classes, widths)
    defaults = student.sub("defaults")
    advice = "build_network(1) should use the defaults residual=True, in_channels=1, num_classes=10, widths=(16, 32, 64)"
    check_shapes("build_network(1)", defaults, seed, "bn-defaults", (1, True, 1, 10, (16, 32, 64), 8, 2))
    try:
        check_kinds("build_network(1)", ran_blocks(defaults), 1, True, 3)
        check_stem_and_head("build_network(1)", defaults, 1, 10, (16, 32, 64))
    except AssertionError:
        raise AssertionError(advice) from None
    idle = student.items("idle")
    check(not idle, f"build_network(1): these parameters get no gradient, so they are not used: {idle}")
    meta_messages("build_network(1)", student.each("meta"), (2, 10))
    return "build_network: in_channels, num_classes, widths and the defaults work; it trains, on any device"


# -- part 6: train and plot_loss_curves ----------------------------------------------------------------------

def not_the_course(record, name):
    course = record.get("course")
    check(not course, f"{name} uses the course's helper package ({course}); write it yourself with torch and "
                      "matplotlib: this part is about your own loop and plot, and the graded notebook must run where "
                      "only torch, numpy and matplotlib are installed")


def describe_value(returned) -> str:
    items = returned.get("items")
    return returned.text("type") + (f" of length {len(items)}" if isinstance(items, list) else "")


def losses_of(record, what, steps) -> list[float]:
    """What train returned: a list of *steps* Python floats, one per step."""
    returned = record.sub("returned")
    items = returned.get("items")
    check(isinstance(items, list) and len(items) == steps, f"{what} should return a list of {steps} losses, one per "
                                                           f"step; got {describe_value(returned)}")
    types = [item.get("type") if isinstance(item, dict) else None for item in items]
    check("Tensor" not in types, f"{what} returned tensors: record loss.item(), a Python float (a tensor that requires "
                                 "grad also keeps its whole graph in memory)")
    check(all(t not in ("bool", "str", None) and isinstance(item.get("value"), (int, float))
              for t, item in zip(types, items)),
          f"{what} should return floats (loss.item()), got {sorted({str(t) for t in types})}")
    return [float(item["value"]) for item in items]


def rows(batch, images):
    """The indices of the rows of *images* that make up *batch*, or None when a row is none of them."""
    if batch.dim() != images.dim() or tuple(batch.shape[1:]) != tuple(images.shape[1:]):
        return None
    same = (batch.flatten(1)[:, None, :] == images.flatten(1)[None, :, :]).all(dim=-1)
    return same.float().argmax(dim=1) if bool(same.any(dim=1).all()) else None


def batches_of(record, what, images, steps, batch_size=None):
    """The rows of every batch the model was given, checked: one batch per step, of `images` as they are, and (when
    *batch_size* is given) of batch_size images each."""
    batches = [torch.from_numpy(b.astype("float32")) for b in _arrays(record, "batches")]
    check(len(batches) == steps, f"{what} ran {len(batches)} forward passes in {steps} steps: one per step, whose loss "
                                 "is backpropagated and recorded")
    sizes = sorted({len(batch) for batch in batches})
    check(batch_size is None or sizes == [batch_size],
          f"{what}: every step should use a mini-batch of batch_size={batch_size} images; the batches had {sizes} "
          "images" + (" (all of them: draw batch_size at random)" if len(images) in sizes else ""))
    check(all(len(batch) <= len(images) for batch in batches), f"{what}: a batch holds more images than `images`")
    found = [rows(batch, images) for batch in batches]
    check(all(r is not None for r in found), f"{what}: the batches should be images of `images`, as they are")
    return found


def _arrays(record, key):
    import numpy as np

    items = record.items(key)
    check(all(isinstance(item, np.ndarray) for item in items), f"the observations' {key!r} are not arrays")
    return items


def simulate(seed, salt, batch_norm, problem, found_rows, lr, variant=None):
    """Train the probe's model (as probes.probe_model makes it) here, on the student's batches: the losses and the
    last layer's fresh gradients of each step. *variant*: one of the usual mistakes ("no zero_grad", "zero_grad after
    backward", "sum", "eval mode")."""
    images, labels = problem
    with probes.probing():  # the same float32 model as the probe's, whatever this process's defaults
        model = probes.probe_model(seed, salt, batch_norm)
    model.train(variant != "eval mode")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses, grads = [], []
    model[-1].weight.register_hook(lambda grad: grads.append(grad.detach().clone()))
    for r in found_rows:
        loss = F.cross_entropy(model(images[r]), labels[r], reduction="sum" if variant == "sum" else "mean")
        if variant != "no zero_grad":
            optimizer.zero_grad()
        loss.backward()
        if variant == "zero_grad after backward":
            optimizer.zero_grad()
        optimizer.step()
        losses.append(loss.item())
    return losses, grads


def same_losses(a, b, tolerance=1e-3) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tolerance * abs(y) + 1e-5 for x, y in zip(a, b))


# What a test accepts besides the right loop: the mistakes other tests judge (the mode test judges zero_grad, the
# losses test the sum and the learning rate), as (variant, learning rate or None for the given one).
LOSSES_ALSO = [("no zero_grad", None)]
VISIBLE_ALSO = LOSSES_ALSO + [("sum", None)]
OTHERS_ALSO = [(variant, lr) for variant in (None, "no zero_grad", "zero_grad after backward", "sum")
               for lr in (None, 1e-3)]


def check_history(what, losses, seed, salt, batch_norm, problem, found_rows, lr, also=()):
    """The losses are those of Adam steps on these batches (or of a mistake *also* accepts); otherwise say which
    mistake they are."""
    def history(variant=None, rate=None):
        return simulate(seed, salt, batch_norm, problem, found_rows, rate or lr, variant)[0]

    if any(same_losses(losses, history(variant, rate)) for variant, rate in [(None, None), *also]):
        return
    right = history()
    check(not same_losses(losses, history("sum")), f"{what}: losses[0] should be the cross-entropy of step 0's batch, "
                                                   f"{right[0]:.4g}, but it is {losses[0]:.4g}: that is the sum over the "
                                                   "batch; use the mean, F.cross_entropy's default")
    check(not same_losses(losses, history("zero_grad after backward")),
          f"{what}: the model does not learn: each step must clear the gradients, loss.backward(), then "
          "optimizer.step(), in that order")
    check(not same_losses(losses, history(rate=1e-3)), f"{what} trains with Adam's default learning rate: give lr to the "
                                                       "optimizer, torch.optim.Adam(model.parameters(), lr=lr)")
    step = next((i for i, (got, want) in enumerate(zip(losses, right)) if abs(got - want) > 1e-3 * abs(want) + 1e-5), 0)
    raise AssertionError(f"{what}: losses[{step}] should be the cross-entropy of step {step}'s batch after {step} Adam "
                         f"steps, {right[step]:.4g}, but it is {losses[step]:.4g}: record loss.item() of the loss you "
                         "backpropagate")


def test_train_visible(student, reference, seed):
    problem = probes.easy_problem(seed, "toy", 64)
    what = probes.train_call(30, lr=0.05, batch_size=16)
    not_the_course(student, "train")
    losses = losses_of(student, what, 30)
    found_rows = batches_of(student, what, problem[0], 30)
    check_history(what, losses, seed, "toy", False, problem, found_rows, 0.05, VISIBLE_ALSO)
    check(sum(losses[-5:]) < 0.6 * sum(losses[:5]), f"on this easy problem the loss should fall; it went from "
                                                    f"{losses[0]:.3f} to {losses[-1]:.3f}")
    return "train: a list of 30 float losses that fall on an easy problem"


def test_train_losses(student, reference, seed):
    problem = probes.easy_problem(seed, "easy")
    for key, steps in (("first", 12), ("second", 40)):
        record, what = student.sub(key), probes.train_call(steps, lr=0.05, batch_size=32, seed="...")
        not_the_course(record, "train")
        losses = losses_of(record, what, steps)
        found_rows = batches_of(record, what, problem[0], steps, 32)
        check(len({tuple(r.tolist()) for r in found_rows}) > 1, f"{what} used the same batch at every step: draw a "
                                                                 "new random mini-batch every step")
        check_history(what, losses, seed, f"losses/{'a' if key == 'first' else 'b'}", False, problem, found_rows, 0.05,
                      LOSSES_ALSO)
    # The longer run (40 steps) has the room to show the loss falling.
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    check(last < 0.6 * first, f"{what}: on an easy problem the loss should fall well below its start, {first:.3g} "
                              f"(mean of the first 10 steps); it ended at {last:.3g}. Each step: clear the gradients, "
                              "loss.backward(), then optimizer.step()")
    frozen = student.sub("frozen")
    with probes.probing():
        start = [p.detach().double() for p in probes.probe_model(seed, "losses/c").parameters()]
    weights = [torch.from_numpy(w).double() for w in _arrays(frozen, "weights")]
    check(len(weights) == len(start) and all(torch.equal(a, b) for a, b in zip(weights, start)),
          f"{probes.train_call(3, lr=0.0, batch_size=32)} changed the weights: give lr to the optimizer, "
          "torch.optim.Adam(model.parameters(), lr=lr)")
    return "train: one loss per step, each that step's batch's, after real Adam steps with the given lr"


def test_train_mode_and_gradients(student, reference, seed):
    images, labels = probes.easy_problem(seed, "easy")
    what = probes.train_call(4, lr=0.01, batch_size=32)
    not_the_course(student, "train")
    modes = student.items("modes")
    check(modes and all(mode is True for mode in modes),
          f"{what} ran the model in eval mode: call model.train() first. The model came in eval mode, so its BatchNorm "
          "used its running statistics instead of each batch's own")
    fresh, held = _arrays(student, "fresh"), _arrays(student, "held")
    check(len(fresh) == 4, f"{what} backpropagated {len(fresh)} times in 4 steps: call loss.backward() every step")
    check(len(held) == 4, "the observations do not cover every step's gradients")
    for step in range(1, 4):
        check(close(torch.from_numpy(held[step]).double(), torch.from_numpy(fresh[step]).double(), 1e-7, 1e-5),
              f"{what}: at step {step} the weights' gradient still held the gradients of the earlier steps, because "
              "backward adds to .grad: clear the gradients every step, before loss.backward() (optimizer.zero_grad())")
    found_rows = batches_of(student, what, images, 4)
    fresh = [torch.from_numpy(got).double() for got in fresh]
    check(any(all(close(got, want.double(), 1e-5, 1e-3) for got, want in zip(fresh, simulate(
        seed, "mode", True, (images, labels), found_rows, rate or 0.01, variant)[1])) for variant, rate in OTHERS_ALSO),
          f"{what}: the gradients of the steps are not those of the cross-entropy of each batch, in training mode, "
          "after the Adam steps before it")
    return "train: trains in training mode and clears the gradients at every step"


def test_train_seed_data_devices(student, reference, seed):
    problem = probes.easy_problem(seed, "easy")
    histories = {}
    for key, run_seed in (("first", 5), ("again", 5), ("other", 6)):
        record, what = student.sub(key), probes.train_call(6, lr=0.01, batch_size=16, seed=run_seed)
        not_the_course(record, "train")
        histories[key] = losses_of(record, what, 6)
    check(same_losses(histories["first"], histories["again"], 1e-5),
          "two runs of train(..., seed=5) from the same model gave different histories: the same seed must give the "
          "same batches, so draw them from torch.Generator().manual_seed(seed) (or seed inside train)")
    check(not same_losses(histories["first"], histories["other"], 1e-7),
          "seed=5 and seed=6 gave the same history: the seed should choose the batches")
    check(torch.equal(student.tensor("images_after"), problem[0].double())
          and torch.equal(student.tensor("labels_after"), problem[1].double()),
          "train changed `images` or `labels` in place: work on the batches you take from them, or on copies")
    for key in ("first", "again", "other"):
        what = probes.train_call(6, lr=0.01, batch_size=16, seed=5 if key != "other" else 6)
        found_rows = batches_of(student.sub(key), what, problem[0], 6)
        check_history(what, histories[key], seed, "seeded", True, problem, found_rows, 0.01, OTHERS_ALSO)
    meta = student.sub("meta")
    check(meta.flag("ok"), "train(model, images, labels, 3, ...) with the model on one device and the data on the CPU "
                           "fails on another device (here PyTorch's 'meta' device, which has shapes but no values): "
                           f"{meta.get('error')} Move each batch, images and labels, to the model's device "
                           "(next(model.parameters()).device), and leave the model where it is.")
    check(student.flag("meta_stays"), "train moved the model to another device: leave it where it is and move the "
                                      "batches to it")
    # Observed only where the grader has a GPU (the reference's observations say whether it had one).
    check("cuda_batches" not in reference or student.flag("cuda_batches"),
          "train with the model on the GPU and the data on the CPU: move each batch to the model's device")
    return "train: the seed chooses the batches, the data is left alone, and it runs on any device"


def figure_of(record, what):
    not_the_course(record, "plot_loss_curves")
    check(record.get("type") != "NoneType", f"{what} returned None: return the Figure (figure, axes = plt.subplots() "
                                            "gives it)")
    check(record.flag("figure"), f"{what} should return a matplotlib Figure, got {record.get('type')}"
          + (": return axes.figure, or the figure that plt.subplots() gave you" if record.get("has_figure") else ""))


def plot_axis(what, record):
    drawn = [axes for axes in record.each("axes") if axes.items("lines")]
    check(drawn, f"{what} returned a figure without lines: one axes.plot(losses, label=label) per run")
    check(len(drawn) == 1, f"{what} spread the runs over {len(drawn)} axes: draw them all on one, so that they can be "
                           "compared")
    return drawn[0]


def check_lines(what, axes, data):
    lines = axes.each("lines")
    labels = [line.text("label") for line in lines]
    check(not any(label.startswith("_") for label in labels), f"{what}: every line needs a label, the run's name: "
                                                              "axes.plot(losses, label=label)")
    check(sorted(labels) == sorted(data), f"{what} should draw one line per run, labelled {sorted(data)}; found "
                                          f"{sorted(labels)}")
    for line, label in zip(lines, labels):
        losses, y, x = data[label], [float(v) for v in line.items("y")], [float(v) for v in line.items("x")]
        if len(y) == len(losses) and all(abs(a - math.log(b)) < 1e-6 for a, b in zip(y, losses)):
            raise AssertionError(f"{what}: the line {label!r} shows log(loss) on a linear axis; plot the losses "
                                 "themselves and make the axis logarithmic (axes.set_yscale('log'))")
        check(len(y) == len(losses) and all(abs(a - b) <= 1e-9 + 1e-6 * abs(b) for a, b in zip(y, losses)),
              f"{what}: the line {label!r} should show that run's {len(losses)} losses, in order, as its y-values; it "
              f"shows {len(y)} values {[round(v, 4) for v in y[:4]]}...")
        check(all(b > a for a, b in zip(x, x[1:])), f"{what}: the x-values of {label!r} should be the steps, "
                                                     "increasing")


def test_plot_loss_curves_visible(student, reference, seed):
    data = probes.histories(seed, "visible", 2)
    what = probes.plot_call(data)
    figure_of(student, what)
    labels = sorted(line.text("label") for axes in student.each("axes") for line in axes.each("lines"))
    check(labels == sorted(data), f"plot_loss_curves should draw one line per run, labelled with its name; found "
                                  f"{labels}")
    return "plot_loss_curves: a Figure with one labelled line per run"


def test_plot_loss_curves_lines(student, reference, seed):
    calls = student.each("calls", 3)
    for index, (runs, record) in enumerate(zip((3, 1, 3), calls)):
        data = probes.histories(seed, f"lines/{index % 2}", runs)
        what = probes.plot_call(data)
        figure_of(record, what)
        check(not record.flag("earlier"), f"{what} returned the figure of an earlier call: make a new figure every "
                                          "time (plt.subplots())")
        check_lines(what, plot_axis(what, record), data)
    return "plot_loss_curves: one axis, one labelled line per run showing its losses, a new figure every call"


def test_plot_loss_curves_axes(student, reference, seed):
    data = probes.histories(seed, "axes", 3)
    what = probes.plot_call(data)
    figure_of(student, what)
    axes = plot_axis(what, student)
    check(axes.text("yscale") == "log", f"{what}: the loss axis should be logarithmic (axes.set_yscale('log') or "
                                        "semilogy): the losses span several orders of magnitude")
    check(axes.text("xlabel").strip() and axes.text("ylabel").strip(),
          f"{what}: label both axes, e.g. axes.set_xlabel('step') and axes.set_ylabel('training loss')")
    shown = set(axes.get("legend") or []) | set(student.get("figure_legends") or [])
    check(shown, f"{what}: add a legend (axes.legend()), so that each line says which run it is")
    check(set(data) <= shown, f"{what}: the legend should name every run; it misses {sorted(set(data) - shown)}")
    return "plot_loss_curves: a logarithmic loss axis, axis labels and a legend"
