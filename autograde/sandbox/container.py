"""Container mode: isolating each kernel where bubblewrap cannot, because the grader itself runs in a container.

Docker's default seccomp profile, most Kubernetes pods and Gradescope's autograder containers refuse the
namespaces bubblewrap needs. There, when the grader runs as root (as Gradescope runs it), ``--isolation bwrap``
(the default) takes container mode by itself, and says so in the run's summary and in every row's notes. Each
kernel then (see :mod:`autograde.sandbox.user`):

* runs as a user of its own, with no capabilities and no_new_privs: it cannot read what the grader keeps as
  root's alone (:func:`seal`: the course, the bundle, --out, the submissions, the grader's work folders, all
  written with umask 077), nor signal, trace or read another kernel;
* owns only its working folder, its IPC folder and a private home;
* has no network: a network namespace of its own where the container allows one, else a seccomp filter that
  refuses every socket but Unix ones (where libseccomp is missing, the notes say that the network is open);
* keeps the limits of every mode (memory watchdog, process count, file size), and loses every process of its
  user when it ends.

It gets no private ``/tmp`` nor PID namespace, and may read what the container lets anyone read (docs/instructors.md,
"Security model", compares the modes).
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

from . import linux
from .bwrap import isolation_problem, last_line
from .supervisor import PACKAGE, KernelRequest, trial
from .user import FILTER, NAMESPACE, OPEN

NETWORK_WORDS = {
    NAMESPACE: "no network (a network namespace of its own)",
    FILTER: "no network (the container refused a network namespace; a seccomp filter refuses every socket but "
            "Unix ones)",
    OPEN: "THE CONTAINER'S NETWORK (the container refused a network namespace, and libseccomp, which would have "
          "blocked sockets, is not installed)",
}


def choose(requested: str) -> tuple[str, str | None]:
    """The isolation a run gets when *requested* ("bwrap", "container" or "none"): (mode, None), or
    (*requested*, why it cannot be had here).

    "bwrap" turns into "container" by itself where bubblewrap is installed but cannot create namespaces, in a
    container; "container" asks for it anywhere (it needs root)."""
    if requested == "none":
        return "none", None
    problem = None
    if requested == "bwrap":
        problem = isolation_problem()
        if problem is None or shutil.which("bwrap") is None or linux.container_sign() is None:
            return "bwrap", problem
    why = probe().get("problem")
    if why is None:
        return "container", None
    return requested, f"{problem} Container mode cannot work either: {why}" if problem else \
        f"container mode cannot work here: {why}"


@functools.lru_cache(maxsize=None)
def probe() -> dict:
    """What container mode gives a kernel here, found by running one (:func:`self_test`): {"network": NAMESPACE,
    FILTER or OPEN}; or {"problem": why container mode cannot work}."""
    if not sys.platform.startswith("linux"):
        return {"problem": f"it needs Linux; this is {sys.platform}"}
    if os.geteuid() != 0:
        return {"problem": "the grader does not run as root, and only root can run each kernel as a user of its "
                           "own"}
    closed = [folder for folder in _above(_environment()) if not os.stat(folder).st_mode & stat.S_IXOTH]
    if closed:
        return {"problem": f"the kernels' users cannot reach Python ({sys.executable}): {closed[0]} is closed to "
                           "others; install the grading environment elsewhere (or `chmod o+x` that folder)"}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(PACKAGE),
                                                                    os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-c", "from autograde.sandbox.container import self_test; self_test()"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                              env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"problem": str(exc)}
    if done.returncode == 0:
        return json.loads(done.stdout.strip().splitlines()[-1])
    return {"problem": last_line(done)}


def _above(folders: list[str]) -> list[str]:
    """Every folder on the way from / down to each of *folders*, themselves included."""
    found = set()
    for folder in folders:
        while folder not in found and folder != os.path.dirname(folder):
            found.add(folder)
            folder = os.path.dirname(folder)
    return sorted(found)


def self_test() -> None:
    """Run a trivial kernel in container mode here; print what it got as JSON (for :func:`probe`)."""
    with tempfile.TemporaryDirectory(prefix="autograde-container-test-") as root:
        secret = os.path.join(root, "secret")
        with open(secret, "w", encoding="utf-8"):
            os.chmod(secret, 0o600)
        folder = os.path.join(root, "kernel")
        os.mkdir(folder)
        check = (f"import os, sys; sys.exit(0 if os.getuid() != 0 and os.access('.', os.W_OK) "
                 f"and not os.access({secret!r}, os.R_OK) else 3)")
        log = os.path.join(folder, "kernel.log")
        started, stopped = trial(KernelRequest(argv=[sys.executable, "-c", check], env=dict(os.environ),
                                               cwd=folder, writable=[folder], isolate=False, log_path=log,
                                               container_root=root))
        said = open(log, encoding="utf-8", errors="replace").read().strip() if os.path.exists(log) else ""
    if stopped.get("exit_code") != 0 or "network" not in started:
        sys.exit(f"a test kernel did not run as a user of its own: {stopped.get('reason')}, "
                 f"exit code {stopped.get('exit_code')}{': ' + said.splitlines()[-1] if said else ''}")
    print(json.dumps({"network": started["network"]}))


def description() -> str:
    """What container mode gave every kernel, in words, for the summary and the rows' notes."""
    return (f"the notebook ran as a user of its own, which cannot read the grader's files, with "
            f"{NETWORK_WORDS[probe()['network']]}")


def keep_from_kernels(folders: list) -> None:
    """Make the grader's *folders*, and whatever this process writes from now on (umask 077), root's alone: a
    kernel's user can then read none of it. Where the Python environment or the grader's package lies in one of
    them, the way down to it stays passable, not listable (:func:`seal`)."""
    os.umask(0o077)
    for folder in folders:
        if os.path.exists(folder):
            seal(str(folder), _environment())


def _environment() -> list[str]:
    """What kernels run: the Python installation and environment, and the grader's package (a probe imports
    ``autograde.probing``, which a kernel not forked from the warm server has not imported yet)."""
    return sorted({os.path.realpath(path) for path in (sys.base_prefix, sys.prefix, PACKAGE)})


def seal(path: str, keep: list[str] = ()) -> None:
    """Make *path* root's alone (0700, a file 0600), but for the way down to each of *keep* (what kernels run),
    which stays passable (0711) while everything beside it is sealed in turn."""
    path = os.path.realpath(path)
    inside = [folder for folder in keep if os.path.commonpath([path, folder]) == path]
    if path in inside:
        return
    if not inside:
        os.chmod(path, 0o700 if os.path.isdir(path) else 0o600)
        return
    os.chmod(path, 0o711)
    for entry in os.scandir(path):
        if not entry.is_symlink():
            seal(entry.path, inside)
