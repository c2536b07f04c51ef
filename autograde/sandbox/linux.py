"""The few Linux system calls the sandbox needs that Python's standard library lacks (3.11 has no os.unshare), and
the signs that this process runs in a container (:func:`container_sign`).

Each call raises OSError with the call's errno; on other systems the module imports, and every call raises.
"""
from __future__ import annotations

import ctypes
import errno
import os
import socket
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

SIGNS = ("/.dockerenv", "/run/.containerenv")  # Docker's and Podman's
CGROUP_WORDS = ("docker", "kubepods", "containerd", "libpod", "lxc")

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


def drop_bounding_set() -> None:
    """Empty the capability bounding set, so that no exec can bring a capability back (needs CAP_SETPCAP)."""
    for capability in range(_LAST_CAPABILITY + 1):
        try:
            prctl(PR_CAPBSET_DROP, capability)
        except OSError:
            break  # past the last capability this kernel knows (or already without CAP_SETPCAP)


def drop_capabilities() -> None:
    """Give up every capability for good: the bounding set first, then the effective, permitted and inheritable
    sets (which also empties the ambient set); and set no_new_privs (no setuid or file capability works after)."""
    drop_bounding_set()
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


# libseccomp (Debian's and Ubuntu's libseccomp2): the library that systemd, Docker and apt build their filters with.
_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_ACT_ERRNO = 0x00050000
_SCMP_CMP_NE, _SCMP_CMP_MASKED_EQ = 1, 7
_FAMILIES = 64  # socket() refuses every family from AF_MAX (46 in Linux 6) on
_NETLINK_ROUTE = 0


class _ArgCmp(ctypes.Structure):  # struct scmp_arg_cmp
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def _int_is(arg: int, value: int) -> _ArgCmp:
    """Argument *arg*, an int, is *value*: its low 32 bits only, as the system call reads them."""
    return _ArgCmp(arg, _SCMP_CMP_MASKED_EQ, 0xFFFFFFFF, value)


def _libseccomp():
    try:
        library = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        return None
    library.seccomp_init.restype = ctypes.c_void_p
    return library


def seccomp_available() -> bool:
    return _libseccomp() is not None


def deny_network() -> None:
    """Refuse this process and all it starts every socket (EACCES) but Unix ones and netlink route ones, with a
    seccomp filter. Netlink route sockets only describe the interfaces, and ZeroMQ aborts the kernel when it cannot
    list them (then, refused the TCP socket ipykernel asks for, it merely warns).

    io_uring is refused too: it can open sockets without the socket() system call. System calls of another
    architecture (32-bit ones) kill the process, as libseccomp's filters do by default. Needs no_new_privs."""
    library = _libseccomp()
    if library is None:
        raise OSError(errno.ENOSYS, "libseccomp.so.2 is not installed")
    rules = [(b"socket", [_int_is(0, family)]) for family in range(_FAMILIES)
             if family not in (socket.AF_UNIX, socket.AF_NETLINK)]
    rules += [(b"socket", [_int_is(0, socket.AF_NETLINK), _ArgCmp(2, _SCMP_CMP_NE, _NETLINK_ROUTE, 0)]),
              (b"io_uring_setup", [])]
    context = ctypes.c_void_p(library.seccomp_init(ctypes.c_uint32(_SCMP_ACT_ALLOW)))
    if not context:
        raise OSError(errno.ENOMEM, "seccomp_init failed")
    refuse = ctypes.c_uint32(_SCMP_ACT_ERRNO | errno.EACCES)
    try:
        for name, comparisons in rules:
            number = library.seccomp_syscall_resolve_name(name)
            _seccomp_check(library.seccomp_rule_add_array(context, refuse, number, len(comparisons),
                                                          (_ArgCmp * len(comparisons))(*comparisons)), name)
        _seccomp_check(library.seccomp_load(context), b"seccomp_load")
    finally:
        library.seccomp_release(context)


def _seccomp_check(result: int, what: bytes) -> None:
    if result < 0:  # libseccomp returns -errno
        raise OSError(-result, f"seccomp ({what.decode()}): {os.strerror(-result)}")


def container_sign() -> str | None:
    """What shows that this process runs in a container (Docker, Podman, Kubernetes, LXC...); None if nothing."""
    for path in SIGNS:
        if os.path.exists(path):
            return path
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return "KUBERNETES_SERVICE_HOST"
    try:
        with open("/proc/1/cgroup", encoding="utf-8") as cgroups:
            text = cgroups.read()
    except OSError:
        return None
    return next((f"/proc/1/cgroup ({word})" for word in CGROUP_WORDS if word in text), None)
