import pytest
import torch
from torch import nn

from resnet_course.models import (PaddedShortcut, PreActUnit, ResidualUnit, block_plan, cifar_style_net,
                                  count_parameters, preact_resnet)


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


def test_block_plan_halves_and_widens_at_each_new_stage():
    assert block_plan(20, (8, 16, 32)) == [(8, 8, 1)] * 3 + [(8, 16, 2), (16, 16, 1), (16, 16, 1),
                                                             (16, 32, 2), (32, 32, 1), (32, 32, 1)]
    with pytest.raises(ValueError, match="6n \\+ 2"):
        block_plan(10, (8, 16, 32))


@pytest.mark.parametrize("depth", [8, 20, 56])
def test_preact_resnet_has_depth_weighted_layers_and_the_same_initial_convolutions(depth):
    torch.manual_seed(3)
    original = cifar_style_net(depth)
    torch.manual_seed(3)
    preact = preact_resnet(depth)
    linears = [m for m in preact.modules() if isinstance(m, nn.Linear)]
    assert len(convs(preact)) + len(linears) == depth
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(convs(original), convs(preact), strict=True))
    assert preact(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_preact_unit_adds_its_branch_with_nothing_after_the_sum():
    torch.manual_seed(0)
    unit = PreActUnit(4, 4, 1)
    x = torch.randn(2, 4, 6, 6)
    out = unit(x)
    assert torch.allclose(out, x + unit.branch(x)) and (out < 0).any()  # no ReLU after the addition
    nn.init.zeros_(unit.conv2.weight)
    assert torch.equal(unit(x), x)  # a silent branch makes the unit the exact identity, negative values included
    # Its branch starts with BatchNorm: in training mode, shifting and scaling the input leaves F unchanged.
    assert torch.allclose(unit.branch(3 * x + 1), unit.branch(x), atol=1e-4)


def test_preact_unit_changes_shape_through_the_zero_padded_shortcut():
    unit = PreActUnit(4, 8, 2)
    x = torch.randn(2, 4, 6, 6)
    assert isinstance(unit.skip, PaddedShortcut) and unit(x).shape == (2, 8, 3, 3)
    assert isinstance(unit.norm1, nn.BatchNorm2d) and unit.norm1.num_features == 4  # it normalises its input


def test_residual_unit_branch_is_what_the_block_adds_before_its_relu():
    torch.manual_seed(0)
    unit = ResidualUnit(4, 4, 1)
    x = torch.relu(torch.randn(2, 4, 6, 6))
    assert torch.allclose(unit(x), torch.relu(unit.branch(x) + x))
