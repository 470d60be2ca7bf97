"""The package stays laid out by the data flow: no import cycle (imports inside functions count), no private name
imported across modules, modules of at most 350 lines, functions of at most 60, trainer.py at most 300."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "hf_aft"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, names) for every import of the package, wherever it stands in the file."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if target.startswith("hf_aft"):
                for alias in node.names:  # `from . import x` may import a module
                    sub = f"{target}.{alias.name}"
                    found.append((sub if (PACKAGE.parent / sub.replace(".", "/")).exists() or
                                  (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists() else target,
                                  [alias.name]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.startswith("hf_aft")]
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): {target for target, _ in imports_of(p)} - {module_name(p)} for p in PACKAGE.rglob("*.py")}


def test_no_import_cycles():
    edges, state, cycles = graph(), {}, []

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target in edges and target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_no_private_names_across_modules():
    private = [(module_name(p), target, name) for p in PACKAGE.rglob("*.py") for target, names in imports_of(p)
               for name in names if name.startswith("_") and name != "__version__"]
    assert not private, private


def test_small_modules_and_functions():
    for path in PACKAGE.rglob("*.py"):
        lines = len(path.read_text().splitlines())
        assert lines <= (300 if path.name == "trainer.py" else 350), (path.name, lines)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 60, (path.name, node.name, length)
