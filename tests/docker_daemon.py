"""A private Docker daemon for the tests, from Debian's docker.io, started and stopped in a folder, and an image
made of this machine's own programs (no registry, no download).

dockerd runs as root with its data root, exec root, pid file and socket in the folder, without a bridge network or
iptables rules, so nothing of the machine's own Docker set-up is used or changed. Containers run as Docker runs
them by default: its default seccomp profile and capabilities, not privileged. ``make docker`` installs docker.io;
where it is missing, or the tests do not run as root, :func:`unavailable` says why and the tests skip.

The image is an empty root file system with the few files of /etc that programs need; this machine's /usr (and
/bin, /lib... where they are not links into it), Python's installation and the grading environment are mounted
into it read-only, at the same paths (a virtual environment cannot move).
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

DAEMON = ("dockerd", "containerd", "runc", "docker")
SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d")
START_TIMEOUT_S = 120  # a daemon that answers nothing by then will not: the tests skip rather than hang
ACCOUNTS = {"passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
            "group": "root:x:0:\nnogroup:x:65534:\n"}


def unavailable() -> str | None:
    """Why a private Docker daemon cannot be started here, or None."""
    missing = [name for name in DAEMON if shutil.which(name) is None]
    if missing:
        return f"Docker is not installed ({', '.join(missing)} missing): `make docker` installs docker.io"
    if os.geteuid() != 0:
        return "a private Docker daemon needs root"
    return None


class Docker:
    """The docker client, talking to the private daemon."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.host = f"unix://{folder / 'docker.sock'}"

    def __call__(self, *args, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "-H", self.host, *map(str, args)], check=check, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, **kwargs)

    def ready(self) -> bool:
        return self("version", check=False).returncode == 0

    def import_image(self, tag: str) -> str:
        """The image of an empty root file system with this machine's /etc essentials (see the module's text)."""
        archive = self.folder / "root.tar"
        with tarfile.open(archive, "w") as tar:
            _add_folder(tar, "tmp", 0o1777)
            for name in ("run", "etc", "autograder"):
                _add_folder(tar, name, 0o755)
            # This machine's Python lives under /root (pyenv): others may pass through, as kernels must.
            _add_folder(tar, "root", 0o711)
            for path in SYSTEM_DIRS:
                if os.path.islink(path):
                    link = tarfile.TarInfo(path.lstrip("/"))
                    link.type, link.linkname = tarfile.SYMTYPE, os.readlink(path)
                    tar.addfile(link)
            for name in ETC_FILES:
                if os.path.exists(f"/etc/{name}"):
                    tar.add(f"/etc/{name}", f"etc/{name}")
            for name, text in ACCOUNTS.items():
                info = tarfile.TarInfo(f"etc/{name}")
                info.size, info.mode = len(text), 0o644
                tar.addfile(info, io.BytesIO(text.encode()))
        self("import", archive, tag)
        return tag

    @staticmethod
    def host_mounts() -> list[str]:
        """``-v`` options: this machine's programs, Python and the grading environment, read-only."""
        folders = ["/usr"] + [path for path in SYSTEM_DIRS if os.path.isdir(path) and not os.path.islink(path)]
        folders += sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)})
        return [word for folder in folders for word in ("-v", f"{folder}:{folder}:ro")]


def _add_folder(tar: tarfile.TarFile, name: str, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    tar.addfile(info)


@contextlib.contextmanager
def private_docker(folder: Path):
    """Start dockerd with everything of its own in *folder*; yields a :class:`Docker`. Stops the daemon (and so
    its containers), unmounts what it left mounted and removes its data when done."""
    docker = Docker(folder)
    log = open(folder / "dockerd.log", "wb")  # noqa: SIM115 - closed below
    daemon = subprocess.Popen(["dockerd", "--data-root", str(folder / "data"), "--exec-root", str(folder / "exec"),
                               "--pidfile", str(folder / "dockerd.pid"), "-H", docker.host, "--bridge=none",
                               "--iptables=false"],
                              stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not docker.ready():
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dockerd did not start: " + _tail(folder / "dockerd.log"))
            time.sleep(0.2)
        yield docker
    finally:
        _stop(daemon)
        log.close()
        _unmount_below(folder)
        shutil.rmtree(folder / "data", ignore_errors=True)
        shutil.rmtree(folder / "exec", ignore_errors=True)


def _stop(daemon: subprocess.Popen) -> None:
    """SIGTERM (dockerd then stops its containers and containerd), SIGKILL to the whole session if it hangs."""
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()


def _unmount_below(folder: Path) -> None:
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        targets = [line.split()[1].encode().decode("unicode_escape") for line in mounts]
    for target in sorted((t for t in targets if t.startswith(f"{folder}/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False)


def _tail(path: Path, lines: int = 5) -> str:
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
