"""Whether an optional, heavier lesson step should run here: it needs a GPU, and CIFAR-10 on disk or reachable."""
import os
import socket
from urllib.parse import urlsplit

import torch

from .data import CIFAR10_URL, DEFAULT_CACHE, archive_path

CIFAR_VARIABLE = "RESNET_COURSE_CIFAR"  # "1": run even on a CPU; "0": never run


def can_reach(host, port=443, timeout=2.0):
    """True when a TCP connection to host:port opens within `timeout` seconds: a cheap test for being online."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def cifar10_skip_reason(device, allow_cpu=False, root=DEFAULT_CACHE, url=CIFAR10_URL, timeout=2.0):
    """None when a short CIFAR-10 training should run on `device`, else one sentence saying why it is skipped.

    It runs on a GPU, or on a CPU when `allow_cpu` (or $RESNET_COURSE_CIFAR=1) asks for it, and only when the
    archive is already on disk or its host answers within `timeout` seconds. On a CPU the answer is immediate.
    """
    choice = os.environ.get(CIFAR_VARIABLE, "").strip().lower()
    if choice in ("0", "no", "false", "off"):
        return f"${CIFAR_VARIABLE}={choice} turns the CIFAR-10 run off."
    if torch.device(device).type != "cuda" and not (allow_cpu or choice in ("1", "yes", "true", "on")):
        return ("this kernel has no GPU, and on a CPU even a short CIFAR-10 training takes several minutes. "
                "On a GPU runtime (in Colab: Runtime > Change runtime type > GPU) it runs by itself; "
                "to run it on this CPU anyway, set RUN_ON_CPU = True and run the cell again.")
    if archive_path(root, url).is_file():
        return None
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if not can_reach(parts.hostname, port, timeout):
        return (f"CIFAR-10 is not in {root} and {parts.hostname} did not answer within {timeout:g} s, so this "
                "kernel looks offline; connect to the internet (or copy the archive there) and run the cell again.")
    return None
