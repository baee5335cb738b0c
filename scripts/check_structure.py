"""Structure check: import cycles between files, files over 500 lines, functions over 100 lines.

    python scripts/check_structure.py [ROOT]        # exit 1 and a list when anything is found

Reads source with ``ast`` (nothing is imported). Files are modules of rlvr/, verifiers/ (imported as
rlvr.verifiers) and sandboxes/ (rlvr.sandboxes). An edge A -> B is every import in A that names module B, lazy
imports inside functions included (they still make A need B); imports under ``if TYPE_CHECKING:`` are not
edges. ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``. The implicit
import of a parent package's ``__init__.py`` is not an edge: otherwise every ``from rlvr.config.options import
opt`` would form a cycle with a ``rlvr/config/__init__.py`` that re-exports ``options``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 100
PACKAGES = {"rlvr": "rlvr", "verifiers": "rlvr.verifiers", "sandboxes": "rlvr.sandboxes"}


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the mapped packages under ``root``."""
    out = {}
    for folder, dotted in PACKAGES.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = list(path.relative_to(root / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([dotted, *parts])] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, this: str, is_package: bool):
    """(module, names) of every import outside ``if TYPE_CHECKING:`` blocks; relative imports resolved."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = this.split(".") if is_package else this.split(".")[:-1]
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            yield base, [a.name for a in node.names]
        stack.extend(ast.iter_child_nodes(node))


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        edges = set()
        for module, names in _imports(ast.parse(path.read_text()), name, path.name == "__init__.py"):
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in files] or [module]
            edges.update(t for t in targets if t in files and t != name)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                out.append((node.name, length))
    return out


def check(root: Path) -> list[str]:
    files = module_files(root)
    problems = [f"import cycle: {' <-> '.join(c)}" for c in find_cycles(import_graph(files))]
    for name, path in sorted(files.items()):
        lines = len(path.read_text().splitlines())
        if lines > MAX_FILE_LINES:
            problems.append(f"{path.relative_to(root)}: {lines} lines (> {MAX_FILE_LINES})")
        for function, length in long_functions(path):
            problems.append(f"{path.relative_to(root)}: function {function} is {length} lines (> {MAX_FUNCTION_LINES})")
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parents[1]
    problems = check(root)
    for p in problems:
        print(p)
    print(f"{len(problems)} structure problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
