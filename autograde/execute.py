"""nbgrader's Execute preprocessor, for grading students' notebooks: the kernel computes, the grader judges.

:class:`JudgedExecute` subclasses :class:`nbgrader.preprocessors.Execute` (itself nbclient), and is composed in
``nbgrader_config.py``, so that ``python -m autograde grade``, plain ``nbgrader autograde``, formgrader's Autograde
button and the Gradescope runtime all grade this way:

* **Probes and judges.** When the assignment has a ``grading/`` folder beside its notebook in ``source/``
  (:class:`autograde.judging.Grading`), no test cell's own code runs in the student's kernel. In its place the
  kernel runs the test's *probe*, which calls the student's code on inputs drawn from a seed the kernel only
  learns then, and sends back what it observed as plain data. The test's *judge* decides in this process,
  comparing those observations with what it computes itself and with the *reference* observations: the same
  probes run on the source notebook's own answers in a trusted kernel, once per process and seed. A test gets
  its points only from a judge's positive verdict, which the grader writes as the cell's output; whatever the
  kernel printed there is dropped. Hidden tests and expected values never enter the kernel.
* **An isolated kernel** (:class:`autograde.sandbox.kernel.IsolatedKernelManager`), working in a throw-away folder
  of its own: the grader copies the assignment's data files in and never reads anything back from it.
* **Timeouts that hold.** A cell past the timeout is interrupted, as nbgrader does; a kernel that ignores the
  interrupt is killed with everything it started, and the tests after it are marked as not run (score 0).
* **Dead kernels** (``os._exit``, a segfault, the memory watchdog) end the run the same way, with the reason the
  sandbox supervisor recorded; so does a message the kernel forged that jupyter_client or nbclient cannot read
  (the kernel holds the key that signs them), as tampering.
* **Output caps.** A cell's printed output and displays stop being collected after ``max_output_bytes``;
  errors and results are always kept (truncated if huge).

An assignment without ``grading/`` is graded as stock nbgrader grades it: its test cells run in the kernel, and a
test without an error counts as passed. What happened goes into the notebook's ``autograde`` metadata
(:func:`autograde.preprocessors.report`).
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
import weakref
from pathlib import Path

import nbformat
from jupyter_core.utils import ensure_async, run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_code_cell, new_notebook, new_output
from nbgrader import utils
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import Execute
from traitlets import Bool, Integer, Unicode

from . import status as st
from .judging import FOLDER, MIME, Grading
from .preprocessors import add_to_report
from .sandbox.kernel import IsolatedKernelManager, remove_kernel_files

KERNEL_FACTS = "autograde_kernel"  # the resources' key for how the kernel ran (warm, CPU seconds)
WORK_PREFIX = "work-"  # a kernel's working folder (_work_folder): the kernel writes there
# (grading folder, reference notebook, seed) -> grade_id -> observations; a Jupyter server whose formgrader runs
# Autograde many times keeps the last few.
_REFERENCES: dict[tuple, dict] = {}
_KEPT_REFERENCES = 4
# The seed drawn for each grading run, by the JudgedExecute's parent. nbgrader's Autograde makes a JudgedExecute
# for every notebook (twice), all with the exporter it made for the whole run as their parent.
_RUN_SEEDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def is_test(cell) -> bool:
    return cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell)


def _error(ename: str, evalue: str):
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


class JudgedExecute(Execute):
    """Execute whose tests are probed in the kernel and judged here (see the module docstring)."""

    grading_dir = Unicode("", help="the assignment's probes and judges; default: source/<assignment>/grading").tag(
        config=True)
    reference_notebook = Unicode("", help="the notebook with the reference answers; default: the source "
                                          "notebook of the same name").tag(config=True)
    require_judges = Bool(False, help="refuse to grade an assignment without probes and judges (a course whose "
                                      "tests all are judged: its test cells would pass by themselves)").tag(config=True)
    seed = Integer(0, help="the probes' seed; 0 draws a new one for every grading run (every nbgrader Autograde, "
                           "formgrader's button included), which all its notebooks share").tag(config=True)
    max_observation_bytes = Integer(8_000_000, help="largest observation a probe may send").tag(config=True)
    max_output_bytes = Integer(200_000, help="Output collected per cell; -1 for no limit").tag(config=True)
    max_error_chars = Integer(20_000, help="Longest error message kept").tag(config=True)
    shutdown_kernel = Unicode("immediate", help="the supervisor kills the kernel and its processes at once").tag(
        config=True)

    def __init__(self, *args, **kwargs):
        # nbgrader's Execute passes its kernel manager class as an argument, which no configuration overrides.
        kwargs.setdefault("kernel_manager_class", IsolatedKernelManager)
        super().__init__(*args, **kwargs)
        # One seed for the run's submissions (and one reference run): its exporter's; the next run draws another.
        # Without a parent (one notebook executed by itself) the seed is this instance's own.
        drawn = secrets.randbits(62)
        self._drawn_seed = drawn if self.parent is None else _RUN_SEEDS.setdefault(self.parent, drawn)

    # -- where things are ------------------------------------------------------------------------
    def _source_path(self, resources, name: str) -> Path | None:
        info = (resources or {}).get("nbgrader", {})
        if "assignment" not in info:
            return None
        coursedir = CourseDirectory(parent=self)
        return Path(coursedir.format_path(coursedir.source_directory, ".", info["assignment"])) / name

    def grading(self, resources=None) -> Grading | None:
        return Grading.find(self.grading_dir or self._source_path(resources, FOLDER), self.require_judges)

    def _reference_path(self, resources) -> Path:
        if self.reference_notebook:
            return Path(self.reference_notebook)
        return self._source_path(resources, f"{resources['nbgrader']['notebook']}.ipynb")

    def run_seed(self) -> int:
        return self.seed or self._drawn_seed

    # -- the run -------------------------------------------------------------------------------
    def preprocess(self, nb, resources=None, km=None):
        tests = [cell for cell in nb.cells if is_test(cell)]
        grading = self.grading(resources) if tests else None  # no test, nothing to judge, nothing passes by itself
        reference = None
        if grading is not None:
            grading.check_complete(cell.metadata.nbgrader.grade_id for cell in tests)
            reference = self.reference(grading, self._reference_path(resources))
        for cell in nb.cells:
            for output in cell.get("outputs", []):  # a submission brings no verdicts of its own
                output.get("data", {}).pop(MIME, None)
        self._observe(nb, resources, km, grading)
        if grading is None:
            self._mark_not_run(tests)
        else:
            self._judge(tests, grading, reference)
        self._write_report(nb)
        return nb, self.resources

    def reference_key(self, grading: Grading, notebook: Path) -> tuple:
        return str(grading.folder), str(Path(notebook).resolve()), self.run_seed()

    def reference(self, grading: Grading, notebook: Path) -> dict:
        """The probes' observations of the reference answers, with this run's seed: computed once per process."""
        key = self.reference_key(grading, notebook)
        if key not in _REFERENCES:
            remember_reference(key, self.observe_reference(grading, notebook))
        return _REFERENCES[key]

    def observe_reference(self, grading: Grading, notebook: Path) -> dict:
        """Run the reference answers and every test's probe in a fresh kernel that runs no student's code."""
        source = nbformat.read(notebook, as_version=4)
        cells = [cell for cell in source.cells if cell.cell_type == "code" and (
            utils.is_solution(cell) or utils.is_locked(cell) or utils.is_grade(cell))]
        runner = type(self)(parent=self.parent, config=self.config, seed=self.run_seed())
        observed = runner._observe(new_notebook(cells=cells, metadata=source.metadata),
                                   {"metadata": {"path": str(Path(notebook).parent)}}, None, grading)
        problems = [f"{grade_id}: {_describe(observed.get(grade_id))}" for grade_id in
                    (cell.metadata.nbgrader.grade_id for cell in cells if is_test(cell))
                    if not isinstance(observed.get(grade_id), dict) or "stopped" in observed[grade_id]]
        if problems or runner.report.get("stopped"):
            why = "; ".join(problems) or runner.report["stopped"][1]
            raise RuntimeError(f"the reference answers in {notebook} fail their own probes: {why[:2000]}")
        return observed

    def _observe(self, nb, resources, km, grading: Grading | None) -> dict:
        """Execute *nb* (its tests' probes in place of the tests) in a throw-away folder; the observations."""
        self.report = {"statuses": set(), "notes": []}
        self._grading, self._observed = grading, {}
        NotebookClient.__init__(self, nb, km)  # as ExecutePreprocessor.preprocess does
        self.reset_execution_trackers()
        self._check_assign_resources(resources or {})
        self._output_bytes, self._truncated, self._ran, self._probing = {}, set(), {}, None
        self._probes_sent = False  # the kernel keeps the probes' source from the first probe that ran on
        if self.km is None:
            self.km = self.create_kernel_manager()
        workdir = _work_folder(self.resources.get("metadata", {}).get("path"), getattr(self.km, "runtime_root", None))
        try:
            run_sync(self._async_run)(workdir)
        finally:
            remove_kernel_files(workdir)
        stopped = self.report.get("stopped")
        if stopped:
            self.report["statuses"].add(stopped[0])
            self.report["notes"].append(stopped[1])
        return self._observed

    async def _async_run(self, workdir: str):
        stopped, self._manager = None, None
        try:
            async with self.async_setup_kernel(cwd=workdir):
                self._manager = self.km  # nbclient forgets it when the kernel is shut down
                msg_id = await ensure_async(self.kc.kernel_info())
                info = await self.async_wait_for_reply(msg_id)
                if info is not None and "language_info" in info["content"]:
                    self.nb.metadata["language_info"] = info["content"]["language_info"]
                for index, cell in enumerate(self.nb.cells):
                    stopped = await self._run(cell, index)
                    if stopped:
                        break
        except DeadKernelError:
            stopped = stopped or self._kernel_reason()
        if stopped:
            self.report["stopped"] = stopped
        if self._manager is not None:
            self.report["warm"] = bool(getattr(self._manager, "started_warm", False))
            self.report["kernel_cpu_s"] = self._stop_report().get("kernel_cpu_s")

    async def _run(self, cell, index):
        """Run *cell*, or its probe in its place when it is a judged test; returns why the run must stop, if so."""
        if self._grading is None or not is_test(cell):
            return await self._run_cell(cell, index)
        grade_id = cell.metadata.nbgrader.grade_id
        probe = new_code_cell(self._grading.probe_code(grade_id, self.run_seed(), self.max_observation_bytes,
                                                       with_source=not self._probes_sent))
        self._probing = grade_id
        try:
            return await self._run_cell(probe, index, store_history=False)
        finally:
            self._probing = None
            self._ran[grade_id] = self._ran.pop(id(probe), None)
            self._probes_sent = self._probes_sent or self._ran[grade_id] == "ok"
            self.nb.cells[index] = cell  # nbclient keeps the cell it ran in the notebook: the test cell goes back
            cell.metadata.pop("execution", None)  # nbclient's timestamps: the probe's, as a test cell run would have
            if "execution" in probe.metadata:
                cell.metadata["execution"] = probe.metadata["execution"]

    async def _run_cell(self, cell, index, store_history=True):
        try:
            await self.async_execute_cell(cell, index, store_history=store_history)
        except CellTimeoutError:
            reason = f"a cell ran past the {self._get_timeout(cell)} s limit and ignored the interrupt"
            self.report["statuses"].add(st.TIMED_OUT)
            self.report["notes"].append(reason)
            self._ran[id(cell)] = "timed out"
            await self._stop_kernel()
            return st.TIMED_OUT, reason
        except DeadKernelError:
            self._ran[id(cell)] = "died"
            return self._kernel_reason()
        except Exception as error:  # noqa: BLE001 - a kernel holds the key that signs its messages: one it forged
            # (content of another type, a number JSON cannot hold) breaks jupyter_client or nbclient on reading it
            self._ran[id(cell)] = "stopped"
            await self._stop_kernel()
            return st.TAMPERING, ("the kernel sent a message the grader could not read "
                                  f"({type(error).__name__}: {str(error)[:200]}), and was stopped")
        return None

    async def _stop_kernel(self) -> None:
        with contextlib.suppress(Exception):  # it may already be gone
            await ensure_async(self.km.shutdown_kernel(now=True))

    # -- nbclient hooks --------------------------------------------------------------------------
    def on_cell_executed(self, **kwargs):
        super().on_cell_executed(**kwargs)
        self._ran.setdefault(id(kwargs.get("cell")), "ok")  # the kernel answered for it (unless it timed out)

    async def _async_poll_kernel_alive(self) -> None:
        """nbclient's watch on the kernel while a cell runs. A message that broke nbclient (see _run_cell) leaves it
        running, unawaited: once the kernel client is gone, it ends instead of failing on the missing client."""
        try:
            await super()._async_poll_kernel_alive()
        except AssertionError:
            if self.kc is not None:
                raise

    async def _async_handle_timeout(self, timeout, cell=None):
        self.report["statuses"].add(st.TIMED_OUT)
        self.report["notes"].append(f"a cell ran longer than {timeout} s and was interrupted")
        self._ran[id(cell)] = "timed out"
        return await super()._async_handle_timeout(timeout, cell)

    def output(self, outs, msg, display_id, cell_index):
        """Collect an output, within the per-cell budget; a probe's observations are kept apart, never shown."""
        data = msg.get("content", {}).get("data")
        if isinstance(data, dict) and MIME in data:
            self._keep_observations(data[MIME])
            return None
        out = super().output(outs, msg, display_id, cell_index)
        if out is None or self.max_output_bytes < 0:
            return out
        kind = out.get("output_type")
        if kind in ("error", "execute_result"):
            self._truncate(out)
            return out
        used = self._output_bytes.get(cell_index, 0) + _size(out)
        self._output_bytes[cell_index] = used
        if used <= self.max_output_bytes:
            return out
        outs.remove(out)
        key = (cell_index, out.get("name", kind))
        if key not in self._truncated:
            self._truncated.add(key)
            name = out.get("name") if kind == "stream" else "stdout"
            outs.append(new_output("stream", name=name, text=(
                f"\n[output truncated by the grader: more than {self.max_output_bytes // 1000} kB]\n")))
            self.report["notes"].append("output truncated")
        return None

    def _keep_observations(self, value) -> None:
        """A probe's answer: only while that probe runs, once, and within its size."""
        if self._probing is None:
            return  # sent by some other cell's code: nothing to keep
        if self._probing in self._observed:
            self._observed[self._probing] = {"stopped": {"what": None, "type": "ProbeError",
                                                         "message": "the probe's answer came more than once"}}
            self.report["statuses"].add(st.TAMPERING)
            self.report["notes"].append(f"{self._probing}: the probe's answer came more than once")
            return
        size = _json_size(value)
        self._observed[self._probing] = value if size <= self.max_observation_bytes else {"oversized": size}

    def handle_comm_msg(self, outs, msg, cell_index):
        """Widgets and other comms: grading needs none, and what they carry would escape the output caps."""
        return None

    def _update_display_id(self, display_id, msg):
        """An update of an earlier display, unless it would grow it past the caps or carries a probe's answer."""
        data = msg.get("content", {}).get("data")
        if not isinstance(data, dict) or MIME in data or (
                self.max_output_bytes >= 0 and _size({"data": data}) > self.max_output_bytes):
            return
        super()._update_display_id(display_id, msg)

    def clear_output(self, outs, msg, cell_index):
        self._output_bytes[cell_index] = 0  # what was cleared no longer counts (progress bars)
        return super().clear_output(outs, msg, cell_index)

    def _truncate(self, out):
        limit = self.max_error_chars
        if out.get("output_type") == "error":
            out["evalue"] = str(out.get("evalue", ""))[:limit]
            tb = out.get("traceback", [])
            if sum(len(line) for line in tb) > limit:
                out["traceback"] = [line[:2000] for line in tb[:20]] + ["[traceback truncated by the grader]"] + \
                                   [line[:2000] for line in tb[-5:]]
        else:
            data = out.get("data", {})
            for mime, value in list(data.items()):
                if isinstance(value, str) and len(value) > limit:
                    data[mime] = value[:limit] + "\n[truncated by the grader]"

    # -- the kernel's end ------------------------------------------------------------------------
    def _kernel_reason(self):
        why = self._stop_report()
        reason = why.get("reason")
        if reason == st.MEMORY:
            return st.MEMORY, f"the notebook used more than {why.get('limit_mb', '?')} MB of memory and was stopped"
        if reason == st.PROCESSES:
            return st.PROCESSES, f"the notebook started more than {why.get('limit', '?')} processes and was stopped"
        if reason == st.OUTPUT_TOO_LARGE:
            return st.OUTPUT_TOO_LARGE, (f"a cell's output or value was larger than {why.get('limit_mb', '?')} MB: the "
                                         "grader cut the kernel off and stopped it")
        if why.get("signal"):
            return st.KERNEL_DIED, f"the kernel died (signal {why['signal']})"
        return st.KERNEL_DIED, "the kernel died (the notebook's code ended the Python process)"

    def _stop_report(self) -> dict:
        provisioner = getattr(self._manager, "provisioner", None)
        return provisioner.stop_reason() if hasattr(provisioner, "stop_reason") else {}

    # -- verdicts --------------------------------------------------------------------------------
    def _not_run(self, ran) -> str:
        stopped = self.report.get("stopped")
        if ran == "timed out":
            return "this test did not finish: it ran past the time limit"
        if ran == "ok":  # a judged test's probe ran, and nothing came back from it
            return "this test ran, but its probe sent nothing back: the notebook's code interfered with it"
        return f"this test did not run: {stopped[1] if stopped else 'it was not executed'}"

    def _mark_not_run(self, tests) -> None:
        """Stock nbgrader gives full marks to a test cell without outputs: a test that did not run gets an error."""
        for cell in tests:
            ran = self._ran.get(id(cell))
            if ran != "ok":
                cell.setdefault("outputs", []).append(_error("NotRun", self._not_run(ran)))

    def _judge(self, tests, grading: Grading, reference: dict) -> None:
        """Each test cell's output becomes its judge's verdict: nothing the kernel printed there counts."""
        for cell in tests:
            grade_id = cell.metadata.nbgrader.grade_id
            ran, observed = self._ran.get(grade_id), self._observed.get(grade_id)
            if grade_id not in reference:
                raise RuntimeError(f"the reference notebook has no test cell {grade_id}")
            if observed is None or ran == "timed out":  # (an interrupted probe sends its stop)
                verdict_outputs = [_error("NotRun", self._not_run(ran))]
            else:
                verdict = grading.judge(grade_id, observed, reference[grade_id], self.run_seed())
                if verdict.note:
                    self.report["notes"].append(verdict.note)
                if verdict.tampered:
                    self.report["statuses"].add(st.TAMPERING)
                verdict_outputs = [new_output("stream", name="stdout", text=f"{verdict.message}\n")
                                   if verdict.passed else _error("AssertionError", verdict.message)]
            cell.outputs, cell.execution_count = verdict_outputs, None

    def _write_report(self, nb) -> None:
        found = self.report
        if st.MEMORY not in found["statuses"] and any(
                out.get("output_type") == "error" and (
                    out.get("ename") == "MemoryError" or "can't allocate memory" in str(out.get("evalue", "")))
                for cell in nb.cells for out in cell.get("outputs", [])):
            found["statuses"].add(st.MEMORY)
            found["notes"].append("the notebook tried to use more memory than allowed (MemoryError)")
        for status in sorted(found["statuses"]):
            add_to_report(nb, status=status)
        for note in found["notes"]:
            add_to_report(nb, note=note)
        # Measurements go with the resources, not into the notebook: grading a file twice gives the same notebook.
        self.resources[KERNEL_FACTS] = {key: found[key] for key in ("warm", "kernel_cpu_s") if key in found}


def remember_reference(key: tuple, observed: dict) -> None:
    """Keep a reference (the grading run computes it before it forks its workers)."""
    _REFERENCES[key] = observed
    while len(_REFERENCES) > _KEPT_REFERENCES:
        del _REFERENCES[next(iter(_REFERENCES))]


def _work_folder(data_dir: str | None, parent: str | None) -> str:
    """A new private folder for the kernel under *parent* (where the kernels' sandboxes can bind it), with copies of
    the assignment's data files (regular files only: links are not followed); nothing is ever read back from it."""
    folder = tempfile.mkdtemp(prefix=WORK_PREFIX, dir=parent)
    if not data_dir or not os.path.isdir(data_dir):
        return folder
    for root, dirs, files in os.walk(data_dir):
        dirs[:] = [d for d in dirs if d != FOLDER and not os.path.islink(os.path.join(root, d))]
        for name in files:
            source = os.path.join(root, name)
            if name.endswith(".ipynb") or os.path.islink(source) or not os.path.isfile(source):
                continue
            target = os.path.join(folder, os.path.relpath(source, data_dir))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(source, target, follow_symlinks=False)
    return folder


def _describe(observed) -> str:
    if not isinstance(observed, dict):
        return "no observations came back"
    stopped = observed.get("stopped", {})
    return f"{stopped.get('what')} raised {stopped.get('type')}: {stopped.get('message')}"


def _json_size(value, depth=0) -> int:
    """About how many bytes *value* takes as JSON, without writing it out (its strings are most of it)."""
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, dict) and depth < 64:
        return sum(len(key) + 4 + _json_size(item, depth + 1) for key, item in value.items()) + 2
    if isinstance(value, list) and depth < 64:
        return sum(_json_size(item, depth + 1) + 1 for item in value) + 2
    return 24


def _size(out) -> int:
    if out.get("output_type") == "stream":
        return len(out.get("text", ""))
    return sum(len(v) if isinstance(v, str) else len(json.dumps(v)) for v in out.get("data", {}).values())
