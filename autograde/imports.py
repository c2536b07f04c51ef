"""Which modules a notebook's code imports (standard library only: the warm kernel server uses it at start-up)."""
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
