"""``--similarity`` on a class of 40 for the graded assignment (source/residual_blocks): students who write the
reference's style in their own ways are no pair; a copy renamed (to the release's own names too), reordered and
recommented is found, and stands first.

The students are made here, deterministically from a seed: each answer cell has a few equivalent formulations (and
a few partly wrong ones), and each student picks theirs, names their variables, orders independent lines, adds
comments, prints and a cell of their own, and writes the written answer from a pool of phrasings.
"""
import copy
import random
import re
from string import Template

import nbformat
import pytest

from autograde.results import Result
from autograde.similarity import EXTRA, answers, release_parts, similar_pairs, write_similarity

from assignment_helpers import RELEASE_NB

CLASS = 40
COPIED = 7  # the student whose answers the copier takes

# Each cell's formulations; $names are the student's own variables, and the lines between "@shuffle" and "@end" are
# independent lines that each student orders as they like.
BODIES = {
    "conv_output_size": [
        "    return (size + 2 * padding - kernel_size) // stride + 1",
        "    return (size - kernel_size + 2 * padding) // stride + 1",
        "    $out = size + 2 * padding - kernel_size\n    return $out // stride + 1",
        "    return int((size + 2 * padding - kernel_size) / stride) + 1",
        "    return (size + padding * 2 - kernel_size) // stride + 1",
        "    return (size + 2 * padding - kernel_size) / stride + 1",  # wrong: a float
    ],
    "make_shortcut": [
        "    if in_channels == out_channels and stride == 1:\n        return nn.Identity()\n"
        "    return nn.Sequential(\n        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, "
        "bias=False),\n        nn.BatchNorm2d(out_channels),\n    )",
        "    if stride != 1 or in_channels != out_channels:\n        return nn.Sequential(nn.Conv2d(in_channels, "
        "out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))\n    return nn.Identity()",
        "    $proj = in_channels != out_channels or stride != 1\n    if not $proj:\n        return nn.Identity()\n"
        "    $conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)\n"
        "    return nn.Sequential($conv, nn.BatchNorm2d(out_channels))",
        "    if in_channels == out_channels:\n        return nn.Identity()\n"  # wrong: forgets the stride
        "    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride), "
        "nn.BatchNorm2d(out_channels))",
    ],
    "build_network": [
        "    $block = ResidualBlock if residual else PlainBlock\n"
        "    $layers = [nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1, bias=False),\n"
        "              nn.BatchNorm2d(widths[0]), nn.ReLU()]\n    $ch = widths[0]\n"
        "    for $stage, $width in enumerate(widths):\n        for $index in range(blocks_per_stage):\n"
        "            $stride = 2 if $stage > 0 and $index == 0 else 1\n"
        "            $layers.append($block($ch, $width, $stride))\n            $ch = $width\n"
        "    $layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear($ch, num_classes)]\n"
        "    return nn.Sequential(*$layers)",
        "    if residual:\n        $block = ResidualBlock\n    else:\n        $block = PlainBlock\n"
        "    $layers = [nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), "
        "nn.ReLU()]\n    $ch = widths[0]\n    for $stage, $width in enumerate(widths):\n"
        "        $layers.append($block($ch, $width, 1 if $stage == 0 else 2))\n"
        "        for _ in range(blocks_per_stage - 1):\n            $layers.append($block($width, $width, 1))\n"
        "        $ch = $width\n    $layers.append(nn.AdaptiveAvgPool2d(1))\n    $layers.append(nn.Flatten())\n"
        "    $layers.append(nn.Linear($ch, num_classes))\n    return nn.Sequential(*$layers)",
        "    $block = ResidualBlock if residual else PlainBlock\n"
        "    $stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1, bias=False), "
        "nn.BatchNorm2d(widths[0]), nn.ReLU())\n    $blocks = []\n    $ch = widths[0]\n"
        "    for $stage in range(len(widths)):\n        for $index in range(blocks_per_stage):\n"
        "            $stride = 1\n            if $stage != 0 and $index == 0:\n                $stride = 2\n"
        "            $blocks.append($block($ch, widths[$stage], $stride))\n            $ch = widths[$stage]\n"
        "    return nn.Sequential($stem, *$blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), "
        "nn.Linear(widths[-1], num_classes))",
        "    $block = ResidualBlock if residual else PlainBlock\n"  # wrong: every block keeps stride 1
        "    $layers = [nn.Conv2d(in_channels, widths[0], 3, padding=1), nn.BatchNorm2d(widths[0]), nn.ReLU()]\n"
        "    $ch = widths[0]\n    for $width in widths:\n        for _ in range(blocks_per_stage):\n"
        "            $layers.append($block($ch, $width))\n            $ch = $width\n"
        "    $layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear($ch, num_classes)]\n"
        "    return nn.Sequential(*$layers)",
    ],
    "train": [
        "    $device = next(model.parameters()).device\n    model.train()\n"
        "    $opt = torch.optim.Adam(model.parameters(), lr=lr)\n"
        "    $gen = torch.Generator().manual_seed(seed)\n"
        "    $order, $cursor = torch.randperm(len(images), generator=$gen), 0\n    $losses = []\n"
        "    for _ in range(steps):\n        if $cursor + batch_size > len($order):\n"
        "            $order, $cursor = torch.randperm(len(images), generator=$gen), 0\n"
        "        $batch = $order[$cursor:$cursor + batch_size]\n        $cursor += batch_size\n"
        "        $loss = F.cross_entropy(model(images[$batch].to($device)), labels[$batch].to($device))\n"
        "@shuffle\n        $opt.zero_grad()\n@end\n        $loss.backward()\n        $opt.step()\n"
        "        $losses.append($loss.item())\n    return $losses",
        "    model.train()\n    $device = next(model.parameters()).device\n"
        "    $opt = torch.optim.Adam(model.parameters(), lr)\n    $gen = torch.Generator()\n"
        "    $gen.manual_seed(seed)\n    $losses = []\n    $perm = torch.randperm(images.shape[0], generator=$gen)\n"
        "    $pos = 0\n    for $step in range(steps):\n        if $pos + batch_size > images.shape[0]:\n"
        "            $perm = torch.randperm(images.shape[0], generator=$gen)\n            $pos = 0\n"
        "        $batch = $perm[$pos:$pos + batch_size]\n        $pos = $pos + batch_size\n"
        "        $x, $y = images[$batch].to($device), labels[$batch].to($device)\n        $opt.zero_grad()\n"
        "        $loss = F.cross_entropy(model($x), $y)\n        $loss.backward()\n        $opt.step()\n"
        "        $losses.append(float($loss))\n    return $losses",
        "    torch.manual_seed(seed)\n    $device = next(model.parameters()).device\n"  # partly wrong: global seed
        "    $opt = torch.optim.Adam(model.parameters(), lr=lr)\n    $losses = []\n    model.train()\n"
        "    for $step in range(steps):\n        $batch = torch.randint(0, len(images), (batch_size,))\n"
        "        $out = model(images[$batch].to($device))\n"
        "        $loss = nn.functional.cross_entropy($out, labels[$batch].to($device))\n"
        "        $opt.zero_grad()\n        $loss.backward()\n        $opt.step()\n"
        "        $losses.append($loss.item())\n    return $losses",
    ],
    "plot_loss_curves": [
        "    $fig, $ax = plt.subplots(figsize=($w, 4))\n    for $name, $curve in histories.items():\n"
        "        $ax.plot(range(1, len($curve) + 1), $curve, label=$name)\n    $ax.set_yscale(\"log\")\n"
        "@shuffle\n    $ax.set_xlabel(\"$xlabel\")\n    $ax.set_ylabel(\"$ylabel\")\n    $ax.legend()\n@end\n"
        "    return $fig",
        "    $fig = plt.figure(figsize=($w, 4))\n    for $name in histories:\n"
        "        plt.plot(range(1, len(histories[$name]) + 1), histories[$name], label=$name)\n"
        "@shuffle\n    plt.yscale(\"log\")\n    plt.xlabel(\"$xlabel\")\n    plt.ylabel(\"$ylabel\")\n"
        "    plt.legend()\n@end\n    return $fig",
        "    $fig, $ax = plt.subplots()\n    for $name, $curve in histories.items():\n"
        "        $ax.semilogy(range(1, len($curve) + 1), $curve, label=$name)\n"
        "@shuffle\n    $ax.set_xlabel(\"$xlabel\")\n    $ax.set_ylabel(\"$ylabel\")\n    $ax.legend()\n@end\n"
        "    return $fig",
        "    $fig, $ax = plt.subplots()\n    for $name, $curve in histories.items():\n"  # wrong: no log scale
        "        $ax.plot($curve, label=$name)\n    $ax.legend()\n    return $fig",
    ],
}
CONV_ARGS = ["in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False",
             "in_channels, out_channels, 3, stride, 1, bias=False",
             "in_channels, out_channels, kernel_size=3, padding=1, stride=stride, bias=False",
             "in_channels, out_channels, 3, stride=stride, padding=1"]  # the last: partly wrong (a bias)
FORWARDS = [
    "        $h = $relu(self.$bn1(self.$conv1(x)))\n        $h = self.$bn2(self.$conv2($h))\n"
    "        return $relu($h + self.shortcut(x))",
    "        $identity = self.shortcut(x)\n        $h = self.$conv1(x)\n        $h = self.$bn1($h)\n"
    "        $h = $relu($h)\n        $h = self.$conv2($h)\n        $h = self.$bn2($h)\n        $h += $identity\n"
    "        return $relu($h)",
    "        return $relu(self.$bn2(self.$conv2($relu(self.$bn1(self.$conv1(x))))) + self.shortcut(x))",
    "        $h = $relu(self.$bn1(self.$conv1(x)))\n"  # wrong: no ReLU after the sum
    "        return self.$bn2(self.$conv2($h)) + self.shortcut(x)",
]
PLAIN_FORWARDS = [
    "        $h = $relu(self.$bn1(self.$conv1(x)))\n        return $relu(self.$bn2(self.$conv2($h)))",
    "        $h = self.$conv1(x)\n        $h = self.$bn1($h)\n        $h = $relu($h)\n        $h = self.$conv2($h)\n"
    "        $h = self.$bn2($h)\n        return $relu($h)",
    "        return $relu(self.$bn2(self.$conv2($relu(self.$bn1(self.$conv1(x))))))",
]
NAMES = {  # the student's choice for each variable
    "out": ["out", "result", "size_out", "n"], "proj": ["proj", "needs_projection", "change", "project"],
    "conv": ["conv", "projection", "c", "one_by_one"], "block": ["block", "Block", "block_cls", "kind"],
    "layers": ["layers", "modules", "net", "parts"], "ch": ["channels", "ch", "c_in", "current"],
    "stage": ["stage", "i", "s", "stage_index"], "width": ["width", "w", "c_out", "out_ch"],
    "index": ["index", "j", "b", "k"], "stride": ["stride", "st", "step", "s_"], "stem": ["stem", "first", "head"],
    "blocks": ["blocks", "body", "stages"], "device": ["device", "dev"], "opt": ["optimizer", "opt", "adam"],
    "gen": ["generator", "gen", "rng", "g"], "order": ["order", "perm", "indices", "shuffled"],
    "cursor": ["cursor", "pos", "start", "ptr"], "perm": ["perm", "order", "p"], "pos": ["pos", "i0", "offset"],
    "batch": ["batch", "idx", "ids", "rows"], "loss": ["loss", "l", "batch_loss", "ce"],
    "losses": ["losses", "history", "values", "curve"], "step": ["step", "it", "t", "iteration"],
    "x": ["x", "xb", "inputs"], "y": ["y", "yb", "targets"], "fig": ["fig", "figure", "f"],
    "ax": ["ax", "axes", "axis"], "name": ["label", "name", "key", "run"], "curve": ["losses", "curve", "hist"],
    "h": ["out", "h", "y", "z"], "identity": ["identity", "skip", "residual", "sc"],
    "conv1": ["conv1", "conv_1", "c1"], "conv2": ["conv2", "conv_2", "c2"], "bn1": ["bn1", "bn_1", "norm1"],
    "bn2": ["bn2", "bn_2", "norm2"], "act": ["relu", "act", "activation"],
    "xlabel": ["step", "training step", "iteration", "Step"],
    "ylabel": ["training loss (log scale)", "loss", "training loss", "Loss (log)"],
}
WRITTEN = [  # the points of the written answer, each in a few phrasings
    ["It is not overfitting, because the deeper plain network is worse on its training data as well.",
     "This cannot be overfitting: the deep plain network has a higher training loss, not only a higher test loss.",
     "Overfitting would show as a good training loss and a bad test loss, but here the training loss is worse."],
    ["A shallower network shows that better weights exist, since the extra layers could compute the identity.",
     "The extra layers could just learn the identity mapping, so the deeper net should be at least as good.",
     "In principle the deeper network can copy the shallow one and make the rest identity layers."],
    ["The gradient of the plain network explodes towards the input with BatchNorm.",
     "The plot shows that the gradient norm grows by a lot in the early layers of the plain network.",
     "At initialization the gradients do not vanish, they get bigger towards the first layers."],
    ["Adam rescales the steps, so the size of the gradient alone is not the problem; it becomes shattered noise.",
     "The real problem is that the gradient becomes close to noise and is a poor guide for the optimizer.",
     "Since Adam normalizes each weight's step, the issue is more that the gradient direction is useless."],
    ["In a ResNet each block adds its input back, which gives the gradient a direct path to early layers.",
     "The skip connections let the gradient flow straight back, so the ResNet's gradient norms vary much less.",
     "Residual blocks only need to learn a correction F(x) to the identity, which can be close to zero."],
]
FILLERS = ["I think", "In my opinion", "Overall", "To sum up", "Looking at the figure", "As we saw in class"]
WORDS = ("depth layers signal optimizer weights loss noise path shortcut identity training deep plain residual "
         "batch norm scale curve epoch learning rate").split()


def _body(template: str, names: dict[str, str], rng: random.Random) -> str:
    """*template* with the student's names, its @shuffle blocks in the student's order."""
    def shuffle(match):
        lines = match.group(1).splitlines()
        rng.shuffle(lines)
        return "\n".join(lines)
    text = re.sub(r"@shuffle\n(.*?)\n@end", shuffle, template, flags=re.DOTALL)
    return Template(text).safe_substitute(names)


def _decorated(code: str, rng: random.Random) -> str:
    """A student's comments and debugging prints, here and there."""
    lines = []
    for line in code.splitlines():
        indent = line[:len(line) - len(line.lstrip())]
        whole = not line.rstrip().endswith(("(", ",", "["))
        if rng.random() < 0.12 and line.strip() and whole:
            lines.append(f"{indent}# {' '.join(rng.sample(WORDS, 3))}")
        lines.append(line)
        assigned = re.match(r"\s*(\w+) = ", line)
        if rng.random() < 0.08 and assigned and whole:
            lines.append(f"{indent}print({assigned.group(1)})")
    return "\n".join(lines)


def _block(rng, names, residual: bool) -> tuple[str, str]:
    """A student's __init__ and forward of ResidualBlock (or PlainBlock)."""
    conv = rng.choice(CONV_ARGS)
    second = conv.replace("in_channels, out_channels", "out_channels, out_channels")
    second = second.replace("stride=stride", "stride=1").replace(" stride,", " 1,")
    functional = rng.random() < 0.4
    init = [f"self.{names['conv1']} = nn.Conv2d({conv})", f"self.{names['bn1']} = nn.BatchNorm2d(out_channels)",
            f"self.{names['conv2']} = nn.Conv2d({second})", f"self.{names['bn2']} = nn.BatchNorm2d(out_channels)"]
    if not functional:
        init.append(f"self.{names['act']} = nn.ReLU()")
    if residual:
        init.append("self.shortcut = make_shortcut(in_channels, out_channels, stride)")
    if rng.random() < 0.5:
        rng.shuffle(init)
    forward = Template(rng.choice(FORWARDS if residual else PLAIN_FORWARDS)).safe_substitute(
        names, relu="F.relu" if functional else f"self.{names['act']}")
    return "\n".join("        " + line for line in init), forward


def _release_cells() -> dict[str, str]:
    nb = nbformat.read(RELEASE_NB, as_version=4)
    return {c.metadata.nbgrader["grade_id"]: c.source for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("solution")}


def student(seed: int) -> dict[str, str]:
    """One student's answers by grade_id (and EXTRA: a cell of their own), made from *seed*."""
    rng = random.Random(seed)
    names = {key: rng.choice(choices) for key, choices in NAMES.items()}
    names["w"] = str(rng.choice([6, 7, 8, 10]))
    stubs = _release_cells()
    done = {}
    for grade_id, bodies in BODIES.items():
        header = stubs[grade_id].split("    # YOUR CODE HERE")[0]
        done[grade_id] = header + _decorated(_body(rng.choice(bodies), names, rng), rng)
    for grade_id, residual in (("ResidualBlock", True), ("PlainBlock", False)):
        init, forward = _block(rng, names, residual)
        parts = stubs[grade_id].split("        # YOUR CODE HERE\n        raise NotImplementedError()")
        done[grade_id] = parts[0] + _decorated(init, rng) + parts[1] + _decorated(forward, rng) + parts[2]
    for grade_id in rng.sample(sorted(done), rng.choice([0, 0, 0, 1, 2])):  # some leave a part undone
        done[grade_id] = stubs[grade_id]
    sentences = [rng.choice(point) for point in WRITTEN if rng.random() < 0.8]
    sentences.insert(rng.randrange(len(sentences) + 1), f"{rng.choice(FILLERS)} the {' '.join(rng.sample(WORDS, 5))}.")
    done["written_answer"] = " ".join(sentences)
    done[EXTRA] = rng.choice([f"print(conv_output_size({rng.choice([28, 32, 64])}, 3, {rng.choice([1, 2])}, 1))",
                              f"net = build_network({rng.choice([1, 2, 3])})\nprint(net)",
                              "import matplotlib.pyplot as plt\n%matplotlib inline", ""])
    return done


# The copier: every variable renamed, to the release's own names too, independent lines and cells reordered, the
# comments their own.
COPY_NAMES = ["conv", "f", "step", "block", "stride", "layers", "widths_", "tmp", "a", "b2", "q", "val", "zz", "m2",
              "u", "r", "k2", "acc", "buf", "ww"]


def _renamed(line: str, mapping: dict[str, str]) -> str:
    for old, new in mapping.items():  # variables, not keyword arguments or others' attributes; self's attributes
        line = re.sub(rf"(?<![\w.]){old}\b(?!=[^=])", new, line)
        line = re.sub(rf"(?<=self\.){old}\b", new, line)
    return line


def disguised(answers_of: dict[str, str], seed: int, names: list[str] = COPY_NAMES, shuffled: bool = True) \
        -> dict[str, str]:
    """*answers_of* renamed, reordered and recommented, as a copier would hand them in."""
    rng = random.Random(seed)
    done = {}
    for grade_id, source in answers_of.items():
        if grade_id == "written_answer":
            done[grade_id] = source.replace(" the ", " this ", 2)
            continue
        owned = sorted({m.group(1) for m in re.finditer(r"^\s*(?:for )?(\w+)(?:, \w+)? (?:=|\+=|in) ", source, re.M)}
                       | {m.group(1) for m in re.finditer(r"^\s*(?:for )?\w+, (\w+) (?:=|in) ", source, re.M)}
                       | {m.group(1) for m in re.finditer(r"self\.(\w+) = ", source)} - {"_"})
        free = [n for n in names if n not in set(re.findall(r"\w+", source))]
        mapping = dict(zip(owned, rng.sample(free, len(owned)) if shuffled else free))
        source = "\n".join(line for line in source.splitlines() if not line.strip().startswith("#"))
        source = "\n".join(line if '"""' in line else _renamed(line, mapping) for line in source.splitlines())
        source = re.sub(r"^(        self\.\w+ = nn\.\w+\(.*\)\n)(        self\.\w+ = nn\.\w+\(.*\)\n)", r"\2\1", source,
                        flags=re.M)  # two independent lines the other way round
        done[grade_id] = source.replace("\n", "\n    # my own approach\n", 1) if "\n" in source else source
    return dict(sorted(done.items(), key=lambda _: rng.random()))  # and the cells in another order


def notebook(answers_of: dict[str, str]) -> nbformat.NotebookNode:
    """The release filled in with *answers_of*, the cell of their own at the end, cells in the answers' order."""
    nb = nbformat.read(RELEASE_NB, as_version=4)
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    for grade_id, source in answers_of.items():
        if grade_id == EXTRA:
            nb.cells.append(nbformat.v4.new_code_cell(source))
        else:
            by_id[grade_id].source = source
    order = [by_id[g] for g in answers_of if g in by_id]
    answer_slots = [i for i, c in enumerate(nb.cells) if any(c is o for o in order)]
    for slot, cell in zip(answer_slots, order):  # the answer cells in the order of *answers_of*
        nb.cells[slot] = cell
    return nb


@pytest.fixture(scope="module")
def release():
    nb = nbformat.read(RELEASE_NB, as_version=4)
    return nb, *release_parts(nb)


def _pairs(release, notebooks: dict[str, nbformat.NotebookNode]):
    _, solutions, given = release
    return similar_pairs({s: answers(nb, solutions, given) for s, nb in notebooks.items()})


def _class(size: int) -> dict[str, nbformat.NotebookNode]:
    return {f"s{seed:02d}": notebook(student(seed)) for seed in range(size)}


def test_names_comments_and_the_order_of_statements_do_not_count():
    from autograde.similarity import code_fingerprints

    mine = "h = self.bn(self.conv1(x))  # first\nout = torch.relu(h) + len(h)\nself.conv1 = nn.Conv2d(3, 4)\n"
    theirs = "self.f = nn.Conv2d(3, 4)\n# mine\nconv = torch.relu(step) + len(step)\nstep = self.bn(self.f(x))\n"
    assert code_fingerprints(mine) == code_fingerprints(theirs)  # `conv1` is the cell's own attribute: renamed
    assert code_fingerprints(mine) != code_fingerprints(mine.replace("torch.relu", "torch.tanh"))  # an API's name
    assert code_fingerprints(mine) != code_fingerprints(mine.replace("out = ", "h = "))  # the structure counts
    broken = "def f(x:\n    return (x +"  # does not tokenize: compared line by line
    assert code_fingerprints(broken) == code_fingerprints(broken.replace("x", "conv")) != frozenset()


def test_forty_students_sharing_the_reference_style_are_almost_no_pairs(release):
    pairs = _pairs(release, _class(CLASS))
    print("pairs listed among 40 students:", [(p.a, p.b, round(p.score, 2), round(p.z, 1)) for p in pairs])
    assert len(pairs) < 5


def _with_copier(release, copy: dict[str, str]):
    notebooks = _class(CLASS - 1)
    notebooks["zz_copier"] = notebook(copy)
    return _pairs(release, notebooks)


def test_a_renamed_reordered_recommented_copy_stands_first_among_forty(release):
    original = student(COPIED)
    copy = disguised(original, seed=99)
    assert list(copy) != list(original) and copy["ResidualBlock"] != original["ResidualBlock"]
    assert {"conv", "f", "step"} & set(re.findall(r"\w+", "\n".join(copy.values())))  # the release's names too
    pairs = _with_copier(release, copy)
    print("copy:", [(rank, p.a, p.b, round(p.score, 2), round(p.z, 1)) for rank, p in enumerate(pairs, 1)])
    assert (pairs[0].a, pairs[0].b) == (f"s{COPIED:02d}", "zz_copier") and pairs[0].score >= 0.8
    assert len(pairs) < 5


def test_a_copy_renamed_to_the_release_names_is_found(release):
    """Each of the copier's variables becomes a name the release uses (conv, f, step, ...), so that a matching that
    keeps the release's names as written would see different code."""
    release_names = ["conv", "f", "step", "layers", "block", "stride", "x", "out", "channels", "width", "index",
                     "batch", "loss", "losses", "figure", "axes", "label", "optimizer", "generator", "order", "cursor"]
    names = list(dict.fromkeys([n for n in release_names if re.search(rf"\b{n}\b", "".join(_release_cells().values()))
                                or n in ("conv", "f", "step")] + COPY_NAMES))
    copy = disguised(student(COPIED), seed=5, names=names, shuffled=False)
    assert re.search(r"\bconv = nn\.Conv2d|\bf = ", copy["make_shortcut"] + copy["build_network"])
    pairs = _with_copier(release, copy)
    assert (pairs[0].a, pairs[0].b) == (f"s{COPIED:02d}", "zz_copier") and pairs[0].score >= 0.8


def test_untouched_release_notebooks_are_no_pair(release):
    nb, solutions, given = release
    untouched = copy.deepcopy(nb)
    commented = copy.deepcopy(nb)
    for cell in commented.cells:
        if cell.cell_type == "code":
            cell.source = "# I did not get this one\n" + cell.source
    assert answers(untouched, solutions, given) == {} == answers(commented, solutions, given)
    notebooks = dict(_class(8), release_a=untouched, release_b=copy.deepcopy(nb), release_c=commented)
    assert not [p for p in _pairs(release, notebooks) if p.a.startswith("release") or p.b.startswith("release")]


EVIL_ID = "=HYPERLINK(\"http://x\")<img src=x onerror=alert(1)>"
EVIL_CODE = "</pre><script>alert('student')</script><pre>"


def test_the_report_escapes_what_students_wrote(release, tmp_path):
    nb, _, _ = release
    notebooks = _class(12)
    original = dict(student(COPIED), conv_output_size=_release_cells()["conv_output_size"] + f"\n# {EVIL_CODE}\n"
                    "    return (size + 2 * padding - kernel_size) // stride + 1")
    notebooks[f"s{COPIED:02d}"] = notebook(original)
    notebooks[EVIL_ID] = notebook(disguised(original, seed=3))
    submitted, results = {}, []
    for name, student_nb in notebooks.items():
        submitted[name] = tmp_path / f"{len(submitted)}.ipynb"
        nbformat.write(student_nb, submitted[name])
        results.append(Result(student_id=name, origin="x", feedback="", max_score=10, score=7))
    line = write_similarity(tmp_path, results, nb, submitted)
    assert "1 pair(s)" in line and "similarity.html" in line and "grades are unchanged" in line
    assert all(r.score == 7 for r in results)
    rows = (tmp_path / "similarity.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "student_a,student_b,similarity,z_score,most_alike_cells"
    assert rows[1].startswith(f"\"'{EVIL_ID.replace(chr(34), 2 * chr(34))}\",s{COPIED:02d},")  # inert in a spreadsheet
    page = (tmp_path / "similarity.html").read_text(encoding="utf-8")
    assert "<script" not in page and "<img" not in page and "onerror=alert(1)>" not in page
    assert "&lt;/pre&gt;&lt;script&gt;" in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert page.count("<h2 ") == 1 and page.count("<tr>") == 1 + 8  # a header, 7 code answers, the written one


@pytest.mark.slow  # 41 notebooks graded through the command line
def test_the_class_graded_through_the_cli_lists_the_copy_and_almost_nothing_else(tmp_path):
    """The same class, as an instructor grades it: `grade --similarity` on a folder of 41 notebooks."""
    from autograde_fixtures import run_cli

    folder = tmp_path / "class"
    folder.mkdir()
    for student_id, nb in {**_class(CLASS), "zz_copier": notebook(disguised(student(COPIED), seed=99))}.items():
        nbformat.write(nb, folder / f"{student_id}.ipynb")
    done = run_cli("grade", folder, "--assignment", "residual_blocks", "--out", tmp_path / "out", "--jobs", "2",
                   "--timeout", "30", "--no-progress", "--similarity", timeout=3600)  # (a hang, not a budget)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = (tmp_path / "out" / "similarity.csv").read_text().splitlines()[1:]
    assert rows and rows[0].startswith(f"s{COPIED:02d},zz_copier,") and len(rows) < 5, rows
    assert len((tmp_path / "out" / "grades.csv").read_text(encoding="utf-8-sig").splitlines()) == CLASS + 2
