"""Training runs that the later lessons repeat: the four twins of lesson 5 under one recipe, and a training run
that also measures accuracy on held-out images as it goes."""
from .device import seed_everything
from .metrics import accuracy
from .models import cifar_style_net
from .training import train

TWINS = {"plain-8": (8, False), "plain-32": (32, False), "res-8": (8, True), "res-32": (32, True)}


def train_and_evaluate(model, training, held_out, steps, every=25, **options):
    """Train `model` on training = (images, labels) for `steps` steps (`options` go to `train`); returns the
    training losses and {step: accuracy on held_out = (images, labels)}, measured every `every` steps.

    Measuring changes nothing in the run: it happens in eval mode, without gradients, between two steps.
    """
    accuracies = {}

    def measure(step, model):
        if step % every == 0 or step == steps:
            accuracies[step] = accuracy(model, *held_out)

    losses = train(model, *training, steps=steps, after_step=measure, **options)
    return losses, accuracies


def train_twins(training, names=tuple(TWINS), steps=100, seed=0, device=None, **options):
    """Train each named network of TWINS from `seed`, on training = (images, labels), with the same batches;
    `options` (optimizer, lr, ...) go to `train`. Returns {name: training losses}."""
    histories = {}
    for name in names:
        depth, residual = TWINS[name]
        seed_everything(seed)
        model = cifar_style_net(depth, residual=residual).to(device or "cpu")
        histories[name] = train(model, *training, steps=steps, seed=seed, desc=name, **options)
    return histories
