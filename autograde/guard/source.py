"""Source analysis of notebook cells: which modules they import, which names they bind and which builtins
they use (standard library only at import: the warm kernel server uses it at start-up)."""
import ast


def imported_modules(sources):
    """Absolute module names imported by the given code sources; code that does not parse is skipped."""
    found = set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
    return found


def bound_names(source: str) -> set[str]:
    """Top-level names a cell binds: imports, definitions, assignments (what later cells may rely on)."""
    tree = _parse(source)
    names = set()
    for node in _module_scope(tree.body if tree else []):
        targets = []
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(alias.asname or alias.name.split(".")[0] for alias in node.names if alias.name != "*")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.For)):
            targets = [node.target]
        elif isinstance(node, ast.With):
            targets = [item.optional_vars for item in node.items if item.optional_vars is not None]
        for target in targets:
            names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def used_builtins(source: str) -> set[str]:
    """Builtins a cell reads (``len``, ``isinstance``, ``AssertionError``, ...)."""
    import builtins

    tree = _parse(source)
    if tree is None:
        return set()
    return {node.id for node in ast.walk(tree)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and hasattr(builtins, node.id)}


def _module_scope(body):
    """Statements that run at module scope, including inside top-level if/for/while/with/try."""
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.For, ast.While, ast.With, ast.Try)):
            for field in ("body", "orelse", "finalbody"):
                yield from _module_scope(getattr(node, field, []))
            for handler in getattr(node, "handlers", []):
                yield from _module_scope(handler.body)


def _parse(source: str):
    try:
        return ast.parse(source)
    except SyntaxError:
        pass
    try:  # IPython syntax (magics, !commands): transform as the kernel would
        from IPython.core.inputtransformer2 import TransformerManager

        return ast.parse(TransformerManager().transform_cell(source))
    except Exception:  # noqa: BLE001
        return None
