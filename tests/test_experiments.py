"""Lesson 6's training runs: the twins under one recipe, and measuring held-out accuracy without changing a run."""
import torch

from resnet_course.device import seed_everything
from resnet_course.experiments import TWINS, train_and_evaluate, train_twins
from resnet_course.metrics import accuracy
from resnet_course.models import cifar_style_net
from resnet_course.training import train


def small_data(size=96, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(size, 1, 8, 8, generator=generator), torch.randint(0, 10, (size,), generator=generator)


def fresh(depth=8, residual=True, seed=0):
    seed_everything(seed)
    return cifar_style_net(depth, residual=residual)


def test_measuring_held_out_accuracy_changes_nothing_in_the_run():
    training, held_out = small_data(), small_data(40, seed=1)
    plain_losses = train(fresh(), *training, steps=9, batch_size=32, progress=False)
    model = fresh()
    losses, accuracies = train_and_evaluate(model, training, held_out, steps=9, every=4, batch_size=32,
                                            progress=False)
    assert losses == plain_losses  # lesson 6 reuses the first 100 steps of these runs as 100-step runs
    assert sorted(accuracies) == [4, 8, 9]  # every 4 steps, and the last step
    assert accuracies[9] == accuracy(model, *held_out) and model.training


def test_twins_train_from_the_same_seed_with_the_recipe_given():
    training = small_data()
    histories = train_twins(training, names=("res-8", "plain-8"), steps=3, seed=2, batch_size=32, optimizer="sgd",
                            lr=0.1, progress=False)
    assert list(histories) == ["res-8", "plain-8"] and set(TWINS) >= set(histories)
    by_hand = train(fresh(8, True, seed=2), *training, steps=3, seed=2, batch_size=32, optimizer="sgd", lr=0.1,
                    progress=False)
    assert histories["res-8"] == by_hand
    assert histories["plain-8"] == train(fresh(8, False, seed=2), *training, steps=3, seed=2, batch_size=32,
                                         optimizer="sgd", lr=0.1, progress=False)
