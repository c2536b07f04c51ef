"""Where the lessons run: device choice, thread count and seeding."""
import os
import random

import numpy as np
import torch

from .cores import available_cores

DEVICE_VARIABLE = "RESNET_COURSE_DEVICE"
THREADS_VARIABLE = "RESNET_COURSE_THREADS"
MAX_DEFAULT_THREADS = 4


def choose_device(preferred=None):
    """CUDA when present, else CPU; `preferred` or $RESNET_COURSE_DEVICE overrides (e.g. "cpu", "cuda:1")."""
    name = preferred or os.environ.get(DEVICE_VARIABLE, "").strip()
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{DEVICE_VARIABLE}={name!r} asks for CUDA, but PyTorch sees no CUDA device here")
    return device


def set_threads(count=None):
    """Set torch's intra-op threads: `count`, else $RESNET_COURSE_THREADS, else the usable cores (at most 4).

    More threads than cores makes small convolutions several times slower, so the default never oversubscribes.
    """
    if count is None:
        raw = os.environ.get(THREADS_VARIABLE, "").strip()
        if raw:
            try:
                count = int(raw)
            except ValueError:
                raise ValueError(f"{THREADS_VARIABLE} must be a whole number of threads, got {raw!r}") from None
        else:
            count = min(available_cores(), MAX_DEFAULT_THREADS)
    if count < 1:
        raise ValueError(f"the thread count must be at least 1, got {count}")
    torch.set_num_threads(count)
    return count


def seed_everything(seed):
    """Seed Python, NumPy and torch (CPU and CUDA) so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def start_lesson(seed=0):
    """Threads, seed and device in one call; prints where the lesson runs and returns the device."""
    threads = set_threads()
    seed_everything(seed)
    device = choose_device()
    detail = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{threads} CPU thread(s)"
    print(f"Running on {device} ({detail}), torch {torch.__version__}, seed {seed}")
    return device
