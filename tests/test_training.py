import pytest
import torch
from torch import nn

from resnet_course.data import load_digits
from resnet_course.models import ResidualUnit, block_ends, cifar_style_net
from resnet_course.training import activation_spread, gradient_norms, make_optimizer, relu_open_fraction, train


def easy_problem():
    torch.manual_seed(0)
    images = torch.randn(256, 1, 4, 4)
    labels = (images.mean(dim=(1, 2, 3)) > 0).long()
    return images, labels


def linear_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 2))


def test_loss_history_falls_on_an_easy_problem():
    images, labels = easy_problem()
    losses = train(linear_model(), images, labels, steps=60, lr=0.05, batch_size=32, progress=False)
    assert len(losses) == 60 and all(isinstance(v, float) for v in losses)
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10


def test_training_is_deterministic_under_a_seed():
    images, labels = easy_problem()
    first = train(linear_model(), images, labels, steps=20, seed=3, progress=False)
    second = train(linear_model(), images, labels, steps=20, seed=3, progress=False)
    other = train(linear_model(), images, labels, steps=20, seed=4, progress=False)
    assert first == second and first != other


def test_training_runs_on_the_requested_device():
    images, labels = easy_problem()
    model = linear_model()
    train(model, images, labels, steps=2, device="cpu", progress=False)
    assert next(model.parameters()).device.type == "cpu"


def test_progress_bar_shows_the_loss(capsys):
    images, labels = easy_problem()
    train(linear_model(), images, labels, steps=12, progress=True, desc="easy")
    assert "easy" in capsys.readouterr().err


def test_gradient_norms_run_from_input_to_output():
    images, labels = load_digits()
    torch.manual_seed(0)
    net = cifar_style_net(8)
    norms = gradient_norms(net, images[:64], labels[:64])
    names = list(norms)
    assert names[0].startswith("0.") and names[-1].endswith(".weight") and "Linear" not in names[0]
    assert len(norms) == 8  # 7 convolutions and the linear layer
    assert all(v > 0 for v in norms.values())


def test_plain_deep_net_without_batch_norm_loses_its_gradient():
    images, labels = load_digits()
    norms = {}
    for residual in (False, True):
        torch.manual_seed(0)
        net = cifar_style_net(20, residual, batch_norm=False, init="default", conv_bias=True)
        norms[residual] = list(gradient_norms(net, images[:128], labels[:128]).values())
    assert norms[False][0] < 1e-6 < norms[True][0]
    assert norms[True][0] > 1e3 * norms[False][0]


def test_optimizers_by_name():
    model = linear_model()
    sgd = make_optimizer("sgd", model.parameters(), 0.1)
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["momentum"] == 0.9 and sgd.defaults["weight_decay"] == 1e-4 and sgd.defaults["lr"] == 0.1
    assert isinstance(make_optimizer("adam", model.parameters(), 2e-3), torch.optim.Adam)
    with pytest.raises(ValueError, match="adam, sgd"):
        make_optimizer("rmsprop", model.parameters(), 0.1)


def test_training_uses_the_named_optimizer():
    images, labels = easy_problem()
    adam = train(linear_model(), images, labels, steps=5, lr=0.05, progress=False)
    sgd = train(linear_model(), images, labels, steps=5, lr=0.05, optimizer="sgd", progress=False)
    assert adam[0] == sgd[0] and adam[1:] != sgd[1:]  # the same first batch, then different updates


def test_after_step_sees_every_step_and_the_model():
    images, labels = easy_problem()
    model, seen = linear_model(), []
    train(model, images, labels, steps=7, progress=False, after_step=lambda step, m: seen.append((step, m)))
    assert [step for step, _ in seen] == list(range(1, 8)) and all(m is model for _, m in seen)


NO_BATCH_NORM = dict(batch_norm=False, init="default", conv_bias=True)


def test_block_ends_are_the_stem_every_block_and_the_logits():
    for residual in (False, True):
        net = cifar_style_net(14, residual)
        ends = block_ends(net)
        assert len(ends) == 1 + 6 + 1  # the stem, 2 blocks in each of 3 stages, the linear layer
        assert ends[0] is net[2] and isinstance(ends[-1], nn.Linear)
        x = torch.randn(2, 1, 8, 8)
        outputs = []
        for layer in ends:
            layer.register_forward_hook(lambda _, inputs, output: outputs.append(output))
        net.eval()(x)
        # A plain net's block ends where its residual twin's does: same shapes, block by block.
        assert [tuple(o.shape) for o in outputs[1:-1]] == [(2, 8, 8, 8)] * 2 + [(2, 16, 4, 4)] * 2 + [(2, 32, 2, 2)] * 2


def test_activation_spread_measures_how_much_outputs_differ_across_images():
    images, _ = load_digits()
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 3))
    with torch.no_grad():
        net[3].weight.zero_()
        net[3].bias.copy_(torch.tensor([1.0, -2.0, 5.0]))    # the same logits for every image
    spread = activation_spread(net, images[:64])
    assert list(spread) == ["stem", "logits"] and spread["stem"] > 0.1 and spread["logits"] == 0.0


def test_a_deep_plain_net_without_batch_norm_forgets_the_image():
    """Lesson 2's claim: its logits are the same for every image, its residual twin's are not."""
    images, _ = load_digits()
    spreads = {}
    for residual in (False, True):
        torch.manual_seed(0)
        spreads[residual] = activation_spread(cifar_style_net(20, residual, **NO_BATCH_NORM), images[:256])
    assert len(spreads[False]) == 11 and list(spreads[False])[1] == "block 1"
    assert spreads[False]["logits"] < 1e-6 < 1e-2 < spreads[True]["logits"]
    assert spreads[False]["stem"] == spreads[True]["stem"]  # the same stem, from the same seed


def test_relu_open_fraction_is_where_the_block_passes_a_gradient():
    unit = ResidualUnit(2, 2, stride=1)
    nn.init.zeros_(unit.norm2.weight)   # branch off: the unit computes relu(0 + x)
    x = torch.tensor([1.0, -1.0, 2.0, -3.0]).repeat(8, 2, 2, 1)   # half of the entries are positive
    assert relu_open_fraction(nn.Sequential(unit), x) == [0.5]
    x.requires_grad_(True)
    unit(x).sum().backward()
    assert (x.grad != 0).float().mean().item() == 0.5   # and the gradient passes exactly there
    images, _ = load_digits()
    torch.manual_seed(0)
    fractions = relu_open_fraction(cifar_style_net(14, residual=True), images[:128])
    assert len(fractions) == 6 and all(0.3 < f < 1 for f in fractions)
