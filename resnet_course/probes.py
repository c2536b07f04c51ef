"""Probes inside a network's blocks: the gradient that reaches each block, the network with one block deleted
(Veit et al., 2016), and how much each residual block changes its input (He et al., 2016, Fig. 7).

The networks are the nn.Sequential stacks of `models`: residual blocks are single modules with a `branch` and a
`skip`; a plain network's block is the run of layers from its first convolution to the next block's first one.
"""
import contextlib

import torch
from torch import nn

from .metrics import accuracy


def is_residual_block(module):
    return hasattr(module, "branch") and hasattr(module, "skip")


def residual_blocks(model):
    return [module for module in model if is_residual_block(module)]


@contextlib.contextmanager
def block_inputs(model):
    """Within the `with`, every forward pass of `model` appends each residual block's input to the yielded list."""
    inputs = []
    hooks = [block.register_forward_pre_hook(lambda block, args: inputs.append(args[0]))
             for block in residual_blocks(model)]
    try:
        yield inputs
    finally:
        for hook in hooks:
            hook.remove()


def block_spans(model):
    """(start, stop) positions in `model` of each block, input side first: one module per residual block, six
    layers (conv, BN, ReLU, conv, BN, ReLU) per plain block."""
    modules = list(model)
    residual = [index for index, module in enumerate(modules) if is_residual_block(module)]
    if residual:
        return [(index, index + 1) for index in residual]
    convs = [index for index, module in enumerate(modules) if isinstance(module, nn.Conv2d)][1:]  # not the stem
    ends = convs[2::2] + [next(i for i, m in enumerate(modules) if isinstance(m, nn.AdaptiveAvgPool2d))]
    return list(zip(convs[::2], ends))


def can_delete(model, index):
    """Whether block `index` can go: a residual block always (its shortcut stays); a plain block only where it
    keeps the shape of its input, since otherwise the next layer could not take what comes before it."""
    start, stop = block_spans(model)[index]
    first = model[start]
    if is_residual_block(first):
        return True
    last_conv = [m for m in list(model)[start:stop] if isinstance(m, nn.Conv2d)][-1]
    return first.stride == (1, 1) and first.in_channels == last_conv.out_channels


def delete_block(model, index):
    """A copy of `model` that shares its weights, with block `index` deleted: a residual block is replaced by its
    shortcut (the branch is dropped), a plain block's layers are removed."""
    if not can_delete(model, index):
        raise ValueError(f"plain block {index} changes the shape of its input, so it cannot simply be removed")
    start, stop = block_spans(model)[index]
    modules = list(model)
    replacement = [modules[start].skip] if is_residual_block(modules[start]) else []
    # The original block's ReLU after the addition is left out too: its input, the shortcut of a ReLU's output,
    # is already >= 0, so the block with a zero branch computes exactly its shortcut.
    return nn.Sequential(*modules[:start], *replacement, *modules[stop:])


def lesion_accuracies(model, images, labels):
    """The accuracy of `model` on (images, labels) with each block deleted in turn; None where it cannot be."""
    return [accuracy(delete_block(model, index), images, labels) if can_delete(model, index) else None
            for index in range(len(block_spans(model)))]


@torch.no_grad()
def response_ratios(model, images):
    """For each residual block, ||F(x)|| / ||shortcut(x)|| over `images` in eval mode: how large a correction the
    block's branch adds to what its shortcut carries. For a block that keeps the shape, that is ||F(x)|| / ||x||."""
    was_training = model.training
    model.eval()
    try:
        with block_inputs(model) as inputs:
            model(images.to(next(model.parameters()).device))
        return [(block.branch(x).norm() / block.skip(x).norm()).item()
                for block, x in zip(residual_blocks(model), inputs)]
    finally:
        model.train(was_training)


@contextlib.contextmanager
def branches_detached(model):
    """Within the `with`, every residual block's branch output is cut off from autograd, so a backward pass sends
    gradients through the shortcuts (and whatever follows each addition) only: the paths that skip every branch."""
    blocks = residual_blocks(model)
    for block in blocks:
        block.branch = lambda x, branch=block.branch: branch(x).detach()  # shadows the method on this instance
    try:
        yield model
    finally:
        for block in blocks:
            del block.branch


def block_input_gradients(model, images, labels):
    """The norm of the loss's gradient with respect to each residual block's input, input side first, from one
    forward and backward pass over (images, labels) in training mode (as at initialisation or during training)."""
    model.train()
    device = next(model.parameters()).device
    with block_inputs(model) as inputs:
        loss = nn.CrossEntropyLoss()(model(images.to(device)), labels.to(device))
    return [gradient.norm().item() for gradient in torch.autograd.grad(loss, inputs)]
