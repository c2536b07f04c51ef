"""The kernel client the grader talks to kernels with (autograde.sandbox.kernel): when it deems a kernel ready, and
what it accepts from one. The tests start kernels through IsolatedKernelManager, as nbclient does, and (the slow
one) through the grading tool and plain nbgrader on a machine whose cores are all busy."""
import asyncio
import json
import subprocess
import sys

import pytest
from jupyter_client.kernelspec import KernelSpec

from autograde.sandbox.bwrap import isolation_problem
from autograde.sandbox.kernel import IsolatedKernelManager
from autograde.status import OUTPUT_TOO_LARGE
from autograde_fixtures import MINI, fill, make_course, read_csv, release_and_answers, run_cli, stock_nbgrader, write
from resnet_course.cores import available_cores

# Every test starts kernels (slow; one of them takes minutes).
pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox uses Linux features"),
              pytest.mark.slow]

# A kernel slow to answer, made deterministic: it holds back its reply to the first kernel_info request until a
# second request has come, then answers both (a busy machine does the same when the first reply takes longer than
# the client waits before asking again).
LATE_KERNEL = '''
from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp


class LateKernel(IPythonKernel):
    held = None
    answered = False

    async def kernel_info_request(self, stream, ident, parent):
        if not self.answered and self.held is None:
            self.held = (stream, ident, parent)
            return
        if not self.answered:
            self.answered = True
            await super().kernel_info_request(*self.held)
        await super().kernel_info_request(stream, ident, parent)


IPKernelApp.launch_instance(kernel_class=LateKernel)
'''


async def _with_kernel(argv, use, **settings):
    """Start a kernel running *argv* through IsolatedKernelManager, connect a client, ``await use(client)``."""
    manager = IsolatedKernelManager(**settings)
    manager._kernel_spec = KernelSpec(argv=argv, language="python", display_name="test", name="test")
    await manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        return await use(client)
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(now=True)


def test_a_kernel_whose_first_reply_comes_late_gets_ready(tmp_path):
    script = tmp_path / "late_kernel.py"
    script.write_text(LATE_KERNEL)

    async def use(client):
        await client.wait_for_ready(timeout=60)  # the old client stayed one reply behind until this ran out
        reply = await client.execute("", user_expressions={"late": "get_ipython().kernel.answered"}, reply=True,
                                     timeout=60)
        return reply["content"]["user_expressions"]["late"]["data"]["text/plain"]

    argv = [sys.executable, str(script), "-f", "{connection_file}"]
    assert asyncio.run(_with_kernel(argv, use, isolation="none")) == "True"  # it did hold its first reply back


def test_kernels_start_and_run_while_other_processes_load_every_core(tmp_path):
    """Cold kernels, warm kernels and plain `nbgrader autograde` while CPU-bound processes compete for every core
    (on such a machine the first kernel_info reply comes after the client has asked again)."""
    course = make_course(tmp_path / "course", protected=True)
    release, answers = release_and_answers(course)
    write(fill(release, answers), tmp_path / "class" / "ann.ipynb")
    stock = tmp_path / "stock"
    write(fill(release, answers), stock / "submitted" / "ann" / MINI / f"{MINI}.ipynb")
    (stock / "nbgrader_config.py").write_text((course / "nbgrader_config.py").read_text())
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * available_cores())]
    try:
        for kernel in ("cold", "warm"):
            out = tmp_path / f"out-{kernel}"
            done = run_cli("grade", tmp_path / "class", "--assignment", MINI, "--out", out, "--course", course,
                           "--kernel", kernel)
            assert done.returncode == 0, done.stderr[-3000:]
            assert read_csv(out / "grades.csv")["ann"]["score"] == "3", (kernel, read_csv(out / "grades.csv"))
        with stock_nbgrader(stock, course / "source", MINI, "fixture-course") as gb:
            assert gb.find_submission(MINI, "ann").score == 3
    finally:
        for process in busy:
            process.kill()
            process.wait()


# Runs in a process of its own, as a grading worker does: nbclient executes a notebook whose first cell ends with a
# 300 MB value, through IsolatedKernelManager; prints what nbclient raised, why the kernel ended, and its own peak
# resident memory (VmHWM: getrusage's ru_maxrss would include its parent's, pytest's, from before the exec).
HUGE_VALUE = '''
import json, re, sys
import nbformat
from nbclient import NotebookClient
from autograde.sandbox.kernel import IsolatedKernelManager

nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('"x" * 300_000_000'),
                                     nbformat.v4.new_code_cell("print('still running')")])
manager = IsolatedKernelManager(isolation=sys.argv[1])
try:
    NotebookClient(nb, km=manager, timeout=600).execute()
    raised = None
except Exception as exc:
    raised = type(exc).__name__
print(json.dumps({"raised": raised, "stopped": manager.provisioner.stop_reason(), "outputs": nb.cells[1].outputs,
                  "peak_mb": int(re.search(r"VmHWM:\\s*(\\d+)", open("/proc/self/status").read())[1]) >> 10}))
'''


@pytest.mark.parametrize("isolation", ["bwrap", "none"])
def test_a_value_over_the_message_cap_never_reaches_the_graders_memory(isolation):
    if isolation == "bwrap" and isolation_problem():
        pytest.skip(isolation_problem())
    done = subprocess.run([sys.executable, "-c", HUGE_VALUE, isolation], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["peak_mb"] < 150, seen  # (the value is 300 MB; taking it in used to cost ~1 GB)
    assert seen["raised"] == "DeadKernelError" and seen["outputs"] == []  # nothing after it ran
    assert seen["stopped"]["reason"] == OUTPUT_TOO_LARGE and seen["stopped"]["limit_mb"] == 32
