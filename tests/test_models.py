import pytest
import torch
from torch import nn

from resnet_course.models import PaddedShortcut, cifar_style_net, count_parameters


def convs(net):
    return [m for m in net.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("depth", [8, 20, 32])
@pytest.mark.parametrize("residual", [False, True])
def test_depth_counts_weighted_layers(depth, residual):
    net = cifar_style_net(depth, residual)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(convs(net)) + len(linears) == depth
    assert net(torch.randn(5, 1, 8, 8)).shape == (5, 10)


@pytest.mark.parametrize("depth", [7, 9, 0])
def test_depth_must_be_6n_plus_2(depth):
    with pytest.raises(ValueError, match="6n \\+ 2"):
        cifar_style_net(depth)


def test_stages_halve_the_feature_maps_and_double_the_width():
    net = cifar_style_net(20, widths=(16, 32, 64), in_channels=3)
    shapes = []
    x = torch.randn(2, 3, 32, 32)
    for layer in net:
        x = layer(x)
        shapes.append(tuple(x.shape))
    assert (2, 16, 32, 32) in shapes and (2, 32, 16, 16) in shapes and (2, 64, 8, 8) in shapes


def test_option_a_shortcut_is_parameter_free_and_residual_twin_matches_plain_size():
    # Zero-padding shortcuts add no parameters, so the residual net is exactly as large as its plain twin.
    assert count_parameters(cifar_style_net(20, True)) == count_parameters(cifar_style_net(20, False))
    x = torch.randn(2, 4, 6, 6)
    out = PaddedShortcut(8, 2)(x)
    assert out.shape == (2, 8, 3, 3)
    assert torch.equal(out[:, :4], x[:, :, ::2, ::2]) and not out[:, 4:].any()


def test_residual_block_adds_its_input():
    torch.manual_seed(0)
    net = cifar_style_net(8, residual=True).eval()
    block = net[3]  # the first unit: same width, stride 1
    for norm in (block.norm1, block.norm2):
        nn.init.zeros_(norm.weight)
    x = torch.randn(2, 8, 8, 8)
    # With the branch silenced, a residual block is ReLU(x): the identity on what the previous ReLU produced.
    assert torch.allclose(block(x), torch.relu(x))


def test_plain_and_residual_twins_start_from_the_same_weights():
    torch.manual_seed(4)
    plain = cifar_style_net(14, residual=False)
    torch.manual_seed(4)
    residual = cifar_style_net(14, residual=True)
    pairs = list(zip(plain.parameters(), residual.parameters()))
    assert len(pairs) == len(list(plain.parameters())) == len(list(residual.parameters()))
    assert all(a.shape == b.shape and torch.equal(a, b) for a, b in pairs)


def test_options_without_batch_norm_and_with_bias():
    net = cifar_style_net(20, residual=False, batch_norm=False, init="default", conv_bias=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert all(conv.bias is not None for conv in convs(net))
    with pytest.raises(ValueError, match="init"):
        cifar_style_net(8, init="xavier")


def test_he_init_differs_from_default_and_is_seeded():
    torch.manual_seed(1)
    he = convs(cifar_style_net(8))[1].weight
    torch.manual_seed(1)
    again = convs(cifar_style_net(8))[1].weight
    torch.manual_seed(1)
    default = convs(cifar_style_net(8, init="default"))[1].weight
    assert torch.equal(he, again)
    # Kaiming normal (fan_out, ReLU) has std sqrt(2 / (8 * 3 * 3)) = 0.167; PyTorch's default is much smaller.
    assert he.std().item() == pytest.approx((2 / 72) ** 0.5, rel=0.25)
    assert default.std().item() < 0.7 * he.std().item()
