"""The probes of the residual_blocks assignment: one per graded test cell, named by its grade_id.

Each runs in the student's kernel (and, for the reference, in a kernel that runs the source notebook's answers):
``probe(namespace, seed)`` calls the student's code on inputs drawn from *seed* and returns what it observed. It
decides nothing: the judge of the same name (judges.py) does, in the grader's process. Nothing here is secret, and
nothing here holds an answer: where a test needs an earlier part, the probe lends a stand-in of its own (a
shortcut, blocks) whose computation the judge knows, so that each part is judged alone.

The seeded values below (inputs, and the weights the probes give the student's layers) are shared with the judges,
which draw them again from the seed instead of believing what the kernel says they were.
"""
import contextlib
import copy
import math
import numbers
import os
import sys
import types
import zlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.overrides import TorchFunctionMode

from autograde.probing import Stop, attempt, need

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def probing():
    """Every probe runs with torch's own defaults (float32 on the CPU), whatever the notebook set: a notebook that
    switched to float64 is graded on what it computes, not on what its default made of the probe's inputs."""
    dtype, device = torch.get_default_dtype(), torch.get_default_device()
    # Only a notebook that chose another device is undone: setting any default device, "cpu" included, installs a
    # mode that every later torch call goes through (the student's training runs after the probes too).
    moved = device.type != "cpu"
    torch.set_default_dtype(torch.float32)
    if moved:
        torch.set_default_device(None)
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        if moved:
            torch.set_default_device(device)
BLOCK_CONFIGS = [(16, 16, 1), (16, 32, 2), (8, 8, 2)]
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False


# -- seeded values (the judges draw the same ones) ----------------------------------------------------------

def generator(seed: int, salt: str) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(salt.encode())) % (1 << 62))


def normal(seed, salt, shape, scale=1.0, shift=0.0):
    # float32 whatever the default dtype is: the judges draw the same numbers
    return torch.randn(tuple(shape), generator=generator(seed, salt), dtype=torch.float32) * scale + shift


def uniform(seed, salt, shape, low, high):
    return torch.rand(tuple(shape), generator=generator(seed, salt), dtype=torch.float32) * (high - low) + low


def integers(seed, salt, count, low, high) -> list[int]:
    return torch.randint(low, high, (count,), generator=generator(seed, salt)).tolist()


def layer_values(seed: int, salt: str, layer: dict) -> dict:
    """The values a probe gives one layer it described (:func:`describe`): conv and linear weights at He scale,
    BatchNorm's affine parameters and running statistics spread around their defaults."""
    salt = f"{salt}/{layer['index']}"
    if layer["type"] in ("conv", "linear"):
        shape = layer["weight"]
        values = {"weight": normal(seed, salt + "/w", shape, math.sqrt(2.0 / max(1, math.prod(shape[1:]))))}
        if layer["bias"]:
            values["bias"] = normal(seed, salt + "/b", shape[:1], 0.3)
        return values
    n = layer["features"]
    return {"weight": uniform(seed, salt + "/g", (n,), 0.5, 1.5), "bias": normal(seed, salt + "/b", (n,), 0.5),
            "running_mean": normal(seed, salt + "/m", (n,), 0.5), "running_var": uniform(seed, salt + "/v", (n,), 0.5, 2.0)}


def describe(layer: nn.Module, index: int) -> dict | None:
    """A Conv2d, BatchNorm or Linear layer as data; None for any other module."""
    if isinstance(layer, nn.Conv2d):
        return {"type": "conv", "index": index, "weight": list(layer.weight.shape), "bias": layer.bias is not None,
                "stride": list(layer.stride), "padding": layer.padding if isinstance(layer.padding, str)
                else list(layer.padding), "dilation": list(layer.dilation), "groups": layer.groups,
                "padding_mode": layer.padding_mode}
    if isinstance(layer, _BatchNorm):
        return {"type": "bn", "index": index, "features": layer.num_features, "eps": float(layer.eps),
                "affine": bool(layer.affine), "tracks": bool(layer.track_running_stats)}
    if isinstance(layer, nn.Linear):
        return {"type": "linear", "index": index, "weight": list(layer.weight.shape), "bias": layer.bias is not None}
    return None


def layers_of(module: nn.Module, skip=None) -> list[nn.Module]:
    """The Conv2d, BatchNorm and Linear layers of *module*, in module order, leaving out those inside *skip* (a
    module or a list of modules)."""
    skipped = [skip] if isinstance(skip, nn.Module) else list(skip or [])
    inside = {id(m) for part in skipped if isinstance(part, nn.Module) for m in part.modules()}
    return [m for m in module.modules() if id(m) not in inside and describe(m, 0) is not None]


@torch.no_grad()
def seed_layers(module: nn.Module, seed: int, salt: str, skip: nn.Module | None = None) -> list[dict]:
    """Give the layers of *module* (but those in *skip*) the seeded values; their descriptions, in module order."""
    described = []
    for index, layer in enumerate(layers_of(module, skip)):
        description = describe(layer, index)
        for name, value in layer_values(seed, salt, description).items():
            target = getattr(layer, name, None)
            if isinstance(target, torch.Tensor):
                target.copy_(value.to(target.device, target.dtype))
        described.append(description)
    return described


def images(seed, salt, shape, scale=1.0, shift=0.0):
    return normal(seed, salt, shape, scale, shift).to(DEVICE)


# -- what the probes record --------------------------------------------------------------------------------

def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def kind(value) -> str:
    return type(value).__name__


class Trace:
    """Records what the Conv2d and BatchNorm layers of a module receive and return, in the order they run."""

    def __init__(self, module: nn.Module, skip: nn.Module | None = None):
        self.layers = layers_of(module, skip)
        self.records, self.pending, self.handles = [], {}, []

    def __enter__(self):
        for index, layer in enumerate(self.layers):
            self.handles.append(layer.register_forward_pre_hook(self._before(index)))
            self.handles.append(layer.register_forward_hook(self._after(index)))
        return self

    def _before(self, index):
        def hook(module, args):
            self.pending[index] = args[0].detach().clone() if args and isinstance(args[0], torch.Tensor) else None
        return hook

    def _after(self, index):
        def hook(module, args, output):
            if isinstance(output, torch.Tensor) and self.pending.get(index) is not None:
                self.records.append({"layer": index, "input": self.pending[index], "output": output.detach().clone()})
        return hook

    def __exit__(self, *exc_info):
        for handle in self.handles:
            handle.remove()


def run(what, module, x):
    """``module(x)`` without gradients; a failure stops the probe."""
    with torch.no_grad():
        return attempt(what, module, x)


def output_record(y, x=None) -> dict:
    """What a module returned for the input *x*: a tensor's values and device, or the type of anything else."""
    if isinstance(y, torch.Tensor):
        found = {"tensor": True, "values": y, "device": y.device.type}
        return dict(found, input_device=x.device.type) if isinstance(x, torch.Tensor) else found
    return {"tensor": False, "type": kind(y)}


# -- the meta device: a forward pass that hard-codes a device fails there ---------------------------------

# Calls that read a tensor's values. On the meta device they cannot run, so a forward pass with a check such as
# `if torch.isnan(x).any(): raise ...` would fail there for no fault of its own: the meta run gets the answers
# that the same code gave on a real device instead.
DATA_CALLS = {"item", "__bool__", "__float__", "__int__", "__index__", "tolist", "is_nonzero"}
# A training loop may also copy a value to the host to record it (loss.cpu().item()); a forward pass may not.
HOST_COPIES = {"cpu", "numpy", "to"}
TORCH_DIR = os.path.dirname(torch.__file__)


def _call_site():
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(TORCH_DIR):
        frame = frame.f_back
    return (frame.f_code.co_filename, frame.f_lineno) if frame is not None else None


def _reads_values(name, args, kwargs, host_copies):
    if name in DATA_CALLS:
        return True
    if not host_copies or name not in HOST_COPIES:
        return False
    targets = [*args[1:], kwargs.get("device")]  # Tensor.to(...): only a copy to the CPU reads the values
    return name != "to" or any(isinstance(t, (str, torch.device)) and torch.device(t).type == "cpu" for t in targets)


class DataAnswers(TorchFunctionMode):
    """Records what each data-reading call answers on a real device; replaying, gives the meta device those
    answers, call site by call site and in order."""

    def __init__(self, recorded=None, host_copies=False):
        super().__init__()
        self.replaying, self.host_copies = recorded is not None, host_copies
        self.answers = {key: list(values) for key, values in (recorded or {}).items()}

    def __torch_function__(self, func, types=(), args=(), kwargs=None):
        kwargs, name = kwargs or {}, getattr(func, "__name__", "")
        if args and isinstance(args[0], torch.Tensor) and _reads_values(name, args, kwargs, self.host_copies):
            key = (_call_site(), name)
            if not self.replaying:
                value = func(*args, **kwargs)
                self.answers.setdefault(key, []).append(value)
                return value
            if args[0].device.type == "meta" and self.answers.get(key):
                return self.answers[key].pop(0)
        return func(*args, **kwargs)


def on_meta(run_it, real_args, meta_args, host_copies=False) -> dict:
    """``run_it(*real_args)`` on the real device, recording its data-reading calls, then ``run_it(*meta_args)`` on
    the meta device with their answers: what the meta run gave, or the error it raised."""
    with DataAnswers(host_copies=host_copies) as recorder:
        run_it(*real_args)
    try:
        with DataAnswers(recorder.answers, host_copies):
            result = run_it(*meta_args)
    except Exception as error:  # noqa: BLE001 - the judge says what it means
        return {"ok": False, "error": f"{kind(error)}: {str(error)[:500]}"}
    return {"ok": True, "meta": isinstance(result, torch.Tensor) and result.device.type == "meta",
            "shape": list(result.shape) if isinstance(result, torch.Tensor) else None}


def meta_forward(what, module, input_shape) -> list[dict]:
    """The module's forward on the meta device, in train and eval mode."""
    found = []
    for mode in ("train", "eval"):
        real = getattr(copy.deepcopy(module).to(DEVICE), mode)()
        meta = getattr(copy.deepcopy(module).to("meta"), mode)()
        x = torch.randn(input_shape, device=DEVICE)
        attempt(f"{what} (in {mode} mode)", lambda: real(x))
        outcome = on_meta(lambda m, t: m(t), (real, x), (meta, torch.empty(input_shape, device="meta")))
        found.append(dict(outcome, mode=mode))
    return found


# -- stand-ins for the parts a test builds on ---------------------------------------------------------------

class StandInShortcut(nn.Module):
    """What ResidualBlock's hidden tests give it in place of make_shortcut's answer: the identity when the shape
    stays, else a strided 1x1 convolution without BatchNorm (seeded weights). Not the answer to part 2."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.stride = stride
        projects = in_channels != out_channels or stride != 1
        self.mix = nn.Parameter(torch.zeros(out_channels, in_channels, 1, 1)) if projects else None

    def forward(self, x):
        return x if self.mix is None else F.conv2d(x, self.mix, stride=self.stride)


def shortcut_values(seed, salt, in_channels, out_channels):
    return normal(seed, f"{salt}/shortcut", (out_channels, in_channels, 1, 1), math.sqrt(2.0 / in_channels))


class Lend:
    """Bind some of the notebook's names to the probe's stand-ins for a while."""

    def __init__(self, namespace, **names):
        self.namespace, self.names, self.saved = namespace, names, {}

    def __enter__(self):
        self.saved = {name: self.namespace.get(name, Lend) for name in self.names}
        self.namespace.update(self.names)
        return self

    def __exit__(self, *exc_info):
        for name, value in self.saved.items():
            if value is Lend:
                self.namespace.pop(name, None)
            else:
                self.namespace[name] = value


def lend_shortcuts(namespace, seed, salt):
    """Lend make_shortcut a factory of seeded stand-ins; the list of what it made."""
    made = []

    def make_shortcut(in_channels, out_channels, stride=1):
        shortcut = StandInShortcut(in_channels, out_channels, stride)
        if shortcut.mix is not None:
            with torch.no_grad():
                shortcut.mix.copy_(shortcut_values(seed, salt, in_channels, out_channels))
        made.append(shortcut)
        return shortcut

    return Lend(namespace, make_shortcut=make_shortcut), made


# -- part 1: conv_output_size ----------------------------------------------------------------------------

def size_cases(seed, salt, n) -> list[tuple]:
    """n random (size, kernel_size, stride, padding) with a valid output."""
    sizes, kernels = integers(seed, salt + "/n", n, 1, 300), integers(seed, salt + "/k", n, 1, 8)
    strides, paddings = integers(seed, salt + "/s", n, 1, 5), integers(seed, salt + "/p", n, 0, 4)
    return [(max(size, kernel), kernel, stride, min(padding, kernel // 2 + 1))
            for size, kernel, stride, padding in zip(sizes, kernels, strides, paddings)]


VISIBLE_SIZES = [(32, 3), (32, 3, 1, 1), (32, 3, 2, 1), (8, 1, 2)]
FIXED_SIZES = [(32, 3, 1, 1), (32, 3, 2, 1), (31, 3, 2, 1), (7, 3, 2, 0), (8, 1, 2, 0), (9, 1, 2, 0), (28, 5, 1, 0),
               (28, 5, 1, 2), (224, 7, 2, 3), (112, 3, 2, 1), (10, 4, 3, 1), (6, 2, 2, 0), (7, 2, 2, 0), (5, 5, 1, 0),
               (13, 3, 4, 2), (64, 3, 2, 0), (17, 1, 1, 0)]
DEFAULT_SIZES = [(10, 3), (10, 3, 2), (9, 1)]


def answer(value) -> dict:
    """A returned value and its type (an int, a float, something else)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return {"type": "int", "value": int(value)}
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return {"type": kind(value), "value": float(value)}
    return {"type": kind(value), "value": repr(value)[:100]}


def visible_size_cases(seed):
    return VISIBLE_SIZES + [case[:2] for case in size_cases(seed, "visible", 3)] + size_cases(seed, "visible4", 3)


def test_conv_output_size_visible(namespace, seed):
    function = need(namespace, "conv_output_size")
    return {"answers": [answer(attempt(f"conv_output_size{args}", function, *args))
                        for args in visible_size_cases(seed)]}


def hidden_size_cases(seed):
    keyword = FIXED_SIZES + size_cases(seed, "hidden", 20)
    defaults = DEFAULT_SIZES + [case[:2] for case in size_cases(seed, "two", 4)] + \
        [case[:3] for case in size_cases(seed, "three", 4)]
    return keyword, defaults


def test_conv_output_size_hidden(namespace, seed):
    function = need(namespace, "conv_output_size")
    keyword, defaults = hidden_size_cases(seed)
    found = {"keyword": [], "positional": [], "defaults": []}
    for size, k, s, p in keyword:
        what = f"conv_output_size(size={size}, kernel_size={k}, stride={s}, padding={p})"
        found["keyword"].append(answer(attempt(what, function, size=size, kernel_size=k, stride=s, padding=p)))
        found["positional"].append(answer(attempt(what, function, size, k, s, p)))
    found["defaults"] = [answer(attempt(f"conv_output_size{args}", function, *args)) for args in defaults]
    return found


# -- part 2: make_shortcut -------------------------------------------------------------------------------

def module_record(value) -> dict:
    if not isinstance(value, nn.Module):
        return {"module": False, "type": kind(value)}
    return {"module": True, "type": kind(value), "parameters": count(value)}


def traced(what, module, x, seed, salt, skip=None) -> dict:
    """*module* in eval mode with seeded layers, run on *x*: its layers, what they computed, its output."""
    module.eval()
    layers = seed_layers(module, seed, salt, skip)
    with Trace(module, skip) as trace:
        y = run(what, module, x)
    return {"layers": layers, "trace": trace.records, "output": output_record(y, x)}


def test_make_shortcut_visible(namespace, seed):
    make_shortcut = need(namespace, "make_shortcut")
    x = images(seed, "ms-visible", (2, 16, 8, 8))
    same = attempt("make_shortcut(16, 16)", make_shortcut, 16, 16)
    found = {"same": module_record(same)}
    if isinstance(same, nn.Module):
        same.to(DEVICE)
        found["same"]["output"] = output_record(run("make_shortcut(16, 16)", same, x), x)
    down = attempt("make_shortcut(16, 32, stride=2)", make_shortcut, 16, 32, stride=2)
    found["down"] = module_record(down)
    if isinstance(down, nn.Module):
        found["down"].update(traced("make_shortcut(16, 32, stride=2)", down.to(DEVICE), x, seed, "ms-visible"))
    return found


IDENTITY_CONFIGS = [(4, False), (16, True)]
PROJECTION_CONFIGS = [(16, 32, 2, False), (16, 16, 2, True), (32, 16, 1, False), (8, 24, 1, True), (4, 8, 3, False)]


def new_shortcut(namespace, cin, cout, stride, keywords):
    what = f"make_shortcut({cin}, {cout}, stride={stride})"
    make_shortcut = need(namespace, "make_shortcut")
    torch.manual_seed(0)
    if keywords:
        return what, attempt(what, make_shortcut, in_channels=cin, out_channels=cout, stride=stride)
    return what, attempt(what, make_shortcut, cin, cout, stride)


def gradient(what, module, x, weights) -> dict:
    """Backpropagate ``(module(x) * weights).sum()``: whether the output was connected, and x's gradient."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        y = attempt(what, module, x)
        if not isinstance(y, torch.Tensor) or not y.requires_grad:
            return {"connected": False}
        attempt(f"backpropagating through {what}", lambda: (y * weights).sum().backward())
    return {"connected": True, "grad": x.grad}


def test_make_shortcut_identity(namespace, seed):
    found = []
    for c, keywords in IDENTITY_CONFIGS:
        what, module = new_shortcut(namespace, c, c, 1, keywords)
        record = {"module": module_record(module)}
        found.append(record)
        default = attempt(f"make_shortcut({c}, {c})", need(namespace, "make_shortcut"), c, c)
        record["default"] = module_record(default)
        if not isinstance(module, nn.Module):
            continue
        module.to(DEVICE)
        for mode in ("train", "eval"):
            getattr(module, mode)()
            x = images(seed, f"identity/{c}/{mode}", (2, c, 6, 6))
            y = run(what, module, x)
            record[mode] = {"output": output_record(y, x), "input_after": x}
        x = images(seed, f"identity/{c}/grad", (2, c, 6, 6))
        record["gradient"] = gradient(what, module, x, images(seed, f"identity/{c}/weights", (2, c, 6, 6)))
        record["meta"] = meta_forward(what, module, (2, c, 6, 6))
    return {"configs": found}


def test_make_shortcut_projection(namespace, seed):
    found = []
    for cin, cout, s, keywords in PROJECTION_CONFIGS:
        what, module = new_shortcut(namespace, cin, cout, s, keywords)
        record = {"module": module_record(module)}
        found.append(record)
        if not isinstance(module, nn.Module):
            continue
        module.to(DEVICE)
        salt = f"projection/{cin}/{cout}/{s}"
        record["layers"] = seed_layers(module, seed, salt)
        x = images(seed, salt + "/x", (2, cin, 8, 8), 2.0, 1.0)
        module.eval()  # first: a forward in training mode changes BatchNorm's running statistics
        record["eval"] = {"output": output_record(run(what, module, x), x)}
        pixel = torch.zeros_like(x)
        pixel[:, :, s, s] = 1.0
        record["pixel"] = output_record(run(what, module, x + pixel), x + pixel)
        module.train()
        record["train"] = {"output": output_record(run(what, module, x), x)}
        record["input_after"] = x
        record["gradient"] = gradient(what, module, x, images(seed, salt + "/weights", (2, cout, (8 - 1) // s + 1,
                                                                                     (8 - 1) // s + 1)))
        record["weight_grads"] = [m.weight.grad is not None and bool(m.weight.grad.abs().sum() > 0)
                                  for m in module.modules() if isinstance(m, nn.Conv2d)]
        record["meta"] = meta_forward(what, module, (2, cin, 8, 8))
    return {"configs": found}


# -- parts 3 and 4: the blocks ---------------------------------------------------------------------------

def signature(name, cin, cout, stride) -> str:
    return f"{name}({cin}, {cout}, stride={stride})"


def new_block(namespace, name, cin, cout, stride, keywords=False):
    cls = need(namespace, name)
    what = signature(name, cin, cout, stride)
    torch.manual_seed(0)
    if keywords:
        return what, attempt(what, cls, in_channels=cin, out_channels=cout, stride=stride)
    return what, attempt(what, cls, cin, cout, stride)


def branch_record(block, skip) -> dict:
    """The block's layers outside its shortcut, as they were made, and its parameter counts."""
    layers = [describe(m, i) for i, m in enumerate(layers_of(block, skip))]
    return {"layers": layers, "parameters": count(block),
            "shortcut_parameters": count(skip) if isinstance(skip, nn.Module) else None}


def shortcut_record(block, made) -> dict:
    """What the block keeps as self.shortcut, and whether it is the module the (lent) make_shortcut made for it."""
    shortcut = getattr(block, "shortcut", None)
    return {"stored": isinstance(shortcut, nn.Module), "type": kind(shortcut) if shortcut is not None else None,
            "made": bool(made) and shortcut is made[-1]}


def residual_block(namespace, made, seed, salt, config, keywords=False):
    """A ResidualBlock made while make_shortcut is lent (*made* lists what it made). (what, block or what it
    returned, record)."""
    cin, cout, s = config
    what, block = new_block(namespace, "ResidualBlock", cin, cout, s, keywords)
    record = {"module": module_record(block)}
    if isinstance(block, nn.Module):
        record["shortcut"] = shortcut_record(block, made)
        block.to(DEVICE)
    return what, block, record


def seed_block(block, seed, salt, lent: bool) -> tuple[list[dict], list[dict] | None]:
    """Seed a block's layers: (its branch's, and its shortcut's when that is not the lent stand-in: a block that made
    its own, or bound make_shortcut early, is judged on its own shortcut, whose layers the judge must know too)."""
    shortcut = getattr(block, "shortcut", None)
    layers = seed_layers(block, seed, salt, shortcut)
    if not isinstance(shortcut, nn.Module) or lent:
        return layers, None
    return layers, seed_layers(shortcut, seed, f"{salt}/own-shortcut")


def gate(what, block, seed, salt, config) -> dict:
    """The gate of the block tests: the block in eval mode with seeded layers, on a seeded input, traced."""
    cin = config[0]
    x = images(seed, f"{salt}/{cin}/gate", (2, cin, 8, 8))
    twin = attempt(f"copying {what}", copy.deepcopy, block)  # the test's other runs keep the block as it was
    return traced(what, twin, x, seed, f"{salt}/{cin}/gate", getattr(twin, "shortcut", None))


@torch.no_grad()
def switch_off(module, skip=None, keep_biases=False) -> int:
    """BatchNorm weights (and biases, unless *keep_biases*) at 0 outside *skip*: in eval mode each conv-BN layer
    then outputs zeros, or its BatchNorm's bias on every pixel, whatever it is given. Kept biases make a branch's
    output a value only the branch gives: a block that computes its branch and drops it cannot produce it."""
    norms = [m for m in layers_of(module, skip) if isinstance(m, _BatchNorm)]
    for norm in norms:
        for tensor in (norm.weight, None if keep_biases else norm.bias):
            if tensor is not None:
                tensor.zero_()
    return len(norms)


def visible_records(namespace, name, seed, salt, x, has_shortcut=False) -> dict:
    """What the visible tests of a block check, for the two blocks they build: its layers, output and trace (with
    *has_shortcut*, the layers of its shortcut are left out of the trace, as in `traced`)."""
    cls = need(namespace, name)
    found = {}
    for args in [(16, 16), (16, 32, 2)]:
        what = f"{name}{args}"
        torch.manual_seed(0)
        block = attempt(what, cls, *args)
        record = found[what] = module_record(block)
        if isinstance(block, nn.Module):
            block.to(DEVICE)
            record["output"] = output_record(run(what, block, x), x)
            skip = getattr(block, "shortcut", None) if has_shortcut else None
            record["gate"] = traced(what, block, x.clone(), seed, f"{salt}/{what}", skip)
    return found


def test_residual_block_visible(namespace, seed):
    x = images(seed, "rb-visible", (2, 16, 8, 8))
    found = visible_records(namespace, "ResidualBlock", seed, "rb-visible", x, has_shortcut=True)
    block = attempt("ResidualBlock(16, 16)", need(namespace, "ResidualBlock"), 16, 16)
    if isinstance(block, nn.Module):
        block.to(DEVICE).eval()
        switch_off(block)
        found["off"] = output_record(run("ResidualBlock(16, 16)", block, x), x)
    return found


def test_residual_block_layers(namespace, seed):
    lend, made = lend_shortcuts(namespace, seed, "rb-layers")
    found = []
    with lend:
        for cin, cout, s in BLOCK_CONFIGS:
            what, block, record = residual_block(namespace, made, seed, "rb-layers", (cin, cout, s), keywords=True)
            if isinstance(block, nn.Module):
                shortcut = getattr(block, "shortcut", None)
                record["branch"] = branch_record(block, shortcut)
                if isinstance(shortcut, nn.Module) and not record["shortcut"]["made"]:
                    record["shortcut_layers"] = [describe(m, i) for i, m in enumerate(layers_of(shortcut))]
                record["gate"] = gate(what, block, seed, "rb-layers", (cin, cout, s))
            found.append(record)
    return {"configs": found}


def test_residual_block_adds_shortcut(namespace, seed):
    lend, made = lend_shortcuts(namespace, seed, "rb-adds")
    found = []
    with lend:
        for cin, cout, s in BLOCK_CONFIGS:
            what, block, record = residual_block(namespace, made, seed, "rb-adds", (cin, cout, s))
            found.append(record)
            if isinstance(block, nn.Module):
                record["gate"] = gate(what, block, seed, "rb-adds", (cin, cout, s))
                record["layers"], record["shortcut_layers"] = seed_block(block, seed, f"rb-adds/{cin}/{cout}/{s}",
                                                                         record["shortcut"]["made"])
                record["norms_off"] = switch_off(block, getattr(block, "shortcut", None), keep_biases=True)
                x = images(seed, f"rb-adds/{cin}/{cout}/{s}/x", (2, cin, 8, 8))
                record["output"] = output_record(run(what, block.eval(), x), x)
    return {"configs": found}


def block_of(namespace, name, seed, salt, config, made=None):
    """(what, block, record): a ResidualBlock with the probe's shortcut (see residual_block), or a PlainBlock."""
    if name == "ResidualBlock":
        return residual_block(namespace, made, seed, salt, config)
    what, block = new_block(namespace, name, *config)
    if isinstance(block, nn.Module):
        block.to(DEVICE)
    return what, block, {"module": module_record(block)}


def with_lent_shortcuts(records, namespace, seed, salt) -> dict:
    """*records* (formula_records, input_and_gradients or device_records) of ResidualBlock, with make_shortcut
    lent: the block tests judge the block, not the student's make_shortcut."""
    lend, made = lend_shortcuts(namespace, seed, salt)
    with lend:
        return {"configs": records(namespace, "ResidualBlock", seed, salt, made)}


def formula_records(namespace, name, seed, salt, made=None) -> list[dict]:
    """Each block config in eval and train mode: its seeded layers and its output on a seeded input."""
    found = []
    for cin, cout, s in BLOCK_CONFIGS:
        what, block, record = block_of(namespace, name, seed, salt, (cin, cout, s), made)
        found.append(record)
        if not isinstance(block, nn.Module):
            continue
        for mode in ("eval", "train"):
            if name == "ResidualBlock":
                layers, own = seed_block(block, seed, f"{salt}/{cin}/{cout}/{s}", record["shortcut"]["made"])
            else:
                layers, own = seed_layers(block, seed, f"{salt}/{cin}/{cout}/{s}"), None
            x = images(seed, f"{salt}/{cin}/{cout}/{s}/{mode}", (4, cin, 8, 8))
            y = run(what, getattr(block, mode)(), x)
            record[mode] = {"layers": layers, "shortcut_layers": own, "output": output_record(y, x)}
    return found


def test_residual_block_formula(namespace, seed):
    return with_lent_shortcuts(formula_records, namespace, seed, "rb-formula")


def input_and_gradients(namespace, name, seed, salt, made=None) -> list[dict]:
    """The input left unchanged, every parameter and the input given a gradient, and (residual) the gradient that
    reaches the input through the shortcut alone; with the gate."""
    found = []
    for cin, cout, s in BLOCK_CONFIGS[:2]:
        what, block, record = block_of(namespace, name, seed, salt, (cin, cout, s), made)
        found.append(record)
        if not isinstance(block, nn.Module):
            continue
        record["gate"] = gate(what, block, seed, salt, (cin, cout, s))
        hw = (8 - 1) // s + 1
        for mode in ("train", "eval"):
            x = images(seed, f"{salt}/{cin}/{mode}", (2, cin, 8, 8))
            y = run(what, getattr(block, mode)(), x)
            record[mode] = {"input_after": x, "returned_input": y is x, "output": output_record(y, x)}
        block.train().zero_grad(set_to_none=True)
        x = images(seed, f"{salt}/{cin}/grad", (2, cin, 8, 8))
        record["gradient"] = gradient(what, block, x, images(seed, f"{salt}/{cin}/weights", (2, cout, hw, hw)))
        # Zeros count as no gradient: a parameter whose layer's output is multiplied by 0 gets exactly 0.
        record["idle"] = [pname for pname, p in block.named_parameters() if p.grad is None or not p.grad.any()]
        if name == "ResidualBlock" and isinstance(getattr(block, "shortcut", None), nn.Module):
            off = copy.deepcopy(block).eval()
            _, record["shortcut_layers"] = seed_block(off, seed, f"{salt}/{cin}/off", record["shortcut"]["made"])
            switch_off(off, off.shortcut)
            x = images(seed, f"{salt}/{cin}/off", (2, cin, 8, 8))
            record["off"] = gradient(what, off, x, images(seed, f"{salt}/{cin}/off-weights", (2, cout, hw, hw)))
    return found


def test_residual_block_input_and_gradients(namespace, seed):
    return with_lent_shortcuts(input_and_gradients, namespace, seed, "rb-input")


def device_records(namespace, name, seed, salt, made=None) -> list[dict]:
    found = []
    for cin, cout, s in BLOCK_CONFIGS[:2]:
        what, block, record = block_of(namespace, name, seed, salt, (cin, cout, s), made)
        found.append(record)
        if isinstance(block, nn.Module):
            record["meta"] = meta_forward(what, block, (2, cin, 8, 8))
            record["gate"] = gate(what, block, seed, salt, (cin, cout, s))
    return found


def test_residual_block_devices(namespace, seed):
    return with_lent_shortcuts(device_records, namespace, seed, "rb-devices")


def test_plain_block_visible(namespace, seed):
    return visible_records(namespace, "PlainBlock", seed, "pb-visible", images(seed, "pb-visible", (2, 16, 8, 8)))


def test_plain_block_no_shortcut(namespace, seed):
    found = []
    for cin, cout, s in BLOCK_CONFIGS:
        what, block = new_block(namespace, "PlainBlock", cin, cout, s, keywords=True)
        record = {"module": module_record(block)}
        found.append(record)
        if not isinstance(block, nn.Module):
            continue
        record["branch"] = branch_record(block, None)
        x = images(seed, f"pb-layers/{cin}/{cout}/{s}", (2, cin, 8, 8))
        record["gate"] = traced(what, block.to(DEVICE), x, seed, f"pb-layers/{cin}/{cout}/{s}")
        switch_off(block, keep_biases=True)
        x = images(seed, f"pb-off/{cin}", (2, cin, 8, 8))
        record["off"] = output_record(run(what, block.eval(), x), x)
    return {"configs": found}


def test_plain_block_formula(namespace, seed):
    return {"configs": formula_records(namespace, "PlainBlock", seed, "pb-formula"),
            "inputs": input_and_gradients(namespace, "PlainBlock", seed, "pb-input"),
            "devices": device_records(namespace, "PlainBlock", seed, "pb-devices")}


# -- part 5: build_network -------------------------------------------------------------------------------

def standin_values(seed, salt, number, residual, cin, cout) -> dict:
    """The seeded weights of the *number*-th stand-in block a network test made."""
    values = {"weight": normal(seed, f"{salt}/block/{number}", (cout, cin, 3, 3), math.sqrt(2.0 / (9 * cin)))}
    if residual and cin != cout:
        values["skip"] = normal(seed, f"{salt}/skip/{number}", (cout, cin, 1, 1), math.sqrt(2.0 / cin))
    return values


def standin_forward(x, config: dict, values: dict):
    """What a stand-in block computes: ReLU(conv3x3(x, stride) + x or its 1x1 projection (residual) or nothing)."""
    h = F.conv2d(x, values["weight"], stride=config["stride"], padding=1)
    if config["residual"]:
        skip = values.get("skip")
        h = h + (F.conv2d(x, skip, stride=config["stride"]) if skip is not None else x[:, :, ::config["stride"],
                                                                                    ::config["stride"]])
    return F.relu(h)


class StandInBlocks:
    """While the build_network tests run, ResidualBlock and PlainBlock make stand-in blocks (known to the judge,
    not the answers to parts 3 and 4): the classes themselves are changed for the while, so that a network that
    bound them early (a table, a default argument) builds stand-ins too."""

    def __init__(self, namespace, seed, salt):
        self.namespace, self.seed, self.salt, self.made, self.saved = namespace, seed, salt, [], []

    def _methods(self, residual):
        probe = self

        def __init__(block, in_channels, out_channels, stride=1):
            nn.Module.__init__(block)
            number = len(probe.made)
            block.probe_config = {"number": number, "residual": residual, "in": in_channels, "out": out_channels,
                                  "stride": stride}
            for name, value in standin_values(probe.seed, probe.salt, number, residual, in_channels,
                                              out_channels).items():
                block.register_parameter(f"probe_{name}", nn.Parameter(value.clone()))
            probe.made.append(block.probe_config)

        def forward(block, x):
            values = {name[len("probe_"):]: p for name, p in block.named_parameters(recurse=False)}
            return standin_forward(x, block.probe_config, values)

        return {"__init__": __init__, "forward": forward}

    def __enter__(self):
        for name, residual in (("ResidualBlock", True), ("PlainBlock", False)):
            cls = self.namespace.get(name)
            methods = self._methods(residual)
            if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
                cls = type(name, (nn.Module,), {})
                self.saved.append((None, name, self.namespace.get(name, Lend)))
                self.namespace[name] = cls
            for attribute, method in methods.items():
                self.saved.append((cls, attribute, cls.__dict__.get(attribute, Lend)))
                setattr(cls, attribute, method)
        return self

    def __exit__(self, *exc_info):
        for owner, attribute, value in reversed(self.saved):
            if owner is None:
                self.namespace.pop(attribute, None) if value is Lend else self.namespace.__setitem__(attribute, value)
            elif value is Lend:
                delattr(owner, attribute)
            else:
                setattr(owner, attribute, value)


def describe_network(n, residual, cin, classes, widths) -> str:
    return f"build_network({n}, residual={residual}, in_channels={cin}, num_classes={classes}, widths={tuple(widths)})"


def parts(net, stand_ins) -> dict:
    """The network's parameters: in its blocks, its Linear layers, the rest (the stem)."""
    in_blocks = {id(p) for block in stand_ins for p in block.parameters()}
    in_linear = {id(p) for m in net.modules() if isinstance(m, nn.Linear) for p in m.parameters()}
    found = {"blocks": sum(p.numel() for p in net.parameters() if id(p) in in_blocks),
             "linear": sum(p.numel() for p in net.parameters() if id(p) in in_linear and id(p) not in in_blocks)}
    found["stem"] = count(net) - found["blocks"] - found["linear"]
    return found


class NetworkTrace:
    """Records the first block's input, every block's output and the Linear layer's input and output."""

    def __init__(self, net, stand_ins):
        self.net, self.stand_ins, self.handles = net, stand_ins, []
        self.first, self.blocks, self.linear = None, [], []

    def __enter__(self):
        for block in self.stand_ins:
            self.handles.append(block.register_forward_pre_hook(self._block_input))
            self.handles.append(block.register_forward_hook(self._block_output))
        for linear in [m for m in self.net.modules() if isinstance(m, nn.Linear)]:
            self.handles.append(linear.register_forward_hook(
                lambda m, args, out: self.linear.append({"input": args[0].detach().clone(),
                                                         "output": out.detach().clone()})))
        return self

    def _block_input(self, block, args):
        if self.first is None:
            self.first = args[0].detach().clone()

    def _block_output(self, block, args, output):
        self.blocks.append({"number": block.probe_config["number"], "output": output.detach().clone()})

    def __exit__(self, *exc_info):
        for handle in self.handles:
            handle.remove()


def network_record(namespace, seed, salt, n, residual, cin, classes, widths, size=8, batch=2, mode="train",
                   keywords=True) -> dict:
    """build_network with stand-in blocks and seeded layers, run on a seeded batch: what it made and computed."""
    what = describe_network(n, residual, cin, classes, widths)
    build = need(namespace, "build_network")
    with StandInBlocks(namespace, seed, salt) as blocks:
        torch.manual_seed(0)
        net = attempt(what, build, n, residual=residual, in_channels=cin, num_classes=classes, widths=widths) \
            if keywords else attempt(what, build, n)
        if not isinstance(net, nn.Module):
            return {"module": module_record(net)}
        stand_ins = [m for m in net.modules() if hasattr(m, "probe_config")]
        record = {"module": module_record(net), "made": blocks.made, "parts": parts(net, stand_ins),
                  "layers": seed_layers(net, seed, salt, stand_ins)}
        getattr(net.to(DEVICE), mode)()
        x = images(seed, f"{salt}/x", (batch, cin, size, size))
        with NetworkTrace(net, stand_ins) as trace:
            try:
                record["logits"] = output_record(run(f"{what} applied to a batch of shape {tuple(x.shape)}", net, x), x)
            except Stop as stop:  # the blocks may all have run: the size test still judges them
                record["failed"] = stop.record
    return dict(record, first=trace.first, blocks=trace.blocks, linear=trace.linear)


def real_count(namespace, n, residual, cin) -> dict:
    what = describe_network(n, residual, cin, 10, (16, 32, 64))
    net = attempt(what, need(namespace, "build_network"), n, residual=residual, in_channels=cin)
    return {"module": module_record(net)}


def test_build_network_visible(namespace, seed):
    build = need(namespace, "build_network")
    net = attempt("build_network(1)", build, 1)
    found = {"module": module_record(net)}
    if isinstance(net, nn.Module):
        x = images(seed, "bn-visible", (4, 1, 28, 28))
        found["logits"] = output_record(run("build_network(1) applied to a batch of shape (4, 1, 28, 28)",
                                            net.to(DEVICE), x), x)
    found["counts"] = {str(residual): real_count(namespace, 3, residual, 3) for residual in (True, False)}
    found["gate"] = network_record(namespace, seed, "bn-visible", 1, True, 1, 10, (16, 32, 64), keywords=False)
    return found


def test_build_network_size(namespace, seed):
    found = [network_record(namespace, seed, f"bn-size/{n}/{residual}", n, residual, 1, 10, (16, 32, 64))
             for n in (1, 2, 3) for residual in (True, False)]
    found += [network_record(namespace, seed, f"bn-size/3/{residual}/rgb", 3, residual, 3, 10, (16, 32, 64))
              for residual in (True, False)]
    return {"networks": found}


SHAPE_CONFIGS = [(2, True, 3, 10, (16, 32, 64), 32, 2), (1, False, 1, 10, (16, 32, 64), 28, 2),
                 (2, False, 1, 10, (8, 16, 32), 16, 3)]
OPTION_CONFIGS = [(1, False, 3, 7, (4, 8, 16), 12, 2), (2, True, 2, 5, (8, 8, 16), 8, 2),
                  (1, True, 1, 3, (4, 8, 16, 32), 16, 2)]


def test_build_network_shapes(namespace, seed):
    return {"networks": [network_record(namespace, seed, f"bn-shapes/{index}", n, residual, cin, classes, widths,
                                        size, batch) for index, (n, residual, cin, classes, widths, size, batch)
                         in enumerate(SHAPE_CONFIGS)]}


def test_build_network_options(namespace, seed):
    found = {"networks": [network_record(namespace, seed, f"bn-options/{index}", n, residual, cin, classes, widths,
                                         size, batch) for index, (n, residual, cin, classes, widths, size, batch)
                          in enumerate(OPTION_CONFIGS)]}
    found["defaults"] = network_record(namespace, seed, "bn-defaults", 1, True, 1, 10, (16, 32, 64), keywords=False)
    with StandInBlocks(namespace, seed, "bn-training"):
        torch.manual_seed(0)
        net = attempt("build_network(1)", need(namespace, "build_network"), 1)
        if isinstance(net, nn.Module):
            net.to(DEVICE).train()
            x = images(seed, "bn-training/x", (4, 1, 8, 8))
            target = torch.tensor([0, 1, 2, 3], device=DEVICE)
            with torch.enable_grad():
                attempt("build_network(1)", lambda: F.cross_entropy(net(x), target).backward())
            found["idle"] = [name for name, p in net.named_parameters() if p.grad is None]
            found["meta"] = meta_forward("build_network(1)", net, (2, 1, 16, 16))
    return found


# -- part 6: train and plot_loss_curves ----------------------------------------------------------------------

def course_code(obj, seen=None):
    """The part of the course's helper package (resnet_course) that *obj* is, imports or reaches through the names,
    closures and defaults of the notebook's own functions and classes; None when there is none."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return None
    seen.add(id(obj))
    module = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)
    if isinstance(module, str) and module.split(".")[0] == "resnet_course":
        return module
    if hasattr(obj, "func") and hasattr(obj, "keywords"):  # functools.partial
        return first_course_code((obj.func, *obj.args, *obj.keywords.values()), seen)
    if module != "__main__":
        return None  # library code: torch, matplotlib, ...
    if isinstance(obj, type):
        return first_course_code(vars(obj).values(), seen)
    function = getattr(obj, "__func__", obj)
    code = getattr(function, "__code__", None)
    if code is None:
        return None
    names, codes = set(), [code]
    while codes:  # the function's own names, and those of the functions and comprehensions inside it
        current = codes.pop()
        names.update(current.co_names)
        codes += [const for const in current.co_consts if isinstance(const, types.CodeType)]
    imported = [name for name in names if name.split(".")[0] == "resnet_course"]
    if imported:
        return imported[0]
    namespace = getattr(function, "__globals__", {})
    reached = [namespace[name] for name in names if name in namespace]
    reached += [cell.cell_contents for cell in function.__closure__ or () if cell.cell_contents is not None]
    reached += [*(function.__defaults__ or ()), *(function.__kwdefaults__ or {}).values()]
    return first_course_code(reached, seen)


def first_course_code(objects, seen):
    for obj in objects:
        found = course_code(obj, seen)
        if found:
            return found
    return None


class Recorder(nn.Module):
    """The first layer of the tests' models: records the mode and the batch of every forward pass."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x):
        self.calls.append((self.training, x.detach().clone()))
        return x


def easy_problem(seed, salt, n=96):
    """Images (n, 1, 4, 4) labelled by whether their mean is positive: a linear layer learns it in a few steps."""
    images = normal(seed, salt, (n, 1, 4, 4))
    return images, (images.mean(dim=(1, 2, 3)) > 0).long()


def probe_model(seed, salt, batch_norm=False):
    """A small model with seeded weights, whose first layer records what it is given (the judges build it too)."""
    layers = [nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()] if batch_norm else []
    model = nn.Sequential(Recorder(), *layers, nn.Flatten(), nn.Linear(64 if batch_norm else 16, 2))
    seed_layers(model, seed, salt)
    return model


def loss_list(losses) -> dict:
    """What train returned: its type, and each item as :func:`answer` gives it (tensors by their type only)."""
    record = {"type": kind(losses)}
    if isinstance(losses, (list, tuple)):
        record["items"] = [{"type": "Tensor"} if isinstance(v, torch.Tensor) else answer(v) for v in losses]
    return record


def train_call(steps, **options) -> str:
    return f"train(model, images, labels, {steps}" + "".join(f", {k}={v}" for k, v in options.items()) + ")"


def train_record(namespace, model, images, labels, steps, **options) -> dict:
    """Run the student's train on the probe's model: what it returned, and every forward pass's mode and batch."""
    train = need(namespace, "train")
    course = course_code(train)
    if course:
        return {"course": course}
    what = train_call(steps, **options)
    losses = attempt(what, train, model, images, labels, steps, **options)
    calls = model[0].calls
    return {"returned": loss_list(losses), "modes": [training for training, _ in calls],
            "batches": [batch for _, batch in calls]}


def test_train_visible(namespace, seed):
    images, labels = easy_problem(seed, "toy", 64)
    return train_record(namespace, probe_model(seed, "toy"), images, labels, 30, lr=0.05, batch_size=16)


def test_train_losses(namespace, seed):
    images, labels = easy_problem(seed, "easy")
    first, second = integers(seed, "train-seeds", 2, 0, 1000)
    found = {"first": train_record(namespace, probe_model(seed, "losses/a"), images, labels, 12, lr=0.05,
                                   batch_size=32, seed=first),
             "second": train_record(namespace, probe_model(seed, "losses/b"), images, labels, 40, lr=0.05,
                                    batch_size=32, seed=second)}
    model = probe_model(seed, "losses/c")
    found["frozen"] = train_record(namespace, model, images, labels, 3, lr=0.0, batch_size=32)
    found["frozen"]["weights"] = [p.detach() for p in model.parameters()]
    return found


def test_train_mode_and_gradients(namespace, seed):
    images, labels = easy_problem(seed, "easy")
    model = probe_model(seed, "mode", batch_norm=True).eval()
    weight, fresh, held = model[-1].weight, [], []
    weight.register_hook(lambda grad: fresh.append(grad.detach().clone()))
    weight.register_post_accumulate_grad_hook(lambda p: held.append(p.grad.detach().clone()))
    found = train_record(namespace, model, images, labels, 4, lr=0.01, batch_size=32)
    return dict(found, fresh=fresh, held=held)


def test_train_seed_data_devices(namespace, seed):
    images, labels = easy_problem(seed, "easy")
    found = {}
    for key, run_seed, global_seed in (("first", 5, 101), ("again", 5, 202), ("other", 6, 101)):
        torch.manual_seed(global_seed)  # the global generator differs between the runs: only `seed` may matter
        found[key] = train_record(namespace, probe_model(seed, "seeded", batch_norm=True), images, labels, 6,
                                  lr=0.01, batch_size=16, seed=run_seed)
    found["images_after"], found["labels_after"] = images, labels
    model = probe_model(seed, "devices", batch_norm=True)
    meta = copy.deepcopy(model).to("meta")
    train = need(namespace, "train")
    found["meta"] = on_meta(lambda m: train(m, images, labels, 3, lr=0.01, batch_size=32), (model.to(DEVICE),),
                            (meta,), host_copies=True)
    found["meta_stays"] = all(p.device.type == "meta" for p in meta.parameters())
    if DEVICE.type == "cuda":
        model = probe_model(seed, "cuda", batch_norm=True).to(DEVICE)
        attempt("train(model, images, labels, 3, batch_size=32)", train, model, images, labels, 3, batch_size=32)
        found["cuda_batches"] = all(batch.device.type == "cuda" for _, batch in model[0].calls)
    return found


def histories(seed, salt, runs) -> dict:
    """Loss histories to plot: random names, random lengths, losses over several orders of magnitude."""
    lengths = integers(seed, salt + "/lengths", runs, 3, 9)
    names = [f"run-{code:04x}" for code in integers(seed, salt + "/names", runs, 0, 1 << 16)]
    return {name: (10 ** uniform(seed, f"{salt}/{name}", (length,), -2.0, 0.5)).tolist()
            for name, length in zip(names, lengths)}


def figure_record(figure) -> dict:
    """A figure as data: its axes, their lines, scales, labels and legends."""
    from matplotlib.figure import Figure

    if not isinstance(figure, Figure):
        return {"figure": False, "type": kind(figure), "has_figure": hasattr(figure, "figure")}
    axes = []
    for ax in figure.axes:
        legend = ax.get_legend()
        axes.append({"lines": [{"label": str(line.get_label()), "x": [float(v) for v in line.get_xdata()],
                                "y": [float(v) for v in line.get_ydata()]} for line in ax.get_lines()],
                     "yscale": ax.get_yscale(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
                     "legend": [t.get_text() for t in legend.get_texts()] if legend is not None else None})
    return {"figure": True, "axes": axes,
            "figure_legends": [t.get_text() for legend in figure.legends for t in legend.get_texts()]}


def plot_call(data) -> str:
    return "plot_loss_curves({" + ", ".join(f"{k!r}: [{len(v)} losses]" for k, v in data.items()) + "})"


def plot_record(namespace, data) -> tuple:
    plot = need(namespace, "plot_loss_curves")
    course = course_code(plot)
    if course:
        return None, {"course": course}
    what = plot_call(data)
    figure = attempt(what, plot, data)
    return figure, figure_record(figure)


def close(figures):
    import matplotlib.pyplot as plt

    for figure in figures:
        try:
            plt.close(figure)
        except Exception:  # noqa: BLE001 - not a figure pyplot knows
            pass


def test_plot_loss_curves_visible(namespace, seed):
    figure, record = plot_record(namespace, histories(seed, "visible", 2))
    close([figure])
    return record


def test_plot_loss_curves_lines(namespace, seed):
    figures, found = [], []
    try:
        for index, runs in enumerate((3, 1, 3)):
            figure, record = plot_record(namespace, histories(seed, f"lines/{index % 2}", runs))
            record["earlier"] = any(figure is f for f in figures if f is not None)
            figures.append(figure)
            found.append(record)
    finally:
        close(figures)
    return {"calls": found}


def test_plot_loss_curves_axes(namespace, seed):
    figure, record = plot_record(namespace, histories(seed, "axes", 3))
    close([figure])
    return record
