"""The few Linux system calls the sandbox needs that Python's standard library lacks (3.11 has no os.unshare).

Each raises OSError with the call's errno; on other systems the module imports, and every call raises.
"""
from __future__ import annotations

import ctypes
import os
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
_LAST_CAPABILITY = 63
_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _call(name: str, *args) -> None:
    if _libc is None:
        raise OSError(f"{name} needs Linux")
    if getattr(_libc, name)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}{tuple(a for a in args if isinstance(a, (bytes, int)))}: {os.strerror(errno)}")


def _path(value: str | None):
    return None if value is None else os.fsencode(value)


def unshare(flags: int) -> None:
    _call("unshare", ctypes.c_int(flags))


def mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0, data: str | None = None) -> None:
    _call("mount", _path(source), _path(target), _path(fstype), ctypes.c_ulong(flags), _path(data))


def unmount(target: str) -> None:
    _call("umount2", _path(target), ctypes.c_int(MNT_DETACH))


def prctl(option: int, value: int) -> None:
    _call("prctl", ctypes.c_int(option), ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0),
          ctypes.c_ulong(0))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Give up every capability for good: the bounding set first (so that no exec can bring one back),
    then the effective, permitted and inheritable sets (which also empties the ambient set)."""
    for capability in range(_LAST_CAPABILITY + 1):
        try:
            prctl(PR_CAPBSET_DROP, capability)
        except OSError:
            break  # past the last capability this kernel knows
    _call("capset", ctypes.byref(_CapHeader(_CAPABILITY_VERSION_3, 0)), (_CapData * 2)())
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def become_subreaper() -> bool:
    """Orphaned descendants of this process become its children (instead of init's); False where unsupported."""
    try:
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        return True
    except OSError:
        return False


def die_with_parent(signal_number: int) -> bool:
    """Ask the kernel to send *signal_number* to this process when its parent dies; False where unsupported."""
    try:
        prctl(PR_SET_PDEATHSIG, signal_number)
        return True
    except OSError:
        return False
