"""The probes of lessons 7 and 8: blocks found in every kind of network, deletions that keep the trained weights,
response ratios, and gradients through the shortcuts alone."""
import pytest
import torch
from torch import nn

from resnet_course.metrics import accuracy
from resnet_course.models import PaddedShortcut, cifar_style_net, preact_resnet
from resnet_course.probes import (block_input_gradients, block_inputs, block_spans, branches_detached, can_delete,
                                  delete_block, lesion_accuracies, response_ratios)


def network(kind, depth=20, seed=0):
    torch.manual_seed(seed)
    if kind == "preact":
        return preact_resnet(depth)
    return cifar_style_net(depth, residual=kind == "residual")


def batch(size=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(size, 1, 8, 8, generator=generator), torch.randint(0, 10, (size,), generator=generator)


@pytest.mark.parametrize("kind", ["residual", "plain", "preact"])
def test_every_network_has_its_blocks_in_order(kind):
    model = network(kind)
    spans = block_spans(model)
    assert len(spans) == 9
    assert all(stop - start == (6 if kind == "plain" else 1) for start, stop in spans)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    layers = [layer for start, stop in spans for layer in list(model)[start:stop]]
    assert sum(isinstance(m, nn.Conv2d) for layer in layers for m in layer.modules()) == 18  # two per block


def test_a_plain_block_can_go_only_where_it_keeps_the_shape():
    plain, residual = network("plain"), network("residual")
    assert [can_delete(plain, k) for k in range(9)] == [True] * 3 + [False, True, True, False, True, True]
    assert all(can_delete(residual, k) for k in range(9))
    with pytest.raises(ValueError, match="changes the shape"):
        delete_block(plain, 3)


def test_deleting_a_residual_block_leaves_its_shortcut_and_shares_the_weights():
    model = network("residual").eval()
    images, _ = batch()
    for index in (1, 3):  # an identity shortcut and a zero-padded one
        lesioned = delete_block(model, index)
        start, _ = block_spans(model)[index]
        assert len(lesioned) == len(model) and lesioned[start] is model[start].skip
        assert all(a is b for k, (a, b) in enumerate(zip(model, lesioned)) if k != start)
        # The same as silencing the block's branch: its last BatchNorm outputs zeros, relu(0 + skip(x)) = skip(x).
        silenced = network("residual").eval()
        silenced.load_state_dict(model.state_dict())
        nn.init.zeros_(silenced[start].norm2.weight)
        nn.init.zeros_(silenced[start].norm2.bias)
        with torch.no_grad():
            assert torch.allclose(lesioned(images), silenced(images), atol=1e-6)
    assert isinstance(delete_block(model, 3)[block_spans(model)[3][0]], PaddedShortcut)


def test_deleting_a_plain_block_removes_its_six_layers():
    model = network("plain").eval()
    lesioned = delete_block(model, 1)
    start, stop = block_spans(model)[1]
    assert list(lesioned) == list(model)[:start] + list(model)[stop:]
    with torch.no_grad():
        assert lesioned(batch()[0]).shape == (16, 10)


def test_lesion_accuracies_measure_each_deletion_and_skip_impossible_ones():
    images, labels = batch(40)
    plain = network("plain")
    results = lesion_accuracies(plain, images, labels)
    assert [value is None for value in results] == [not can_delete(plain, k) for k in range(9)]
    assert results[4] == accuracy(delete_block(plain, 4), images, labels)
    residual = network("residual")
    assert lesion_accuracies(residual, images, labels)[0] == accuracy(delete_block(residual, 0), images, labels)


def test_response_ratios_divide_the_branch_by_what_the_shortcut_carries():
    model = network("residual").train()
    images, _ = batch()
    ratios = response_ratios(model, images)
    assert model.training and len(ratios) == 9  # measured in eval mode, the mode restored afterwards
    model.eval()
    with torch.no_grad():
        x = model[:4](images)          # the input of block 1 (stem of 3 layers, then block 0)
        block = model[4]
        assert ratios[1] == pytest.approx((block.branch(x).norm() / x.norm()).item(), rel=1e-5)
        x = model[:6](images)          # the input of block 3, the first of stage 2: a zero-padded shortcut
        block = model[6]
        assert ratios[3] == pytest.approx((block.branch(x).norm() / block.skip(x).norm()).item(), rel=1e-5)


def test_block_input_gradients_match_autograd():
    model = network("preact", depth=8)
    images, labels = batch()
    norms = block_input_gradients(model, images, labels)
    x = model[0](images).detach().requires_grad_()
    h = x
    for layer in list(model)[1:]:
        h = layer(h)
    nn.CrossEntropyLoss()(h, labels).backward()
    assert len(norms) == 3 and norms[0] == pytest.approx(x.grad.norm().item(), rel=1e-5)


def test_with_branches_detached_the_preact_shortcut_path_is_an_exact_identity():
    model = network("preact", depth=32)
    images, labels = batch()
    full = block_input_gradients(model, images, labels)
    with branches_detached(model):
        shortcuts = block_input_gradients(model, images, labels)
    assert all(shortcuts[k] == pytest.approx(shortcuts[4], rel=1e-5) for k in range(5))  # stage 1: 5 blocks
    assert shortcuts[0] < full[0]  # the branches' share is gone
    assert block_input_gradients(model, images, labels) == pytest.approx(full)  # and back after the `with`
    assert "branch" not in vars(model[1])


def test_with_branches_detached_the_original_shortcut_path_loses_gradient_to_its_relus():
    model = network("residual", depth=32)
    images, labels = batch(64)
    with branches_detached(model):
        shortcuts = block_input_gradients(model, images, labels)
    assert shortcuts[0] < 0.95 * shortcuts[4]


def test_a_scaled_shortcut_scales_the_identity_path_block_by_block():
    # The explanation of the quiz "identity_path_breakers": with x -> 0.5 x + F(x), the shortcut path shrinks
    # by 0.5 per block.
    class Half(nn.Module):
        def forward(self, x):
            return 0.5 * x

    model = network("preact", depth=32)
    for block in list(model)[1:6]:
        block.skip = Half()
    images, labels = batch()
    with branches_detached(model):
        shortcuts = block_input_gradients(model, images, labels)
    assert shortcuts[0] / shortcuts[4] == pytest.approx(0.5 ** 4, rel=1e-4)


def test_block_inputs_are_caught_only_within_the_with():
    model = network("residual").eval()
    images, _ = batch(4)
    with torch.no_grad(), block_inputs(model) as inputs:
        model(images)
    assert [tuple(x.shape) for x in inputs] == [(4, 8, 8, 8)] * 4 + [(4, 16, 4, 4)] * 3 + [(4, 32, 2, 2)] * 2
    with torch.no_grad():
        model(images)
    assert len(inputs) == 9
