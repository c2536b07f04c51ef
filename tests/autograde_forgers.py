"""Live forgeries of residual_blocks' observations, for an EMPTY submission (from a red-team review of the judges).

Nothing here defines make_shortcut, ResidualBlock, PlainBlock, build_network or plot_loss_curves: each forger
(FORGERS[grade_id](P, namespace, seed), where P is the probe module the grader sends, with this run's seed) builds
the probe's observations from what a kernel can compute cheaply, with the probes' own public helpers:
  * echoes of the seeded inputs, flags, counts, shapes and layer descriptions;
  * the output of one lone convolution, or of the probe's own stand-in blocks;
  * (the "eps trick") BatchNorms described with eps=1e12, under which every conv-BN branch collapses to the
    BatchNorm's bias, so that no branch need be computed.
The judges must credit none of it, except where the answer's own work is putting its input back out (the identity
shortcut, the plots): there, sending the observations is doing that work (docs/instructors.md, "Security model").
"""
import torch
import torch.nn.functional as F

BIG_EPS = 1e12


def _out(y, x=None):
    r = {"tensor": True, "values": y, "device": "cpu", "shape": list(y.shape)}
    if x is not None:
        r["input_device"] = "cpu"
    return r


def _mod(params=0, type_="Module"):
    return {"module": True, "type": type_, "parameters": params}


def _conv(index, cin, cout, k, stride):
    p = k // 2
    return {"type": "conv", "index": index, "weight": [cout, cin, k, k], "bias": False, "stride": [stride, stride],
            "padding": [p, p], "dilation": [1, 1], "groups": 1, "padding_mode": "zeros"}


def _bn(index, n, eps=1e-5):
    return {"type": "bn", "index": index, "features": n, "eps": eps, "affine": True, "tracks": True}


def _linear(index, fin, fout):
    return {"type": "linear", "index": index, "weight": [fout, fin], "bias": True}


def _meta(shape):
    return [{"ok": True, "meta": True, "shape": list(shape), "mode": m} for m in ("train", "eval")]


def _one_conv_gate(P, seed, salt, x, cin, cout, stride, out_shape, first_index=0):
    """A gate (verify_trace): the layer list, ONE traced convolution of x (the judge needs no more), any output."""
    layers = [_conv(0, cin, cout, 3, stride), _bn(1, cout), _conv(2, cout, cout, 3, 1), _bn(3, cout)]
    w = P.layer_values(seed, salt, layers[0])["weight"]
    y = F.conv2d(x, w, stride=stride, padding=1)
    return {"layers": layers, "trace": [{"layer": 0, "input": x, "output": y}],
            "output": _out(torch.zeros(out_shape), x)}


def _switched_off(P, seed, salt, layers):
    """What a branch whose BatchNorm weights are 0 outputs (probes.switch_off, biases kept): its last BatchNorm's
    bias, which the seed alone gives."""
    return P.layer_values(seed, salt, layers[-1])["bias"][None, :, None, None]


def _hw(s):
    return (8 - 1) // s + 1


def _gate(P, seed, salt, cin, cout, stride):
    """The gate of a block test (probes.gate), with one convolution computed."""
    x = P.images(seed, f"{salt}/{cin}/gate", (2, cin, 8, 8)).cpu()
    return _one_conv_gate(P, seed, f"{salt}/{cin}/gate", x, cin, cout, stride, (2, cout, _hw(stride), _hw(stride)))


# ---- part 2: make_shortcut --------------------------------------------------------------------------------

def test_make_shortcut_visible(P, ns, seed):
    x = P.images(seed, "ms-visible", (2, 16, 8, 8)).cpu()
    down_layer = _conv(0, 16, 32, 1, 2)
    w = P.layer_values(seed, "ms-visible", down_layer)["weight"]
    return {"same": dict(_mod(), output=_out(x, x)),
            "down": dict(_mod(544), layers=[down_layer],
                         trace=[{"layer": 0, "input": x, "output": F.conv2d(x, w, stride=2)}],
                         output=_out(torch.zeros(2, 32, 4, 4), x))}


def test_make_shortcut_identity(P, ns, seed):
    configs = []
    for c, _ in P.IDENTITY_CONFIGS:
        rec = {"module": _mod(), "default": _mod()}
        for mode in ("train", "eval"):
            x = P.images(seed, f"identity/{c}/{mode}", (2, c, 6, 6)).cpu()
            rec[mode] = {"output": _out(x, x), "input_after": x}
        rec["gradient"] = {"connected": True, "grad": P.images(seed, f"identity/{c}/weights", (2, c, 6, 6)).cpu()}
        rec["meta"] = _meta((2, c, 6, 6))
        configs.append(rec)
    return {"configs": configs}


def test_make_shortcut_projection(P, ns, seed):
    configs = []
    for cin, cout, s, _ in P.PROJECTION_CONFIGS:
        salt, hw = f"projection/{cin}/{cout}/{s}", _hw(s)
        layers = [_conv(0, cin, cout, 1, s), _bn(1, cout, BIG_EPS)]
        bias = P.layer_values(seed, salt, layers[1])["bias"]
        y = bias[None, :, None, None].expand(2, cout, hw, hw).clone()   # what BN(anything) is with eps=1e12
        x = P.images(seed, salt + "/x", (2, cin, 8, 8), 2.0, 1.0).cpu()
        configs.append({"module": _mod(cin * cout + 2 * cout), "layers": layers,
                        "eval": {"output": _out(y, x)}, "pixel": _out(y, x), "train": {"output": _out(y, x)},
                        "input_after": x, "gradient": {"connected": True, "grad": torch.full(x.shape, 1e-9)},
                        "weight_grads": [True], "meta": _meta((2, cout, hw, hw))})
    return {"configs": configs}


# ---- part 3: ResidualBlock --------------------------------------------------------------------------------

def _standin_shortcut(P, x, seed, salt, cin, cout, s):
    if cin == cout and s == 1:
        return x
    return F.conv2d(x, P.shortcut_values(seed, salt, cin, cout).to(x.dtype), stride=s)


def _block_params(cin, cout, residual, s=1):
    extra = cin * cout if residual and (cin != cout or s != 1) else 0
    return 9 * cin * cout + 9 * cout * cout + 4 * cout + extra


def test_residual_block_visible(P, ns, seed):
    x = P.images(seed, "rb-visible", (2, 16, 8, 8)).cpu()
    found = {}
    for args, shape in [((16, 16), (2, 16, 8, 8)), ((16, 32, 2), (2, 32, 4, 4))]:
        what = f"ResidualBlock{args}"
        s = args[2] if len(args) > 2 else 1
        found[what] = dict(_mod(), output=_out(torch.zeros(shape), x),
                           gate=_one_conv_gate(P, seed, f"rb-visible/{what}", x, 16, args[1], s, shape))
    found["off"] = _out(F.relu(x), x)
    return found


def _shortcut_rec():
    return {"stored": True, "type": "Module", "made": True}


def test_residual_block_layers(P, ns, seed):
    configs = []
    for cin, cout, s in P.BLOCK_CONFIGS:
        gate = _gate(P, seed, "rb-layers", cin, cout, s)
        configs.append({"module": _mod(), "shortcut": _shortcut_rec(),
                        "branch": {"layers": gate["layers"], "parameters": _block_params(cin, cout, True, s),
                                   "shortcut_parameters": 0}, "gate": gate})
    return {"configs": configs}


def test_residual_block_adds_shortcut(P, ns, seed):
    configs = []
    for cin, cout, s in P.BLOCK_CONFIGS:
        salt = f"rb-adds/{cin}/{cout}/{s}"
        x = P.images(seed, f"{salt}/x", (2, cin, 8, 8)).cpu()
        layers = [_conv(0, cin, cout, 3, s), _bn(1, cout), _conv(2, cout, cout, 3, 1), _bn(3, cout)]
        y = F.relu(_switched_off(P, seed, salt, layers) + _standin_shortcut(P, x, seed, "rb-adds", cin, cout, s))
        configs.append({"module": _mod(), "shortcut": _shortcut_rec(), "norms_off": 2, "output": _out(y, x),
                        "layers": layers, "gate": _gate(P, seed, "rb-adds", cin, cout, s)})
    return {"configs": configs}


def _formula_records(P, seed, salt, residual):
    found = []
    for cin, cout, s in P.BLOCK_CONFIGS:
        rec = {"module": _mod(), "shortcut": _shortcut_rec()}
        layer_salt = f"{salt}/{cin}/{cout}/{s}"
        layers = [_conv(0, cin, cout, 3, s), _bn(1, cout, BIG_EPS), _conv(2, cout, cout, 3, 1), _bn(3, cout, BIG_EPS)]
        b2 = P.layer_values(seed, layer_salt, layers[3])["bias"][None, :, None, None]
        for mode in ("eval", "train"):
            x = P.images(seed, f"{layer_salt}/{mode}", (4, cin, 8, 8)).cpu()
            branch = b2.expand(4, cout, _hw(s), _hw(s))    # BN2(anything) with eps=1e12
            y = F.relu(branch + _standin_shortcut(P, x, seed, salt, cin, cout, s)) if residual else F.relu(branch)
            rec[mode] = {"layers": layers, "output": _out(y.clone(), x)}
        found.append(rec)
    return found


def _inputs_records(P, seed, salt, residual):
    found = []
    for cin, cout, s in P.BLOCK_CONFIGS[:2]:
        hw = _hw(s)
        rec = {"module": _mod()}
        for mode in ("train", "eval"):
            x = P.images(seed, f"{salt}/{cin}/{mode}", (2, cin, 8, 8)).cpu()
            rec[mode] = {"input_after": x, "returned_input": False, "output": _out(torch.zeros(2, cout, hw, hw), x)}
        rec["gradient"] = {"connected": True, "grad": torch.ones(2, cin, 8, 8)}
        rec["idle"] = []
        rec["gate"] = _gate(P, seed, salt, cin, cout, s)
        if residual:
            x = P.images(seed, f"{salt}/{cin}/off", (2, cin, 8, 8)).cpu().double().requires_grad_(True)
            w = P.images(seed, f"{salt}/{cin}/off-weights", (2, cout, hw, hw)).cpu().double()
            (F.relu(_standin_shortcut(P, x, seed, salt, cin, cout, s).double()) * w).sum().backward()
            rec["off"] = {"connected": True, "grad": x.grad}
        found.append(rec)
    return found


def _device_records(P, seed, salt):
    found = []
    for cin, cout, s in P.BLOCK_CONFIGS[:2]:
        hw = _hw(s)
        found.append({"module": _mod(), "meta": _meta((2, cout, hw, hw)), "gate": _gate(P, seed, salt, cin, cout, s)})
    return found


def test_residual_block_formula(P, ns, seed):
    return {"configs": _formula_records(P, seed, "rb-formula", True)}


def test_residual_block_input_and_gradients(P, ns, seed):
    return {"configs": _inputs_records(P, seed, "rb-input", True)}


def test_residual_block_devices(P, ns, seed):
    return {"configs": _device_records(P, seed, "rb-devices")}


# ---- part 4: PlainBlock -----------------------------------------------------------------------------------

def test_plain_block_visible(P, ns, seed):
    x = P.images(seed, "pb-visible", (2, 16, 8, 8)).cpu()
    found = {}
    for args, shape in [((16, 16), (2, 16, 8, 8)), ((16, 32, 2), (2, 32, 4, 4))]:
        what = f"PlainBlock{args}"
        s = args[2] if len(args) > 2 else 1
        found[what] = dict(_mod(), output=_out(torch.zeros(shape), x),
                           gate=_one_conv_gate(P, seed, f"pb-visible/{what}", x, 16, args[1], s, shape))
    return found


def test_plain_block_no_shortcut(P, ns, seed):
    configs = []
    for cin, cout, s in P.BLOCK_CONFIGS:
        salt = f"pb-layers/{cin}/{cout}/{s}"
        x = P.images(seed, salt, (2, cin, 8, 8)).cpu()
        gate = _one_conv_gate(P, seed, salt, x, cin, cout, s, (2, cout, _hw(s), _hw(s)))
        xo = P.images(seed, f"pb-off/{cin}", (2, cin, 8, 8)).cpu()
        off = F.relu(_switched_off(P, seed, salt, gate["layers"])).expand(2, cout, _hw(s), _hw(s)).clone()
        configs.append({"module": _mod(), "branch": {"layers": gate["layers"],
                                                     "parameters": _block_params(cin, cout, False),
                                                     "shortcut_parameters": None},
                        "gate": gate, "off": _out(off, xo)})
    return {"configs": configs}


def test_plain_block_formula(P, ns, seed):
    return {"configs": _formula_records(P, seed, "pb-formula", False),
            "inputs": _inputs_records(P, seed, "pb-input", False),
            "devices": _device_records(P, seed, "pb-devices")}


# ---- part 5: build_network (a chain of the probe's own stand-in blocks; the stem is never checked) ---------

def _network(P, seed, salt, n, residual, cin, classes, widths, size=8, batch=2):
    made, blocks = [], []
    h = torch.rand(batch, widths[0], size, size)          # "the stem's output": only its shape and sign are checked
    first, prev_c = h, widths[0]
    for stage, width in enumerate(widths):
        for position in range(n):
            stride = 2 if stage > 0 and position == 0 else 1
            config = {"number": len(made), "residual": residual, "in": prev_c, "out": width, "stride": stride}
            values = P.standin_values(seed, salt, config["number"], residual, prev_c, width)
            h = P.standin_forward(h, config, values)
            made.append(config)
            blocks.append({"number": config["number"], "output": h.clone()})
            prev_c = width
    head = _linear(0, widths[-1], classes)
    v = P.layer_values(seed, salt, head)
    pooled = h.mean(dim=(2, 3))
    logits = F.linear(pooled, v["weight"], v["bias"])
    stem = 9 * cin * widths[0] + 2 * widths[0]
    return {"module": _mod(), "made": made,
            "parts": {"blocks": 0, "linear": widths[-1] * classes + classes, "stem": stem},
            "layers": [head], "logits": _out(logits, first), "first": first, "blocks": blocks,
            "linear": [{"input": pooled, "output": logits}]}


def test_build_network_visible(P, ns, seed):
    return {"module": _mod(), "logits": _out(torch.zeros(4, 10)),
            "counts": {"True": {"module": _mod(272_474)}, "False": {"module": _mod(269_722)}},
            "gate": _network(P, seed, "bn-visible", 1, True, 1, 10, (16, 32, 64))}


def test_build_network_size(P, ns, seed):
    nets = [_network(P, seed, f"bn-size/{n}/{r}", n, r, 1, 10, (16, 32, 64)) for n in (1, 2, 3) for r in (True, False)]
    nets += [_network(P, seed, f"bn-size/3/{r}/rgb", 3, r, 3, 10, (16, 32, 64)) for r in (True, False)]
    return {"networks": nets}


def test_build_network_shapes(P, ns, seed):
    return {"networks": [_network(P, seed, f"bn-shapes/{i}", n, r, cin, k, w, size, batch)
                         for i, (n, r, cin, k, w, size, batch) in enumerate(P.SHAPE_CONFIGS)]}


def test_build_network_options(P, ns, seed):
    return {"networks": [_network(P, seed, f"bn-options/{i}", n, r, cin, k, w, size, batch)
                         for i, (n, r, cin, k, w, size, batch) in enumerate(P.OPTION_CONFIGS)],
            "defaults": _network(P, seed, "bn-defaults", 1, True, 1, 10, (16, 32, 64)),
            "idle": [], "meta": _meta((2, 10))}


# ---- part 6: plot_loss_curves (a plot described, never drawn) ---------------------------------------------

def _figure(data):
    lines = [{"label": name, "x": [float(i) for i in range(len(v))], "y": [float(a) for a in v]}
             for name, v in data.items()]
    return {"figure": True, "axes": [{"lines": lines, "yscale": "log", "xlabel": "step", "ylabel": "loss",
                                      "legend": list(data)}], "figure_legends": []}


def test_plot_loss_curves_visible(P, ns, seed):
    return _figure(P.histories(seed, "visible", 2))


def test_plot_loss_curves_lines(P, ns, seed):
    return {"calls": [dict(_figure(P.histories(seed, f"lines/{i % 2}", runs)), earlier=False)
                      for i, runs in enumerate((3, 1, 3))]}


def test_plot_loss_curves_axes(P, ns, seed):
    return _figure(P.histories(seed, "axes", 3))


FORGERS = {name: f for name, f in list(globals().items()) if name.startswith("test_")}
