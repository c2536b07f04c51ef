"""The bubblewrap sandbox every grading kernel runs in, and the check that it works on this machine.

What a kernel's sandbox holds (nothing else of the machine is in it, not even as an empty folder):

* read-only: the system's programs and libraries (``/usr``, ``/bin``, ``/lib``...), a few files of ``/etc`` that
  programs need to start, Python's installation and the grading environment (``sys.base_prefix``,
  ``sys.prefix``), the grader's own package (its supervisor runs in the sandbox), and any ``read_only`` extras;
* writable: the folders the kernel works in (its job folder and its IPC sockets), a private ``/tmp`` and
  ``/dev/shm`` (see :mod:`autograde.sandbox.supervisor`), ``/dev/null`` and friends;
* not there: the home folder, the instructor's course and ``source/``, gradebooks, other submissions, ``--out``,
  the grader's work folders, the network (a namespace of its own), the grader's processes (a PID namespace).

bubblewrap gives the sandbox its own user namespace, in which the supervisor keeps ``CAP_SYS_ADMIN`` just long
enough to give each kernel namespaces of its own; the kernel drops every capability before it runs, and cannot
create user namespaces (``--disable-userns``), so it cannot get any back.
"""
from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import sys

from . import linux
from .supervisor import PACKAGE, STAGE, grader_dirs

SYSTEM_DIRS = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]
# What dynamic linking, time zones and fonts need; nothing with users, hosts or credentials.
ETC_FILES = ["ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "fonts", "alternatives", "mime.types"]
SANDBOX_UID = 1000  # the kernel's user id inside; outside, its files belong to whoever runs the grader


def gpu_args() -> list[str]:
    """NVIDIA's device files and /sys (which CUDA reads), when this machine has a GPU."""
    devices = sorted(glob.glob("/dev/nvidia*"))
    if not devices:
        return []
    return [arg for device in devices for arg in ("--dev-bind", device, device)] + ["--ro-bind", "/sys", "/sys"]


def bwrap_command(command: list[str], writable: list[str], read_only: list[str] = ()) -> list[str]:
    """``bwrap [options] command...``: *command* in a new sandbox that can write only *writable*."""
    # Found on the grader's PATH: the environment bwrap itself runs with may be a kernel's (see zygote.py).
    args = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
            "--disable-userns", "--cap-add", "CAP_SYS_ADMIN", "--cap-add", "CAP_SETPCAP",
            "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    for path in SYSTEM_DIRS + [os.path.join("/etc", name) for name in ETC_FILES]:
        if os.path.islink(path) and os.path.dirname(path) == "/":
            args += ["--symlink", os.readlink(path), path]  # /bin -> usr/bin on merged-/usr systems
        elif os.path.exists(path):
            args += ["--ro-bind", path, path]
    # The private /tmp first: a checkout or environment under /tmp is then bound into it, not hidden by it.
    args += ["--dev", "/dev", "--tmpfs", "/dev/shm", "--ro-bind", "/proc", "/proc", "--tmpfs", "/tmp"]
    for path in list(grader_dirs()) + list(read_only):
        args += ["--ro-bind", path, path]
    args += gpu_args()
    for path in writable:
        args += ["--bind", path, path]
    # The supervisor imports this very package, wherever an editable install of it may point.
    args += ["--setenv", "PYTHONPATH", os.path.dirname(PACKAGE)]
    args += ["--dir", STAGE, "--remount-ro", "/", "--remount-ro", "/dev", "--chdir", "/", "--"]
    return args + list(command)


@functools.lru_cache(maxsize=None)
def isolation_problem() -> str | None:
    """None when kernels can be isolated here; otherwise what is wrong and the fix, in a sentence or two."""
    if not sys.platform.startswith("linux"):
        return (f"isolating students' code needs Linux and bubblewrap; this is {sys.platform}. Grade on Linux, "
                "or pass --isolation none to run submissions with your own access to files and network")
    if shutil.which("bwrap") is None:
        return ("bubblewrap is not installed: install it with `sudo apt-get install bubblewrap` (Debian, Ubuntu; "
                "`make setup` does this when it can) or `sudo dnf install bubblewrap` (Fedora), or pass "
                "--isolation none to run submissions with your own access to files and network")
    detail = bwrap_failure()
    if detail is None:
        return None
    sign = linux.container_sign()
    if sign:  # the container's seccomp profile or capabilities refuse namespaces: no sysctl of ours changes that
        return (f"bubblewrap cannot create namespaces in this container ({detail}; the container shows {sign}). "
                "Run `python -m autograde grade` as root in the container: it then isolates each kernel in "
                "container mode (docs/instructors.md, \"Security model\"); or pass --isolation none")
    return ("bubblewrap is installed but cannot isolate a kernel here "
            f"({detail}). Unprivileged user namespaces may be off: on Debian and Ubuntu run "
            "`sudo sysctl -w kernel.unprivileged_userns_clone=1` (and on Ubuntu 24.04 "
            "`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`), or pass --isolation none")


@functools.lru_cache(maxsize=None)
def bwrap_failure() -> str | None:
    """None when bubblewrap isolates a kernel here; else the last line it (or the test kernel) printed.

    The check runs the real thing once: a supervisor in bwrap that enters its namespaces and starts a kernel."""
    probe = "from autograde.sandbox.supervisor import self_test; self_test()"
    try:
        done = subprocess.run(bwrap_command([sys.executable, "-c", probe], writable=[]), capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        done = subprocess.CompletedProcess([], 1, "", str(exc))
    if done.returncode == 0 and "isolated" in done.stdout:
        return None
    return last_line(done)


def last_line(done: subprocess.CompletedProcess) -> str:
    """The last line a check printed (what it says went wrong), from its stderr, else its stdout."""
    return ((done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"])[0]
