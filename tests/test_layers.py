"""The architecture of `labkit`, kept by a test: three wings, imports only downwards, no loops.

- ground floor: `labkit.runtime` (cache folder, hub switch, device) imports nothing of labkit;
- assets and data: `labkit.assets`, `labkit.data` import only the ground floor;
- teaching modules (everything else outside `labkit/book/`) import each other, assets, data and
  the ground floor, never the machinery;
- the machinery, `labkit/book/`, may import anything.
Every import counts, including those inside functions (a lazy import is still a dependency).
"""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "labkit"
GROUND = {"labkit.runtime"}
STORES = {"labkit.assets", "labkit.data"}
MAX_LINES = 500
# Modules still being split along their seams (issue 16); each leaves this set when it is split.
PENDING_SPLIT: set[str] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def labkit_imports(path: Path, name: str) -> set[str]:
    """Every labkit module that `path` imports, resolved to a module name (not a symbol)."""
    known = modules()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names]
        else:
            continue
        found |= {t for t in targets if t == "labkit" or t.startswith("labkit.")}
    return found - {name}


def layer(name: str) -> int:
    if name in GROUND:
        return 0
    if name in STORES:
        return 1
    if name == "labkit" or name == "labkit.book" or name.startswith("labkit.book."):
        return 3
    return 2


GRAPH = {name: labkit_imports(path, name) for name, path in modules().items()}


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_imports_go_down_only(name):
    up = sorted(t for t in GRAPH[name] if layer(t) > layer(name))
    assert not up, f"{name} (layer {layer(name)}) imports higher layers: {up}"


def test_teaching_modules_never_import_the_machinery():
    offenders = {n: sorted(t for t in deps if layer(t) == 3) for n, deps in GRAPH.items() if layer(n) == 2}
    assert not {n: d for n, d in offenders.items() if d}


def test_no_import_loops():
    """Depth-first search for a cycle among labkit's modules (package __init__ re-exports excluded)."""
    graph = {n: {t for t in deps if t in GRAPH and not _is_parent(t, n)} for n, deps in GRAPH.items()}
    state: dict[str, int] = {}

    def visit(n, path):
        state[n] = 1
        for m in graph[n]:
            if state.get(m) == 1:
                raise AssertionError("import loop: " + " -> ".join(path[path.index(m):] + [m]))
            if m not in state:
                visit(m, path + [m])
        state[n] = 2

    for n in graph:
        if n not in state:
            visit(n, [n])


def _is_parent(pkg: str, mod: str) -> bool:
    """`labkit.book.runner` importing `labkit.book` is its own package's re-exports, not a loop."""
    return mod.startswith(pkg + ".")


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    assert "labkit.runtime" in GRAPH["labkit.assets"]
    assert "labkit.book.manifest" in GRAPH["labkit.book.runner"]


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_modules_are_short(name):
    if name in PENDING_SPLIT:
        pytest.skip("being split (issue 16)")
    n = len(modules()[name].read_text(encoding="utf-8").splitlines())
    assert n < MAX_LINES, f"{name} has {n} lines: split it along its seams (one idea per module)"
