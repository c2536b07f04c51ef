"""Helpers for the ResNet skip-connections lessons: the plumbing, so that the notebooks can tell the story.

The names below load on first use, so that a torch-free module such as ``resnet_course.cores`` can be
imported (by the grader, say) without paying for ``import torch``.
"""
import importlib

_HOMES = {
    "load_cifar10": "data", "load_digits": "data",
    "choose_device": "device", "seed_everything": "device", "set_threads": "device", "start_lesson": "device",
    "cifar_style_net": "models", "count_parameters": "models",
    "plot_digits": "plots", "plot_gradient_norms": "plots", "plot_loss_curves": "plots",
    "plot_signal_and_gradients": "plots", "twin_styles": "plots",
    "quiz": "quizzes",
    "activation_spread": "training", "gradient_norms": "training", "relu_open_fraction": "training",
    "train": "training",
}

__all__ = sorted(_HOMES)


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_HOMES))
