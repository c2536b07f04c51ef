"""A small training loop that records the loss of every step, and what a network does at initialisation: per-layer
gradient norms, how much each block's output depends on the image, and where a residual block's ReLU is open."""
import torch
from torch import nn
from tqdm.auto import tqdm

from .models import ResidualUnit, block_ends

# The two recipes the lessons compare. SGD is He et al. (2016)'s, section 4.2: momentum 0.9, weight decay 1e-4
# (with learning rate 0.1); Adam is the course's default, which needs no schedule to train in 100 steps.
OPTIMIZERS = {
    "adam": lambda parameters, lr: torch.optim.Adam(parameters, lr=lr),
    "sgd": lambda parameters, lr: torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=1e-4),
}


def train(model, images, labels, steps=100, lr=2e-3, batch_size=128, seed=0, device=None, progress=True, desc=None,
          optimizer="adam", after_step=None):
    """Train `model` on random mini-batches; returns the training loss of every step as floats.

    The data moves to the model's device once; the batch order depends only on `seed`. `optimizer` names one of
    OPTIMIZERS; `after_step(step, model)`, if given, runs after every step (step counts from 1), e.g. to evaluate.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device).train()
    images, labels = images.to(device), labels.to(device)
    generator = torch.Generator().manual_seed(seed)
    optimizer = make_optimizer(optimizer, model.parameters(), lr)
    loss_fn = nn.CrossEntropyLoss()
    losses = torch.empty(steps, device=device)

    def shuffled():  # drawn on the CPU, so the order is the same on every device; moved once per epoch
        return torch.randperm(len(images), generator=generator).to(device)

    order, cursor = shuffled(), 0
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for step in bar:
        if cursor + batch_size > len(order):
            order, cursor = shuffled(), 0
        batch = order[cursor:cursor + batch_size]
        cursor += batch_size
        loss = loss_fn(model(images[batch]), labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses[step] = loss.detach()
        if after_step is not None:
            after_step(step + 1, model)
        if progress and step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return losses.tolist()


def gradient_norms(model, images, labels):
    """One forward and backward pass; the L2 norm of each weight's gradient, from the input side to the output.

    Only weights with more than one dimension count (convolutions and linear layers, not BatchNorm or biases).
    """
    model.train()
    model.zero_grad(set_to_none=True)
    device = next(model.parameters()).device
    nn.CrossEntropyLoss()(model(images.to(device)), labels.to(device)).backward()
    return {name: p.grad.norm().item() for name, p in model.named_parameters() if p.grad is not None and p.dim() > 1}


def make_optimizer(name, parameters, lr):
    """The optimizer called `name` in OPTIMIZERS ("adam" or "sgd"), over `parameters`, with learning rate `lr`."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(sorted(OPTIMIZERS))}, got {name!r}")
    return OPTIMIZERS[name](parameters, lr)


@torch.no_grad()
def activation_spread(model, images):
    """How much the output of the stem, of each block and of the network (the logits) varies across `images`.

    For every feature (channel and position) the standard deviation over the images, then the root mean square
    over the features: 0 means that every image gets the same output there, whatever the image shows.
    """
    names = ["stem"] + [f"block {i}" for i in range(1, len(block_ends(model)) - 1)] + ["logits"]
    outputs = _outputs_of(model, block_ends(model), images)
    return {name: out.flatten(1).std(dim=0).square().mean().sqrt().item() for name, out in zip(names, outputs)}


@torch.no_grad()
def relu_open_fraction(model, images):
    """For each residual block, relu(F(x) + shortcut(x)), the fraction of its outputs above zero.

    Only there does the final ReLU pass a gradient back, to the branch and to the shortcut alike.
    """
    outputs = _outputs_of(model, [m for m in model.modules() if isinstance(m, ResidualUnit)], images)
    return [(out > 0).float().mean().item() for out in outputs]


def _outputs_of(model, layers, images):
    """The outputs of `layers` in one forward pass over `images` (in training mode, as in gradient_norms)."""
    outputs = []
    handles = [layer.register_forward_hook(lambda _, inputs, output: outputs.append(output)) for layer in layers]
    try:
        model.train()
        model(images.to(next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return outputs
