"""The kernel's sandbox and supervisor, without Jupyter: limits, no process left behind, and (with bubblewrap) what
an isolated kernel can see, write and reach. Each test runs a small Python program as the "kernel"."""
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from autograde.sandbox import bwrap, container, linux
from autograde.sandbox.bwrap import bwrap_command, isolation_problem
from autograde.sandbox.supervisor import PACKAGE, KernelRequest, Limits, grader_dirs
from autograde.sandbox.user import FIRST_UID

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox uses Linux features")
CONTAINER = "container"


def _others_can_run(path: str) -> bool:
    """Whether a user of no group of the file's could run *path* (every folder above it passable by others)."""
    path = os.path.realpath(path)
    folders = [path]
    while folders[-1] != "/":
        folders.append(os.path.dirname(folders[-1]))
    return all(os.stat(folder).st_mode & stat.S_IXOTH for folder in folders)


# Container mode's kernels run as users of their own: they need a Python that others may run (this machine's may
# live under root's home); their supervisor runs here, as root.
KERNEL_PYTHON = next((python for python in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3")
                      if os.path.exists(python) and _others_can_run(python)), None)
NO_CONTAINER_MODE = ("container mode needs root" if os.geteuid() != 0 else
                     None if KERNEL_PYTHON else "no Python here that a user of its own could run")
ISOLATION = [pytest.param(True, id="isolated", marks=pytest.mark.skipif(
    sys.platform.startswith("linux") and isolation_problem() is not None, reason=str(isolation_problem()))),
    pytest.param(False, id="not-isolated"),
    pytest.param(CONTAINER, id="container", marks=pytest.mark.skipif(NO_CONTAINER_MODE is not None,
                                                                      reason=str(NO_CONTAINER_MODE)))]
MARKS = {False: 0, True: 1, CONTAINER: 2}  # in the `sleep` markers, so that the modes' processes differ


@pytest.fixture
def workdir(tmp_path, isolate):
    """Where a test's kernel works. In container mode, a job's folder as the grader makes it: right under /tmp,
    passable by others (pytest's own temporary folders are root's alone)."""
    if isolate != CONTAINER:
        yield tmp_path
        return
    root = Path(tempfile.mkdtemp(prefix="autograde-test-", dir="/tmp"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root)


class Supervised:
    """A cold supervisor (in bwrap when isolated; as root, with a kernel of its own user in container mode)
    running `python -c CODE` as its kernel."""

    def __init__(self, workdir, code, isolate, name="job", supervisor=(sys.executable, "-m",
                                                                       "autograde.sandbox.supervisor"), **limits):
        self.folder = workdir / name
        self.folder.mkdir(exist_ok=True)
        python = KERNEL_PYTHON if isolate == CONTAINER else sys.executable
        request = KernelRequest(argv=[python, "-c", textwrap.dedent(code)], env=dict(os.environ),
                                cwd=str(self.folder), writable=[str(self.folder)], isolate=isolate is True,
                                limits=Limits(**limits), log_path=str(self.folder / "kernel.log"),
                                container_root=str(workdir) if isolate == CONTAINER else None)
        command = list(supervisor)
        if isolate is True:
            command = bwrap_command(command, request.writable)
        self.control, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen(command, stdin=theirs, start_new_session=True)
        self.control.sendall(request.to_line())
        self.reader = self.control.makefile("rb")

    def event(self, timeout=120) -> dict:
        self.control.settimeout(timeout)
        line = self.reader.readline()
        return json.loads(line) if line else {"event": "gone"}

    def stopped(self, timeout=120) -> dict:
        """The supervisor's final report, once the kernel has ended by itself."""
        while (event := self.event(timeout))["event"] not in ("stopped", "gone"):
            pass
        self.process.wait(30)
        return event

    def stop(self) -> dict:
        self.control.shutdown(socket.SHUT_WR)
        return self.stopped()



def running(marker: str) -> list[int]:
    """Live `sleep <marker>` processes."""
    return [p.pid for p in psutil.process_iter(["cmdline", "status"])
            if p.info["status"] != psutil.STATUS_ZOMBIE and (p.info["cmdline"] or [])[:2] == ["sleep", marker]]


def poll(condition, timeout=30) -> bool:
    """Whether *condition()* became true within *timeout* seconds (checked every 50 ms)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def gone(marker: str) -> bool:
    return poll(lambda: not running(marker))


ESCAPE = """
    import os, subprocess, sys, time
    subprocess.Popen(["sleep", "{marker}"], start_new_session=True)          # leaves the process group
    if os.fork() == 0:                                                     # a daemon: double fork, setsid
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", "{marker}"])
        os._exit(0)
    time.sleep(120)
"""


@pytest.mark.slow
@pytest.mark.parametrize("isolate", ISOLATION)
def test_letting_go_of_the_kernel_kills_what_escaped_its_process_group(workdir, isolate):
    marker = f"987.{os.getpid()}{MARKS[isolate]}"
    kernel = Supervised(workdir, ESCAPE.format(marker=marker), isolate)
    assert kernel.event()["event"] == "started"
    assert poll(lambda: len(running(marker)) == 2)
    assert kernel.stop()["reason"] == "stopped by the grader"
    assert gone(marker)


@pytest.mark.slow
@pytest.mark.parametrize("isolate", ISOLATION)
def test_the_kernel_exiting_also_ends_what_it_started(workdir, isolate):
    marker = f"876.{os.getpid()}{MARKS[isolate]}"
    code = ESCAPE.format(marker=marker).replace("time.sleep(120)", "sys.exit(3)")
    report = Supervised(workdir, code, isolate).stopped()
    assert (report["reason"], report["exit_code"]) == ("kernel died", 3)
    assert gone(marker)


DIES_WITH_ITS_SUPERVISOR = """
    import ctypes, signal, sys
    sig = ctypes.c_int()
    ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
    sys.exit(0 if sig.value == signal.SIGKILL else 3)
"""


@pytest.mark.slow
@pytest.mark.parametrize("isolate", ISOLATION)
def test_the_kernel_dies_with_its_supervisor(workdir, isolate):
    # (Linux forgets the signal when a process changes its user, as a container mode kernel does)
    report = Supervised(workdir, DIES_WITH_ITS_SUPERVISOR, isolate).stopped()
    assert (report["reason"], report["exit_code"]) == ("kernel died", 0)


# The supervisor (see Supervised), its watchdog broken once the kernel has started a process of its own.
BROKEN_SUPERVISOR = """
import os, time
from autograde.sandbox import supervisor
def broken(kernel, request, control):
    while not os.path.exists(os.path.join(request.cwd, "spawned")):
        time.sleep(0.05)
    raise RuntimeError("the watchdog broke")
supervisor._watch = broken
supervisor.main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("isolate", [CONTAINER])
def test_a_supervisor_that_breaks_still_ends_every_process_of_the_kernels_user(workdir, isolate):
    marker = f"765.{os.getpid()}{MARKS[isolate]}"
    code = f"""
        import subprocess, time
        subprocess.Popen(["sleep", "{marker}"], start_new_session=True)
        open("spawned", "w").close()
        time.sleep(120)
    """
    kernel = Supervised(workdir, code, isolate, supervisor=(sys.executable, "-c", BROKEN_SUPERVISOR))
    assert kernel.stopped()["event"] == "gone" and kernel.process.returncode != 0
    assert gone(marker)


def _ended_unnoticed(pid: int) -> bool:
    """Whether a process below *pid* has exited and waits to be collected (its supervisor has not looked yet)."""
    try:
        return any(p.status() == psutil.STATUS_ZOMBIE for p in psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("isolate", ISOLATION)
def test_a_kernel_that_ended_before_the_grader_let_go_is_reported_as_ended(workdir, isolate):
    """The grader lets go of a kernel it lost its connection to: if the kernel had ended by itself, the report says
    so (not "stopped by the grader"), even when the supervisor's watchdog had not looked since."""
    kernel = Supervised(workdir, "import sys; sys.exit(3)", isolate, watchdog_interval_s=600)
    assert kernel.event()["event"] == "started"
    assert poll(lambda: _ended_unnoticed(kernel.process.pid))
    report = kernel.stop()
    assert (report["reason"], report.get("exit_code")) == ("kernel died", 3)


@pytest.mark.slow
@pytest.mark.parametrize("isolate", ISOLATION)
def test_memory_of_all_processes_counts(workdir, isolate):
    code = """
        import os, time
        for _ in range(4):
            if os.fork() == 0:
                block = bytearray(150 << 20)          # 150 MB each, touched
                for i in range(0, len(block), 4096):
                    block[i] = 1
                time.sleep(60)
        time.sleep(60)
    """
    report = Supervised(workdir, code, isolate, memory_mb=400).stopped()
    assert report["reason"] == "memory limit" and report["limit_mb"] == 400


@pytest.mark.slow
@pytest.mark.parametrize("isolate", ISOLATION)
def test_one_process_cannot_allocate_past_the_cap(workdir, isolate):
    code = """
        try:
            block = bytearray(700 << 20)
        except MemoryError:
            raise SystemExit(42)
    """
    assert Supervised(workdir, code, isolate, memory_mb=400).stopped()["exit_code"] == 42


@pytest.mark.slow
@pytest.mark.parametrize("isolate", ISOLATION)
def test_too_many_processes(workdir, isolate):
    marker = f"765.{os.getpid()}{MARKS[isolate]}"
    code = f"""
        import subprocess, time
        children = [subprocess.Popen(["sleep", "{marker}"]) for _ in range(12)]
        time.sleep(60)
    """
    assert Supervised(workdir, code, isolate, max_processes=5).stopped()["reason"] == "too many processes"
    assert gone(marker)


@pytest.mark.slow
@pytest.mark.parametrize("isolate", ISOLATION)
def test_an_interrupt_reaches_the_kernel(workdir, isolate):
    code = """
        import time
        open("ready", "w").close()
        try:
            time.sleep(60)
        except KeyboardInterrupt:
            raise SystemExit(5)
    """
    kernel = Supervised(workdir, code, isolate)
    assert kernel.event()["event"] == "started"
    assert poll(lambda: (kernel.folder / "ready").exists())
    kernel.control.sendall(b'{"op": "interrupt"}\n')
    assert kernel.stopped()["exit_code"] == 5


WHAT_THE_KERNEL_SEES = """
    import ctypes, json, os, socket
    libc = ctypes.CDLL(None, use_errno=True)
    def attempt(call):
        try:
            return call()
        except OSError as exc:
            return f"denied: {{exc.errno}}"
    def connect():
        socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
        return "connected"
    def write(path):
        with open(path, "a") as f:
            f.write("x")
        return "written"
    seen = {{
        "pid": os.getpid(), "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "tmp": os.listdir("/tmp"), "cwd": os.getcwd(), "root": sorted(os.listdir("/")),
        "outside": [p for p in {outside!r} if os.path.exists(p)],
        "tcp": attempt(connect), "write_outside": attempt(lambda: write({outside!r}[0])),
        "write_usr": attempt(lambda: write("/usr/autograde-test")),
        "userns": libc.unshare(0x10000000), "umount_tmp": libc.umount2(b"/tmp", 2),
        "capabilities": open("/proc/self/status").read().split("CapEff:")[1].split()[0],
        "kill_parent": attempt(lambda: os.kill(os.getppid(), 9) or "sent"),
    }}
    with open("seen.json", "w") as f:
        json.dump(seen, f)
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform.startswith("linux") and isolation_problem() is not None,
                    reason=str(isolation_problem()))
def test_an_isolated_kernel_sees_its_folder_alone(tmp_path):
    secret = tmp_path / "course" / "source" / "solutions.ipynb"
    secret.parent.mkdir(parents=True)
    secret.write_text("### BEGIN SOLUTION")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0)
    # The course's master copy is not there, wherever this checkout lives (under /tmp too).
    outside = [str(secret), str(tmp_path / "course"), os.path.expanduser("~/.bashrc"), "/etc/passwd",
               os.path.join(os.path.dirname(PACKAGE), "source")]
    code = WHAT_THE_KERNEL_SEES.format(port=listener.getsockname()[1], outside=outside)
    kernel = Supervised(tmp_path, code, isolate=True)
    report = kernel.stopped()
    assert report["exit_code"] == 0, (kernel.folder / "kernel.log").read_text()
    seen = json.loads((kernel.folder / "seen.json").read_text())
    assert seen["pid"] == 1 and seen["processes"] == [1]  # a PID namespace of its own, nothing else in it
    # A private /tmp: its own folder alone, and the grader's own folders where they live under /tmp (a checkout there)
    grader = {Path(path).relative_to("/tmp").parts[0] for path in grader_dirs() if Path(path).is_relative_to("/tmp")}
    assert set(seen["tmp"]) == {kernel.folder.relative_to("/tmp").parts[0]} | grader
    assert seen["cwd"] == str(kernel.folder)
    assert seen["outside"] == [] and seen["write_outside"].startswith("denied")
    assert seen["write_usr"].startswith("denied")
    assert seen["tcp"].startswith("denied")
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing reached the listener
    assert seen["userns"] == -1 and seen["umount_tmp"] == -1 and int(seen["capabilities"], 16) == 0
    assert secret.read_text() == "### BEGIN SOLUTION"


def test_isolation_problems_name_the_fix(monkeypatch):
    isolation_problem.cache_clear()
    try:
        monkeypatch.setattr(shutil, "which", lambda name: None)
        assert "apt-get install bubblewrap" in isolation_problem()
        assert "--isolation none" in isolation_problem()
        isolation_problem.cache_clear()
        monkeypatch.setattr(bwrap.sys, "platform", "darwin")
        assert "needs Linux" in isolation_problem()
    finally:
        isolation_problem.cache_clear()


# -- container mode ----------------------------------------------------------------------------------------------------

WHAT_A_CONTAINER_KERNEL_SEES = """
    import json, os, socket
    def attempt(call):
        try:
            return call()
        except OSError as exc:
            return f"denied: {{exc.errno}}"
    def write(path):
        with open(path, "a") as f:
            f.write("x")
        return "written"
    def connect():
        socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
        return "connected"
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
    home = os.stat(os.environ["HOME"])
    seen = {{
        "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
        "no_new_privs": status["NoNewPrivs"].strip(), "effective": status["CapEff"].strip(),
        "bounding": status["CapBnd"].strip(), "home": [home.st_uid, oct(home.st_mode & 0o777)],
        "secret": attempt(lambda: open({secret!r}).read()), "list_job": attempt(lambda: os.listdir({root!r})),
        "write_job": attempt(lambda: write({root!r} + "/x")), "write_cwd": attempt(lambda: write("own")),
        "setuid": attempt(lambda: os.setuid(0) or "root"), "kill_supervisor": attempt(lambda: os.kill(os.getppid(), 9)),
        "tcp": attempt(connect),
    }}
    with open("seen.json", "w") as f:
        json.dump(seen, f)
"""


@pytest.mark.slow
@pytest.mark.parametrize("isolate", [CONTAINER])
def test_a_container_mode_kernel_is_a_user_of_its_own(workdir, isolate):
    secret = workdir / "gradebook.db"  # what the grader writes with umask 077
    secret.write_text("hidden tests")
    secret.chmod(0o600)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0)
    code = WHAT_A_CONTAINER_KERNEL_SEES.format(port=listener.getsockname()[1], secret=str(secret), root=str(workdir))
    kernel = Supervised(workdir, code, isolate)
    started = kernel.event()
    assert kernel.stopped()["exit_code"] == 0, (kernel.folder / "kernel.log").read_text()
    seen = json.loads((kernel.folder / "seen.json").read_text())
    uid = seen["uid"]
    assert started == {"event": "started", "uid": uid, "network": started["network"]} and uid >= FIRST_UID
    assert seen["gid"] == uid and seen["groups"] == [] and seen["no_new_privs"] == "1"
    assert int(seen["effective"], 16) == 0 and int(seen["bounding"], 16) == 0
    assert seen["home"] == [uid, "0o700"] and seen["write_cwd"] == "written"
    for attempt in ("secret", "list_job", "write_job", "setuid", "kill_supervisor", "tcp"):
        assert str(seen[attempt]).startswith("denied"), (attempt, seen[attempt])
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing reached the listener
    assert {path.stat().st_uid for path in [kernel.folder, *kernel.folder.iterdir()]} == {0}  # root's again
    assert sorted(path.name for path in workdir.iterdir()) == ["gradebook.db", "job"]  # its home is gone


PEER = """
    import os, signal, time
    open("pid", "w").write(str(os.getpid()))
    while not os.path.exists("other"):  # the other kernel's pid, which the test passes on
        time.sleep(0.05)
    try:
        os.kill(int(open("other").read()), signal.SIGKILL)
        outcome = "killed"
    except OSError as exc:
        outcome = f"denied: {{exc.errno}}"
    try:
        os.listdir({other!r})
    except OSError as exc:
        outcome += f", listing denied: {{exc.errno}}"
    open("outcome", "w").write(outcome)
    time.sleep(60)
"""


IMPORTS_THE_GRADERS_PACKAGE = """
    import importlib.util, json, sys
    class Editable:  # what an editable install's finder does: the package found by its path, its folder not listed
        @staticmethod
        def find_spec(name, path=None, target=None):
            return importlib.util.spec_from_file_location(name, {init!r}) if name == "autograde" else None
    sys.meta_path.insert(0, Editable)
    def attempt(action):
        try:
            return action()
        except Exception as exc:
            return f"refused: {{type(exc).__name__}}"
    seen = {{"probing": attempt(lambda: __import__("autograde.probing").probing.__name__),
             "solutions": attempt(lambda: open({solutions!r}).read())}}
    with open("seen.json", "w") as f:
        json.dump(seen, f)
"""


@pytest.mark.slow
@pytest.mark.parametrize("isolate", [CONTAINER])
def test_a_container_mode_kernel_imports_the_graders_package_and_reads_nothing_beside_it(workdir, isolate,
                                                                                        monkeypatch):
    """A kernel not forked from the warm server imports autograde.probing when it runs a probe; the package lies
    in a folder kept from kernels (a checkout that is the course, Gradescope's bundle), beside the solutions."""
    project = workdir / "course" / "project"
    package, solutions = project / "autograde", project / "resnet_course" / "solutions.py"
    package.mkdir(parents=True)
    for name in ("__init__.py", "probing.py"):
        shutil.copy(os.path.join(PACKAGE, name), package / name)
    solutions.parent.mkdir()
    solutions.write_text("ANSWER = 42\n")
    monkeypatch.setattr(container, "PACKAGE", str(package))
    container.seal(str(workdir / "course"), container._environment())  # what keep_from_kernels does to a folder
    code = IMPORTS_THE_GRADERS_PACKAGE.format(init=str(package / "__init__.py"), solutions=str(solutions))
    kernel = Supervised(workdir, code, isolate)
    assert kernel.stopped()["exit_code"] == 0, (kernel.folder / "kernel.log").read_text()
    seen = json.loads((kernel.folder / "seen.json").read_text())
    assert seen == {"probing": "autograde.probing", "solutions": "refused: PermissionError"}


@pytest.mark.slow
@pytest.mark.parametrize("isolate", [CONTAINER])
def test_kernels_side_by_side_cannot_touch_each_other(workdir, isolate):
    folders = [workdir / "first", workdir / "second"]
    kernels = [Supervised(workdir, PEER.format(other=str(folders[1])), isolate, name="first"),
               Supervised(workdir, PEER.format(other=str(folders[0])), isolate, name="second")]
    assert len({kernel.event()["uid"] for kernel in kernels}) == 2  # a user each
    assert poll(lambda: all((folder / "pid").exists() for folder in folders))
    for folder, other in zip(folders, reversed(folders)):
        (folder / "other").write_text((other / "pid").read_text())
    assert poll(lambda: all((folder / "outcome").exists() for folder in folders))
    for folder in folders:
        assert (folder / "outcome").read_text() == "denied: 1, listing denied: 13"
    assert [kernel.stop()["reason"] for kernel in kernels] == ["stopped by the grader"] * 2


@pytest.mark.skipif(not linux.seccomp_available(), reason="libseccomp.so.2 is not installed")
def test_the_network_filter_refuses_every_socket_but_unix_and_netlink_route_ones():
    code = """
        import ctypes, socket
        from autograde.sandbox import linux
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
        linux.deny_network()
        libc, long = ctypes.CDLL(None, use_errno=True), ctypes.c_long
        def opens(domain, kind, protocol=0):  # socket(2) itself, with whatever its 64-bit registers hold
            return libc.syscall(long(41), long(domain), long(kind), long(protocol)) >= 0
        print(opens(socket.AF_UNIX, socket.SOCK_STREAM), opens(socket.AF_NETLINK, socket.SOCK_RAW),
              opens(socket.AF_INET, socket.SOCK_STREAM), opens(socket.AF_INET6, socket.SOCK_DGRAM),
              opens(socket.AF_PACKET, socket.SOCK_RAW), opens(socket.AF_INET | 1 << 32, socket.SOCK_STREAM),
              opens(socket.AF_NETLINK, socket.SOCK_RAW, 9), opens(socket.AF_NETLINK, socket.SOCK_RAW, 1 << 32),
              libc.syscall(long(425), long(1), ctypes.create_string_buffer(120)) >= 0)  # io_uring_setup
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=os.path.dirname(PACKAGE))
    assert done.stdout.split() == ["True", "True"] + ["False"] * 7, done.stderr


def test_a_container_refusing_namespaces_gets_container_mode_and_no_sysctl_advice(monkeypatch):
    monkeypatch.setattr(bwrap, "bwrap_failure", lambda: "bwrap: No permissions to create new namespace")
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(container, "probe", lambda: {"network": "filter"})
    isolation_problem.cache_clear()
    try:
        monkeypatch.setattr(linux, "container_sign", lambda: None)
        assert "sysctl" in isolation_problem()
        assert container.choose("bwrap") == ("bwrap", isolation_problem())  # not in a container: bwrap or nothing
        isolation_problem.cache_clear()
        monkeypatch.setattr(linux, "container_sign", lambda: "/.dockerenv")
        problem = isolation_problem()
        assert "sysctl" not in problem and "container mode" in problem and "/.dockerenv" in problem
        assert container.choose("bwrap") == ("container", None)
        monkeypatch.setattr(container, "probe", lambda: {"problem": "the grader does not run as root"})
        mode, why = container.choose("bwrap")
        assert mode == "bwrap" and why.startswith(problem) and why.endswith("the grader does not run as root")
        assert container.choose("none") == ("none", None)
    finally:
        isolation_problem.cache_clear()


def test_sealing_leaves_only_the_way_to_the_environment(tmp_path):
    course = tmp_path / "course"
    environment = course / "tools" / ".venv"
    (environment / "lib").mkdir(parents=True)
    (course / "source").mkdir()
    (course / "gradebook.db").write_text("hidden tests")
    (course / "tools" / "notes.txt").write_text("notes")
    for path in (course, course / "tools", course / "source", environment):
        path.chmod(0o755)
    container.seal(str(course), [str(environment)])
    modes = {str(path.relative_to(tmp_path)): oct(stat.S_IMODE(path.stat().st_mode))
             for path in [course, *sorted(course.rglob("*"))] if "lib" not in path.parts}
    assert modes == {"course": "0o711", "course/gradebook.db": "0o600", "course/source": "0o700",
                     "course/tools": "0o711", "course/tools/.venv": "0o755", "course/tools/notes.txt": "0o600"}
