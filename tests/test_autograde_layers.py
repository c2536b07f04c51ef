"""The grader's layers (autograde/__init__.py says what each is for): every module of autograde/ sits in one, and
imports only from its own layer or the ones before it, with no cycle anywhere. Imports inside functions count as
much as those at the top: moving an import into a function must not be a way around the order."""
import ast
from collections import defaultdict
from pathlib import Path

import autograde

PACKAGE = Path(autograde.__file__).parent

# From the bottom up: each layer may use the ones above it in this list, never those below.
LAYERS = [
    ("core", ["autograde", "status", "results", "safezip"]),
    ("sandbox", ["sandbox", "sandbox.linux", "sandbox.user", "sandbox.supervisor", "sandbox.environment",
                 "sandbox.connection", "sandbox.bwrap", "sandbox.kernel", "sandbox.zygote", "sandbox.container"]),
    ("nbgrader plugins", ["probing", "judging", "preprocessors", "sanitize", "feedback", "execute", "late"]),
    ("course and template", ["course"]),
    ("intake", ["lms", "inputs", "roster"]),
    ("publishing", ["formgrader", "exports", "similarity"]),
    ("pipeline", ["options", "parts", "worker", "scheduler", "run"]),
    ("deployment", ["shards", "slurm", "gradescope"]),
    ("command line", ["cli", "__main__"]),
]
LAYER_OF = {("autograde" if name == "autograde" else f"autograde.{name}"): index
            for index, (_, names) in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("autograde", *path.relative_to(PACKAGE).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules) -> set[str]:
    """The autograde modules *name* imports, anywhere in its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found |= {c for c in candidates if c in modules and c != name}
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_every_module_has_a_layer():
    modules = set(_modules())
    assert modules == set(LAYER_OF), f"not placed: {sorted(modules - set(LAYER_OF))}; " \
                                     f"gone: {sorted(set(LAYER_OF) - modules)}"


def test_no_module_imports_from_a_later_layer():
    upward = [f"{name} ({LAYERS[LAYER_OF[name]][0]}) imports {target} ({LAYERS[LAYER_OF[target]][0]})"
              for name, targets in _graph().items() for target in sorted(targets)
              if LAYER_OF[target] > LAYER_OF[name]]
    assert upward == []


def test_no_import_cycle():
    graph, state, cycles = _graph(), defaultdict(int), []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1  # on the current path
        for target in sorted(graph[name]):
            if state[target] == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif state[target] == 0:
                visit(target, path + [target])
        state[name] = 2

    for name in sorted(graph):
        if state[name] == 0:
            visit(name, [name])
    assert cycles == []


def test_the_checks_see_imports_inside_functions(tmp_path):
    """The parser finds a relative import hidden in a function, so the checks above cannot pass vacuously."""
    (tmp_path / "pkg").mkdir()
    module = tmp_path / "pkg" / "low.py"
    module.write_text("def f():\n    from .high import thing\n    from . import other\n")
    found = _imports("pkg.low", module, {"pkg.high", "pkg.other", "pkg.low"})
    assert found == {"pkg.high", "pkg.other"}
    assert _graph()["autograde.cli"] >= {"autograde.run", "autograde.options"}
