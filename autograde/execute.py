"""nbgrader's Execute preprocessor, hardened for grading students' notebooks (configured in nbgrader_config.py).

:class:`GuardedExecute` subclasses :class:`nbgrader.preprocessors.Execute` (itself nbclient) and
changes what a hostile or broken notebook can do to the grading:

* **An isolated kernel.** Its kernels come from :class:`autograde.sandbox.kernel.IsolatedKernelManager`: the OS
  keeps the notebook away from the course, the gradebooks, other submissions and the network.
* **Tamper guard.** The kernel-side guard (:mod:`autograde.guard.in_kernel`) is installed by a first
  cell the grader adds before the notebook's own, and its checks run before and after every instructor
  cell. They ride on the cell before them as ``user_expressions``, which the kernel evaluates right after
  that cell and returns in its reply, so they cost no message round trip; after a cell that raised (the
  kernel then skips them) they run in a short cell of their own. A graded test cell only keeps its result
  when both of its checks ran and reported no tampering; otherwise the grader adds an error to it, which
  nbgrader scores 0. The grader's cells are removed again before nbgrader saves grades and feedback.
* **Timeouts that hold.** A cell that runs past the timeout is interrupted (SIGINT) as nbgrader
  does; if the kernel ignores the interrupt, nbgrader would give up on the whole class with
  "kernel unresponsive": here the kernel and everything it started are killed, and the remaining
  test cells are marked as not run (score 0).
* **Dead kernels** (``os._exit``, a segfault, the memory watchdog) end the run the same way, with
  the reason the sandbox supervisor recorded.
* **Output caps.** A cell's printed output and displays stop being collected after
  ``max_output_bytes`` (one marker per stream says so, keeping stderr's meaning for nbgrader);
  errors and ``execute_result`` values, which decide grades, are always kept (truncated if huge).
* **Never credit what did not run.** nbgrader gives full marks to a test cell without outputs;
  every test cell that was not executed to the end gets an explicit error instead.

What it protects is read from the notebook itself (after nbgrader's OverwriteCells put the instructor's cells
back): the names the instructor's locked cells bind, the builtins they use and the modules they import. What it
noticed goes into the notebook's ``autograde`` metadata (:func:`autograde.preprocessors.report`).
"""
from __future__ import annotations

import ast
import functools
import json
import re
import secrets
from pathlib import Path

from jupyter_core.utils import ensure_async, run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_output
from nbgrader import utils
from nbgrader.preprocessors import Execute
from traitlets import Bool, Integer, Unicode

from . import status as st
from .guard.source import bound_names, imported_modules, used_builtins
from .preprocessors import add_to_report, report
from .sandbox.kernel import IsolatedKernelManager
from .sandbox.supervisor import MEMORY_LIMIT, TOO_MANY_PROCESSES

GUARD_SOURCE = (Path(__file__).parent / "guard" / "in_kernel.py").read_text()
GUARD_ROLE = "autograde_guard"

# Builtins a test cell is likely to call; names the test cells use are added per assignment.
CORE_BUILTINS = sorted({
    "abs", "all", "any", "bool", "callable", "dict", "enumerate", "float", "getattr", "hasattr", "int",
    "isinstance", "issubclass", "iter", "len", "list", "map", "max", "min", "next", "print", "range",
    "repr", "round", "set", "sorted", "str", "sum", "tuple", "type", "zip", "AssertionError",
    "Exception", "TypeError", "ValueError", "RuntimeError", "NotImplementedError", "__import__",
})


@functools.lru_cache(maxsize=1024)
def analyse_source(source: str) -> tuple[list[str], frozenset, frozenset]:
    """The names a cell binds, the builtins it uses, the modules it imports. The same instructor cells come back
    in every submission: the grading tool analyses them once, before it forks its workers."""
    return sorted(bound_names(source)), frozenset(used_builtins(source)), frozenset(imported_modules([source]))


def _guard_cell(code: str, role: str, **extra) -> NotebookNode:
    cell = new_code_cell(code)
    cell.metadata[GUARD_ROLE] = dict(role=role, **extra)
    return cell


def _role(cell) -> str | None:
    return cell.metadata.get(GUARD_ROLE, {}).get("role")


def _next_checks(cells, index) -> list[dict]:
    """The calls of the checks cell right after *index*, if there is one."""
    following = cells[index + 1] if index + 1 < len(cells) else None
    return following.metadata[GUARD_ROLE]["calls"] if following is not None and _role(following) == "checks" else []


def _literal(text):
    """The value a guard call returned, from the kernel's ``repr`` of it; None when it is not a plain string."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, str) else None


def _error(ename: str, evalue: str) -> NotebookNode:
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


class GuardedExecute(Execute):
    """Execute with a tamper guard, hard timeouts, output caps (see the module docstring)."""

    guard = Bool(True, help="Install the tamper guard around instructor cells").tag(config=True)
    guard_timeout = Integer(30, help="Seconds a grader cell may take").tag(config=True)
    max_output_bytes = Integer(200_000, help="Output collected per cell; -1 for no limit").tag(config=True)
    max_error_chars = Integer(20_000, help="Longest error message kept").tag(config=True)
    shutdown_kernel = Unicode("immediate", help="the supervisor kills the kernel and its processes at once").tag(
        config=True)

    def __init__(self, *args, **kwargs):
        # nbgrader's Execute passes its kernel manager class as an argument, which no configuration overrides.
        kwargs.setdefault("kernel_manager_class", IsolatedKernelManager)
        super().__init__(*args, **kwargs)

    def _analyse(self, cells) -> None:
        """What the guard protects, from the instructor's code cells (the locked ones: tests, hidden tests
        included, and given code): the names each binds, the builtins they use, the modules they import (less
        those whose state changes as they are used: pyplot's current figure)."""
        instructor = [cell for cell in cells if cell.cell_type == "code" and utils.is_locked(cell)
                      and not utils.is_solution(cell)]
        self.pins, builtins, modules = {}, set(), set()
        for cell in instructor:
            names, used, imported = analyse_source(cell.source)
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id:
                self.pins[grade_id] = names
                builtins |= used
            modules |= imported
        self.builtin_names = sorted(builtins)
        self.protected_modules = sorted(name for name in modules
                                        if name.split(".")[0] not in ("matplotlib", "mpl_toolkits", "seaborn"))

    @staticmethod
    def _new_report() -> dict:
        return {"statuses": set(), "notes": [], "tampering": []}

    # -- planning ------------------------------------------------------------------------------
    def _plan(self, cells):
        """The cells to run: the notebook's, the grader's first cell, and between notebook cells a cell of the
        guard's checks (what must run after the cell before it and before the cell after it). A checks cell's
        calls ride on the cell before it (:meth:`_run_checks`); it only runs itself when they did not."""
        prefix = "AG" + secrets.token_hex(6)
        module = "_autograde_guard_" + secrets.token_hex(6)
        self._prefix = prefix
        ref = f"__import__('sys').modules[{module!r}]"
        plan, pending = [], []

        def call(role, target, expr, token=None):
            pending.append(dict(key=f"{role}-{target}", role=role, target=target, token=token, expr=f"{ref}.{expr}"))

        def checks():
            if pending:
                plan.append(_guard_cell("pass", "checks", calls=list(pending)))
                pending.clear()

        if self.guard:
            plan.append(_guard_cell(
                "def __autograde_bootstrap(source, name, prefix, modules):\n"
                "    import sys, types\n"
                "    module = types.ModuleType(name)\n"
                "    sys.modules[name] = module\n"
                "    exec(compile(source, '<autograde guard>', 'exec'), module.__dict__)\n"
                "    module.install(get_ipython(), prefix, modules)\n"
                "    print(prefix + '-READY', flush=True)\n"
                f"__autograde_bootstrap({GUARD_SOURCE!r}, {module!r}, {prefix!r}, {list(self.protected_modules)!r})\n"
                "del __autograde_bootstrap\n", "preamble"))
        builtins = sorted(set(CORE_BUILTINS) | set(self.builtin_names))
        for index, cell in enumerate(cells):
            instructor = (cell.cell_type == "code" and utils.is_locked(cell) and not utils.is_solution(cell))
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            names = sorted(self.pins.get(grade_id, [])) if grade_id else []
            if self.guard and instructor and utils.is_grade(cell):
                token = secrets.token_hex(8)
                call("before", index, f"before({token!r}, {builtins!r})", token)
                checks()
                plan.append(cell)
                call("after", index, f"after({token!r}, {names!r})", token)
                call("record", index, f"record({names!r})")
            elif self.guard and instructor:
                # Setup cells: undo patches first, so that what they bind (torch, helpers) is genuine.
                call("restore", index, "restore()")
                checks()
                plan.append(cell)
                call("record", index, f"record({names!r})")
            else:
                checks()
                plan.append(cell)
        checks()
        return plan

    # -- nbclient hooks --------------------------------------------------------------------------
    def _get_timeout(self, cell):
        if cell is not None and GUARD_ROLE in cell.get("metadata", {}):
            return self.guard_timeout
        return super()._get_timeout(cell)

    async def _async_handle_timeout(self, timeout, cell=None):
        self.report["statuses"].add(st.TIMED_OUT)
        self.report["notes"].append(f"a cell ran longer than {timeout} s and was interrupted")
        return await super()._async_handle_timeout(timeout, cell)

    def output(self, outs, msg, display_id, cell_index):
        """Collect an output, within the per-cell budget; errors and results always get through."""
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

    # -- the run -------------------------------------------------------------------------------
    def preprocess(self, nb, resources=None, km=None):
        self.report = self._new_report()
        original = list(nb.cells)
        for cell in original:  # only the grader's own cells may say they are the grader's
            cell.metadata.pop(GUARD_ROLE, None)
        self._analyse(original)
        plan = self._plan(original)
        nb.cells = plan
        NotebookClient.__init__(self, nb, km)  # as ExecutePreprocessor.preprocess does
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        self._output_bytes, self._truncated = {}, set()
        self._ran = {}  # id(cell) -> "ok", "timed out" or "died": how far each cell of the plan got
        self._checks = {}  # a guard call's key -> what it returned (None: it raised or its reply lost it)
        self._riders, self._replied = {}, set()  # the calls sent with the next cell; id(cell) of cells answered
        try:
            run_sync(self._async_run)()
        finally:
            nb.cells = self._verdicts(plan, original)
            self._write_report(nb)
        return nb, self.resources

    def _write_report(self, nb) -> None:
        found = self.report
        for status in sorted(found["statuses"]):
            add_to_report(nb, status=status)
        for note in found["notes"]:
            add_to_report(nb, note=note)
        if found["tampering"]:
            add_to_report(nb, note="tampering: " + "; ".join(found["tampering"]))
        report(nb)["kernel"] = {key: found[key] for key in ("warm", "kernel_cpu_s") if key in found}

    async def _async_run(self):
        stopped, self._manager = None, None
        try:
            async with self.async_setup_kernel():
                self._manager = self.km  # nbclient forgets it when the kernel is shut down
                self.kc.execute = functools.partial(self._execute_with_checks, self.kc.execute)
                msg_id = await ensure_async(self.kc.kernel_info())
                info = await self.async_wait_for_reply(msg_id)
                if info is not None and "language_info" in info["content"]:
                    self.nb.metadata["language_info"] = info["content"]["language_info"]
                for index, cell in enumerate(self.nb.cells):
                    if stopped:
                        break
                    stopped = await self._run_checks(cell, index) if _role(cell) == "checks" else \
                        await self._run_cell(cell, index, _next_checks(self.nb.cells, index))
        except DeadKernelError:
            stopped = stopped or self._kernel_reason()
        if stopped:
            self.report["stopped"] = stopped
        if self._manager is not None:
            self.report["warm"] = bool(getattr(self._manager, "started_warm", False))
            self.report["kernel_cpu_s"] = self._stop_report().get("kernel_cpu_s")

    async def _run_checks(self, cell, index):
        """Run a checks cell's calls that did not come back with the reply of the cell before it."""
        missing = [call for call in cell.metadata[GUARD_ROLE]["calls"] if call["key"] not in self._checks]
        if not missing:
            self._ran[id(cell)] = "ok"
            return None
        return await self._run_cell(cell, index, missing)

    async def _run_cell(self, cell, index, calls=()):
        """Run *cell*; the guard's *calls* ride on it as ``user_expressions``, whose results
        :meth:`_collect_checks` keeps."""
        self._riders = {call["key"]: call["expr"] for call in calls}
        guard = GUARD_ROLE in cell.metadata
        try:
            await self.async_execute_cell(cell, index, store_history=not guard)
        except CellTimeoutError:
            self.report["statuses"].add(st.TIMED_OUT)
            reason = f"a cell ran past the {self._get_timeout(cell)} s limit and ignored the interrupt"
            self.report["notes"].append(reason)
            if not any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
                cell.setdefault("outputs", []).append(_error("CellTimeoutError", reason))
            self._ran[id(cell)] = "timed out"
            try:
                await ensure_async(self.km.shutdown_kernel(now=True))
            except Exception:  # noqa: BLE001 - it may already be gone
                pass
            return st.TIMED_OUT, reason
        except DeadKernelError:
            reason = self._kernel_reason()
            cell.setdefault("outputs", []).append(_error("KernelDied", reason[1]))
            self._ran[id(cell)] = "died"
            return reason
        finally:
            self._riders = {}  # a cell nbclient skips (an empty one, a tagged one) sends nothing
        if id(cell) in self._replied:  # never credit a cell the kernel did not answer for
            self._ran[id(cell)] = "ok"
        return None

    def _execute_with_checks(self, execute, code, *args, **kwargs):
        """The kernel client's ``execute``, with the guard's calls as ``user_expressions``."""
        kwargs["user_expressions"] = self._riders
        return execute(code, *args, **kwargs)

    def on_cell_executed(self, **kwargs):
        super().on_cell_executed(**kwargs)
        self._replied.add(id(kwargs.get("cell")))
        self._collect_checks(kwargs.get("execute_reply"))

    def _collect_checks(self, execute_reply) -> None:
        """Keep what the guard's calls returned. A kernel evaluates ``user_expressions`` after every cell that
        raised no error: a reply that says "ok" without them was forged on its way (a patched Session)."""
        content = (execute_reply or {}).get("content") or {}
        results = content.get("user_expressions") or {}
        for key, result in results.items():  # a call that raised counts as not run as written: never retried
            ok = isinstance(result, dict) and result.get("status") == "ok"
            self._checks[key] = _literal(result.get("data", {}).get("text/plain")) if ok else None
        lost = sorted(key for key in self._riders if key not in results) if content.get("status") == "ok" else []
        if lost:
            self.report["statuses"].add(st.TAMPERING)
            if "a reply from the kernel lost the grader's checks" not in self.report["tampering"]:
                self.report["tampering"].append("a reply from the kernel lost the grader's checks")
            self._checks.update(dict.fromkeys(lost))

    def _kernel_reason(self):
        why = self._stop_report()
        reason = why.get("reason")
        if reason == MEMORY_LIMIT:
            return st.MEMORY, f"the notebook used more than {why.get('limit_mb', '?')} MB of memory and was stopped"
        if reason == TOO_MANY_PROCESSES:
            return st.PROCESSES, f"the notebook started more than {why.get('limit', '?')} processes and was stopped"
        if why.get("signal"):
            return st.KERNEL_DIED, f"the kernel died (signal {why['signal']})"
        return st.KERNEL_DIED, "the kernel died (the notebook's code ended the Python process)"

    def _stop_report(self) -> dict:
        provisioner = getattr(self._manager, "provisioner", None)
        return provisioner.stop_reason() if hasattr(provisioner, "stop_reason") else {}

    # -- verdicts --------------------------------------------------------------------------------
    def _verdicts(self, plan, original):
        """Turn what the guard's calls returned into the notebook's cells' outputs; drop the grader's cells."""
        report = self.report
        stopped = report.get("stopped")
        if stopped:
            report["statuses"].add(stopped[0])
            report["notes"].append(stopped[1])
        self._check_preamble(plan, stopped)
        returned = {(call["role"], call["target"]): (call["token"], self._checks.get(call["key"]))
                    for cell in plan if _role(cell) == "checks" for call in cell.metadata[GUARD_ROLE]["calls"]}
        for index, cell in enumerate(original):
            ran = self._ran.get(id(cell))
            if cell.cell_type != "code" or not utils.is_grade(cell) or utils.is_solution(cell):
                continue
            if ran is None:
                why = stopped[1] if stopped else "it was not executed"
                cell.setdefault("outputs", []).append(_error("NotRun", f"this test did not run: {why}"))
                continue
            if ran != "ok" or not self.guard:
                continue
            problems = self._check_guards(returned, index)
            if problems:
                report["statuses"].add(st.TAMPERING)
                report["tampering"].append(f"{cell.metadata['nbgrader']['grade_id']}: {problems}")
                cell.setdefault("outputs", []).append(_error(
                    "IntegrityError", f"the grader could not trust this test's result: {problems}"))
        if st.MEMORY not in report["statuses"] and any(
                out.get("output_type") == "error" and (
                    out.get("ename") == "MemoryError" or "can't allocate memory" in str(out.get("evalue", "")))
                for output_cell in original for out in output_cell.get("outputs", [])):
            report["statuses"].add(st.MEMORY)
            report["notes"].append("the notebook tried to use more memory than allowed (MemoryError)")
        return original

    def _check_preamble(self, plan, stopped) -> None:
        """The grader's first cell runs before any of the student's code: failing there is the grader's problem."""
        if not self.guard:
            return
        text = _stdout(plan[0])
        if f"{self._prefix}-READY" not in text:
            errors = [f"{o.get('ename')}: {o.get('evalue')}" for o in plan[0].get("outputs", [])
                      if o.get("output_type") == "error"]
            why = errors or (stopped[1:] if stopped else text[-500:])
            raise RuntimeError(f"the grader's first cell failed, before any of the notebook ran: {why}")

    def _check_guards(self, returned, index):
        token, text = returned.get(("before", index), (None, None))
        match = re.fullmatch(rf"{self._prefix}-BEFORE {token} ?(.*)", text or "")
        if not match:
            return "the grader's check before it did not run as written"
        undone = [item for item in match.group(1).strip().split("|") if item]
        if undone:
            self.report["statuses"].add(st.TAMPERING)
            note = "undone before a test: " + ", ".join(sorted(set(undone))[:12])
            if note not in self.report["tampering"]:
                self.report["tampering"].append(note)
        token, text = returned.get(("after", index), (None, None))
        match = re.fullmatch(rf"{self._prefix}-AFTER {token} (OK|FAIL (.*))", text or "")
        if not match:
            return "the grader's check after it did not run as written"
        if match.group(1) != "OK":
            return "changed while the test ran: " + ", ".join(sorted(set(match.group(2).split("|")))[:12])
        return None


def _size(out) -> int:
    if out.get("output_type") == "stream":
        return len(out.get("text", ""))
    return sum(len(v) if isinstance(v, str) else len(json.dumps(v)) for v in out.get("data", {}).values())

