"""Helpers for the ResNet skip-connections lessons: the plumbing, so that the notebooks can tell the story."""
from .data import load_cifar10, load_digits
from .device import choose_device, seed_everything, set_threads, start_lesson
from .models import cifar_style_net, count_parameters
from .plots import plot_gradient_norms, plot_loss_curves
from .quizzes import quiz
from .training import gradient_norms, train

__all__ = [
    "choose_device", "cifar_style_net", "count_parameters", "gradient_norms", "load_cifar10", "load_digits",
    "plot_gradient_norms", "plot_loss_curves", "quiz", "seed_everything", "set_threads", "start_lesson", "train",
]
