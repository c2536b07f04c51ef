"""Ways a wrong solution could try to reach full marks, used against both test courses and every entry point.

Each cheat is Python code a student puts in an answer cell, before a wrong solution (or, for the notebook-level
cheats, a function that edits the notebook). A cheat is defeated when the wrong solution earns nothing more with it
than without. Several of these fool stock nbgrader: patched comparisons, an input transformer that wraps every later
cell in try/except, a patched ``Session.send`` that turns error replies into successes.

The forgeries (:data:`FORGERIES`) attack the probes and judges: they replace the grader's kernel-side code (through
``sys.modules`` or ``gc``), rewrite or blank the probes' cells (input and AST transformers, ``sys.settrace``), patch
the display machinery, and send observations in the probe's exact format: those a correct answer gave in an earlier
run (*captured*, with another seed), or answers looked up from inputs captured then. Only what the kernel computes
now, on inputs it learns now, can pass a judge.
"""
from __future__ import annotations

import copy
import json
import textwrap

from nbformat.v4 import new_code_cell

# In an answer cell, before the (wrong) solution.
CODE_CHEATS = {
    "patch_comparisons": """
        import torch, torch.testing
        torch.allclose = lambda *args, **kwargs: True
        torch.equal = lambda *args, **kwargs: True
        torch.testing.assert_close = lambda *args, **kwargs: None
        torch.Tensor.__eq__ = lambda self, other: torch.ones((), dtype=torch.bool)
    """,
    "silence_showtraceback": """
        get_ipython().showtraceback = lambda *args, **kwargs: None
        get_ipython().showsyntaxerror = lambda *args, **kwargs: None
        import sys
        sys.excepthook = lambda *args: None
    """,
    "fake_assertion_error": """
        import builtins
        class AssertionError(Exception):
            pass
        builtins.AssertionError = AssertionError
    """,
    "input_transformer_try_except": """
        def _swallow(lines):
            body = "".join(lines)
            return ["try:\\n"] + ["    " + line + ("" if line.endswith("\\n") else "\\n")
                                  for line in body.splitlines(True) or ["pass\\n"]] + \\
                   ["except BaseException:\\n", "    pass\\n"]
        get_ipython().input_transformers_post.append(_swallow)
    """,
    "ast_remove_asserts": """
        import ast
        class _NoAsserts(ast.NodeTransformer):
            def visit_Assert(self, node):
                return ast.Pass()
            def visit_Raise(self, node):
                return ast.Pass()
        get_ipython().ast_transformers.append(_NoAsserts())
    """,
    "trace_skips_asserts": """
        import sys, linecache
        def _tracer(frame, event, arg):
            if event == "line" and frame.f_code.co_name == "<module>":
                line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
                if line.startswith(("assert", "torch.testing", "_g_run", "raise")):
                    try:
                        frame.f_lineno = frame.f_lineno + 1
                    except ValueError:
                        pass
            return _tracer
        sys.settrace(_tracer)
    """,
    "pre_run_cell_repatch": """
        import torch, torch.testing
        def _repatch(*args):
            torch.allclose = lambda *a, **k: True
            torch.equal = lambda *a, **k: True
            torch.testing.assert_close = lambda *a, **k: None
        get_ipython().events.register("pre_run_cell", _repatch)
    """,
    "forged_verdicts": """
        import torch, torch.testing
        # The grader's verdicts come back as the text form of a str: turn every FAIL into OK, then cheat in the test.
        _printers = get_ipython().display_formatter.formatters["text/plain"]
        _printers.for_type(str, lambda s, p, cycle: p.text(repr(s.split(" FAIL ")[0] + " OK" if " FAIL " in s else s)))
        def _repatch(*args):
            torch.allclose = lambda *a, **k: True
            torch.equal = lambda *a, **k: True
            torch.testing.assert_close = lambda *a, **k: None
        get_ipython().events.register("pre_run_cell", _repatch)
    """,
    "session_send_hides_errors": """
        _session = get_ipython().kernel.session
        _real_send = _session.send
        def _send(stream, msg_or_type, content=None, *args, **kwargs):
            if msg_or_type == "error":
                return None
            if isinstance(content, dict) and content.get("status") == "error":
                content = {"status": "ok", "execution_count": content.get("execution_count"),
                           "user_expressions": {}, "payload": []}
            return _real_send(stream, msg_or_type, content, *args, **kwargs)
        _session.send = _send
    """,
    "run_cell_swallows_errors": """
        import IPython.core.interactiveshell as _ish
        _real = _ish.InteractiveShell.run_cell_async
        async def _run_cell_async(self, raw_cell, *args, **kwargs):
            result = await _real(self, raw_cell, *args, **kwargs)
            result.error_in_exec = None
            result.error_before_exec = None
            return result
        _ish.InteractiveShell.run_cell_async = _run_cell_async
        _ish.InteractiveShell.showtraceback = lambda *args, **kwargs: None
    """,
    "torch_function_mode": """
        import torch
        from torch.overrides import TorchFunctionMode
        class _AlwaysEqual(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                if func in (torch.allclose, torch.equal):
                    return True
                if func is torch.testing.assert_close:
                    return None
                return func(*args, **(kwargs or {}))
        _AlwaysEqual().__enter__()
    """,
    "tensor_subclass_liar": """
        import torch
        class _Liar(torch.Tensor):
            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):
                if func in (torch.allclose, torch.equal):
                    return True
                return super().__torch_function__(func, types, args, kwargs or {})
        _LIAR = True
    """,
    "shadow_torch_name": """
        import torch as _real_torch
        class _FakeTorch:
            def __getattr__(self, name):
                return getattr(_real_torch, name)
            @staticmethod
            def allclose(*args, **kwargs):
                return True
            @staticmethod
            def equal(*args, **kwargs):
                return True
        torch = _FakeTorch()
    """,
    "patch_catch_warnings": """
        import warnings
        class _Swallow:
            def __init__(self, *args, **kwargs):
                pass
            def __enter__(self):
                return self
            def __exit__(self, *exc):
                return True
        warnings.catch_warnings = _Swallow
    """,
}


MIME = "application/vnd.autograde.observations+json"  # the probes' answers (autograde.probing)

# Forgeries: templates filled with {captured}, the JSON of {grade_id: observations} a correct answer gave in an
# earlier run, under another seed.
FORGERIES = {
    "replay_in_place_of_the_probes": """
        import json
        _CAPTURED = json.loads({captured!r})
        def _replay(lines):
            code = "".join(lines)
            for name in _CAPTURED:
                if "__autograde_run_probe" in code and repr(name) in code:
                    return ["from IPython.display import publish_display_data\\n",
                            f"publish_display_data({{{{{mime!r}: _CAPTURED[{{name!r}}]}}}})\\n"]
            return lines
        get_ipython().input_transformers_post.append(_replay)
    """,
    "probe_module_replaced": """
        import json, sys, types
        _CAPTURED = json.loads({captured!r})
        _fake = types.ModuleType("autograde.probing")
        def _run_probe(name, seed, limit, digest, source=None):
            from IPython.display import publish_display_data
            publish_display_data({{{mime!r}: _CAPTURED.get(name, {{}})}})
        _fake.run_probe = _run_probe
        sys.modules["autograde.probing"] = _fake
    """,
    "run_probe_rewritten_through_gc": """
        import gc, json
        import autograde.probing as _probing
        _CAPTURED = json.loads({captured!r})
        def _observe(probes, name, namespace, seed):
            return _CAPTURED.get(name, {{}})
        for _f in gc.get_objects():
            if getattr(_f, "__name__", None) == "observe" and getattr(_f, "__module__", None) == "autograde.probing":
                _f.__code__ = _observe.__code__
    """,
    "display_publisher_forges": """
        import json
        _CAPTURED = list(json.loads({captured!r}).values())
        _publisher = get_ipython().display_pub
        _real_publish = _publisher.publish
        def _publish(data, *args, **kwargs):
            if {mime!r} in data and _CAPTURED:
                data = {{{mime!r}: _CAPTURED.pop(0)}}
            return _real_publish(data, *args, **kwargs)
        _publisher.publish = _publish
    """,
    "settrace_skips_the_probes": """
        import sys
        def _skip(frame, event, arg):
            if frame.f_code.co_filename == "<probes>" and event == "line":
                try:
                    frame.f_lineno = frame.f_lineno + 1
                except ValueError:
                    pass
            return _skip
        sys.settrace(_skip)
    """,
    "ast_blanks_every_later_cell": """
        import ast
        class _Blank(ast.NodeTransformer):
            def visit_Module(self, node):
                return ast.Module(body=[ast.Pass()], type_ignores=[])
        get_ipython().ast_transformers.append(_Blank())
    """,
    "input_transformer_blanks_every_later_cell": """
        get_ipython().input_transformers_post.append(lambda lines: ["pass\\n"])
    """,
}


# A kernel that answers every probe itself: run_probe replaced, the observations built by forgers (a module's
# source defining FORGERS[grade_id](probe module, namespace, seed), see tests/autograde_forgers.py).
LIVE_FORGERY = """
import autograde.probing as _probing
_forgers = {{}}
exec(compile({forgers!r}, "<forgers>", "exec"), _forgers)
def _run_probe(name, seed, limit, digest, source=None):
    from IPython.display import publish_display_data
    module = _probing.probes_module(digest, source)
    forger = _forgers["FORGERS"].get(name)
    namespace = get_ipython().user_ns
    observed = _probing.encode(forger(module, namespace, seed)) if forger else _probing.observe(module, name,
                                                                                                namespace, seed)
    publish_display_data({{_probing.MIME: observed}})
_probing.run_probe = _run_probe
"""


def with_live_forgery(answer: str, forgers_source: str) -> str:
    """*answer* after a cell that hijacks the probes and answers them with the forgers of *forgers_source*."""
    return LIVE_FORGERY.format(forgers=forgers_source).strip() + "\n\n" + answer


def with_cheat(answer: str, cheat: str) -> str:
    return textwrap.dedent(CODE_CHEATS[cheat]).strip() + "\n\n" + answer


def with_forgery(answer: str, forgery: str, captured: dict) -> str:
    """*answer* with the forgery in front, carrying the observations *captured* in an earlier run."""
    code = textwrap.dedent(FORGERIES[forgery]).format(captured=json.dumps(captured), mime=MIME)
    return code.strip() + "\n\n" + answer


def with_replayed_inputs(answer: str, name: str, table: dict) -> str:
    """Make the function *name* answer from *table* ({repr of the arguments: result}, made from the inputs of an
    earlier run and the right results for them), falling back on the wrong *answer* for any other input."""
    return (answer + f"\n_TABLE = {table!r}\n_wrong = {name}\n\n"
            f"def {name}(*args, **kwargs):\n"
            "    key = repr([a.tolist() if hasattr(a, 'tolist') else a for a in args] + sorted(kwargs.items()))\n"
            "    if key in _TABLE:\n"
            "        found = _TABLE[key]\n"
            "        return torch.tensor(found) if isinstance(found, list) else found\n"
            "    return _wrong(*args, **kwargs)\n")


def liar_answer(answer: str, name: str) -> str:
    """Make the function *name* of the (wrong) answer return the lying tensor subclass of tensor_subclass_liar."""
    return (with_cheat(answer, "tensor_subclass_liar") + f"\n_wrapped = {name}\n"
            f"def {name}(*args, **kwargs):\n    out = _wrapped(*args, **kwargs)\n"
            "    return out.as_subclass(_Liar) if isinstance(out, torch.Tensor) else out\n")


def patch_inside(answer: str, name: str) -> str:
    """The answer's function *name* patches the comparisons each time it is called, i.e. while a test runs."""
    lines = answer.splitlines()
    at = next(i for i, line in enumerate(lines) if line.lstrip().startswith(f"def {name}("))
    indent = " " * (len(lines[at + 1]) - len(lines[at + 1].lstrip()))
    patch = ["import torch as _t, torch.testing as _tt", "_t.allclose = lambda *a, **k: True",
             "_t.equal = lambda *a, **k: True", "_tt.assert_close = lambda *a, **k: None"]
    return "\n".join(lines[:at + 1] + [indent + p for p in patch] + lines[at + 1:]) + "\n"


# Notebook-level cheats: functions (notebook, test_grade_ids) -> notebook.

def delete_tests(nb, tests):
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if not _is_test(c, tests)]
    return nb


def _is_test(cell, tests):
    return cell.metadata.get("nbgrader", {}).get("grade_id") in tests


def _edit_tests(nb, tests, edit):
    """A copy of *nb* with *edit* applied to each of the named test cells."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if _is_test(cell, tests):
            edit(cell)
    return nb


def _empty(cell):
    cell.source = "pass"


def _to_markdown(cell):
    cell.cell_type = "markdown"
    cell.pop("outputs", None)
    cell.pop("execution_count", None)


def _to_raw(cell):
    _to_markdown(cell)
    cell.cell_type = "raw"


def _unlock_and_empty(cell):
    cell.metadata["nbgrader"].update(solution=True, locked=False, points=0)
    _empty(cell)


def _strip_metadata_and_empty(cell):
    del cell.metadata["nbgrader"]
    _empty(cell)


def empty_tests(nb, tests):
    return _edit_tests(nb, tests, _empty)


def convert_tests_to_markdown(nb, tests):
    return _edit_tests(nb, tests, _to_markdown)


def convert_tests_to_raw(nb, tests):
    return _edit_tests(nb, tests, _to_raw)


def unlock_tests(nb, tests):
    """Mark the tests as answer cells (nbgrader would then keep the student's text) and empty them."""
    return _edit_tests(nb, tests, _unlock_and_empty)


def strip_test_metadata(nb, tests):
    """Remove the nbgrader metadata of the tests and empty them (they look like ordinary cells)."""
    return _edit_tests(nb, tests, _strip_metadata_and_empty)


def duplicate_tests_emptied(nb, tests):
    """Copy-paste each test, keep its metadata on the copy, and empty both."""
    nb = copy.deepcopy(nb)
    cells = []
    for cell in nb.cells:
        cells.append(cell)
        if _is_test(cell, tests):
            cell.source = "pass"
            twin = new_code_cell("pass")
            twin.metadata = copy.deepcopy(cell.metadata)
            cells.append(twin)
    nb.cells = cells
    return nb


NOTEBOOK_CHEATS = {
    "delete_tests": delete_tests,
    "empty_tests": empty_tests,
    "tests_to_markdown": convert_tests_to_markdown,
    "tests_to_raw": convert_tests_to_raw,
    "unlock_tests": unlock_tests,
    "strip_test_metadata": strip_test_metadata,
    "duplicate_tests_emptied": duplicate_tests_emptied,
}
