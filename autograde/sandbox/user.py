"""The user a kernel runs as in container mode (:mod:`autograde.sandbox.container`), claimed by its supervisor.

The supervisor runs as root. For each kernel it claims a user id of its own (``FIRST_UID`` and up, one that no
account and no other running kernel has: a lock file per id, held while the kernel lives), so that kernels graded
side by side cannot signal, trace or read each other. It gives that user the kernel's folders (its working
folder, its IPC folder and a home of its own) and the right to pass through, not list, the folders between them
and the job's folder; everything else the grader writes stays root's alone (umask 077, folders 0700: see
:func:`autograde.sandbox.container.seal`). The forked kernel becomes that user with no capabilities and
no_new_privs; when it ends, every process of the user is killed at once, daemons included.
"""
from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import signal
import stat
import tempfile

from . import linux

FIRST_UID = 61000  # unnamed ids below 65534 (nobody), so that they fit a container's user namespace too
USERS = 1000  # kernels that may run at once
LOCKS = "/run/autograde-kernel-users"  # root's own: a kernel can neither read nor create a lock
NAMESPACE, FILTER, OPEN = "namespace", "filter", "open"  # what keeps a kernel off the network
HOME_PREFIX = "home-"  # a kernel's home, in the job's folder: the kernel writes there


class KernelUser:
    """One kernel's user: claimed by the supervisor (as root) before the kernel forks, released when it ended."""

    def __init__(self, root: str, folders: list[str], env: dict[str, str]):
        """Claim a user for a kernel that works in *folders*, all inside *root* (the job's folder); sets the
        kernel's HOME and TMPDIR in *env* to a private folder."""
        outside = [folder for folder in folders if os.path.commonpath([root, folder]) != root]
        if outside:
            raise RuntimeError(f"container mode: the kernel's folders {outside} are not inside {root}")
        self.uid, self._lock = _claim_uid()
        kill_all(self.uid)  # what a supervisor that died left running as this user
        self.home = tempfile.mkdtemp(prefix=HOME_PREFIX, dir=root)
        self.folders = list(folders)
        for folder in folders + [self.home]:
            _open_path(root, folder)
            _give(folder, self.uid)
        env.update(HOME=self.home, TMPDIR=self.home)
        self.network = _leave_network()

    def enter(self) -> None:
        """In the forked kernel: become the user for good, with no capabilities and no_new_privs."""
        linux.drop_bounding_set()  # while this process still has CAP_SETPCAP
        os.setgroups([])
        os.setresgid(self.uid, self.uid, self.uid)
        os.setresuid(self.uid, self.uid, self.uid)
        linux.drop_capabilities()
        if self.network == FILTER:
            linux.deny_network()

    def release(self) -> None:
        """Once the kernel ended: kill whatever still runs as its user, take its folders back (the next kernel
        of this id must not find them), remove its home, free the id."""
        kill_all(self.uid)
        for folder in self.folders:
            _give(folder, 0)
        shutil.rmtree(self.home, ignore_errors=True)
        os.close(self._lock)


def _claim_uid() -> tuple[int, int]:
    """A user id for one kernel, and the file descriptor whose lock holds it."""
    os.makedirs(LOCKS, mode=0o700, exist_ok=True)
    info = os.lstat(LOCKS)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o077:
        raise RuntimeError(f"container mode: {LOCKS} must be a folder that root alone can use")
    for uid in range(FIRST_UID, FIRST_UID + USERS):
        if _has_account(uid):
            continue
        lock = os.open(os.path.join(LOCKS, str(uid)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return uid, lock
        except BlockingIOError:
            os.close(lock)
    raise RuntimeError(f"container mode: all {USERS} kernel user ids from {FIRST_UID} are in use")


def _has_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


def _open_path(root: str, folder: str) -> None:
    """Let others pass through (not list) *root* and each folder below it down to *folder*'s parent."""
    path = root
    for part in os.path.relpath(os.path.dirname(folder), root).split(os.sep):
        path = os.path.normpath(os.path.join(path, part))
        os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) | stat.S_IXOTH)


def _give(folder: str, uid: int) -> None:
    """*folder* and all in it to *uid* (links themselves, never what they point to), private to it."""
    for where, folders, files in os.walk(folder):
        for name in folders + files:
            os.chown(os.path.join(where, name), uid, uid, follow_symlinks=False)
    os.chown(folder, uid, uid, follow_symlinks=False)
    os.chmod(folder, 0o700)


def _leave_network() -> str:
    """Take the supervisor, and so the kernel it forks, off the network: a namespace of its own where the
    container allows one; else the kernel gets a seccomp filter; else it stays on the container's network."""
    try:
        linux.unshare(linux.CLONE_NEWNET)
        return NAMESPACE
    except OSError:
        return FILTER if linux.seccomp_available() else OPEN


def kill_all(uid: int) -> None:
    """SIGKILL every process of *uid* at once: kill(-1) as that user, in a child (the OS holds the list of
    processes meanwhile, so none can fork away)."""
    child = os.fork()
    if child == 0:
        try:
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass  # no process left to kill
        finally:
            os._exit(0)
    os.waitpid(child, 0)
