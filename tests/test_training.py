import pytest
import torch
from torch import nn

from resnet_course.data import load_digits
from resnet_course.models import cifar_style_net
from resnet_course.training import gradient_norms, make_optimizer, train


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
