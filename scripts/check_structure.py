"""Structure check: import cycles between files, files over 500 lines, functions over 100 lines.

    python scripts/check_structure.py [ROOT]        # exit 1 and a list when anything is found

Reads source with ``ast`` (nothing is imported or executed). Files are the modules of rlvr/, verifiers/
(imported as rlvr.verifiers), sandboxes/ (rlvr.sandboxes) and scripts/ (top-level modules named by their file:
a script imports its neighbours by bare name, ``from bench_report import ...``, because scripts/ is ``sys.path[0]``
when a script runs); a package is its ``__init__.py``.

What is an edge A -> B (A needs module B to be imported):
- every ``import B`` / ``from B import x`` in A, wherever it is: lazy imports inside functions count (they still
  make A need B, and a cycle through them is a cycle that merely fails later); so do imports under ``try:`` and
  ``importlib.import_module("B")`` with a literal name;
- not imports under ``if TYPE_CHECKING:`` (they never run; ``else:`` branches do count);
- ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg`` (a re-exported
  name is the package's); relative imports are resolved against A's package;
- ``import a.b.c`` is an edge to ``a.b.c`` only. Python also runs ``a/__init__.py`` and ``a/b/__init__.py``
  first, but that implicit parent-package import is not an edge: otherwise every ``from rlvr.config.options
  import opt`` would form a cycle with a ``rlvr/config/__init__.py`` that re-exports ``options``, and a
  package's ``__init__`` that assembles its own submodules (a registry filling itself) would look circular.
  The price: a real cycle that runs *through* a package's ``__init__`` re-exports is only seen when some file
  imports the package itself (``from rlvr.config import X``), which is how re-exports are meant to be used.

A cycle is reported as its strongly connected component (every file that can reach every other one) with the
edges inside it and the line of each import, so the one to cut can be chosen. Function lengths count from the
``def`` line to the last line of the body; methods and nested functions are reported on their own, under their
qualified name (``Class.method``, ``outer.<locals>.inner``), and a nested function's lines also count in the
function around it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 100
# folder -> the dotted prefix its modules are imported under ("": top-level modules, each named by its file)
PACKAGES = {"rlvr": "rlvr", "verifiers": "rlvr.verifiers", "sandboxes": "rlvr.sandboxes", "scripts": ""}


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the mapped packages under ``root``."""
    out = {}
    for folder, dotted in PACKAGES.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = list(path.relative_to(root / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([dotted, *parts] if dotted else parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _literal_import_module(node: ast.Call) -> str | None:
    """The module of ``importlib.import_module("x")`` / ``import_module("x")`` with a literal name, else None."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name != "import_module" or not node.args:
        return None
    arg = node.args[0]
    return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


def _imports(tree: ast.AST, this: str, is_package: bool):
    """(line, module, names) of every import outside ``if TYPE_CHECKING:`` blocks; relative imports resolved."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = this.split(".") if is_package else this.split(".")[:-1]
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            yield node.lineno, base, [a.name for a in node.names]
        elif isinstance(node, ast.Call) and (module := _literal_import_module(node)):
            yield node.lineno, module, []
        stack.extend(ast.iter_child_nodes(node))


def import_edges(files: dict[str, Path]) -> dict[tuple[str, str], int]:
    """(importer, imported) -> line of the first import that makes the edge, between files of ``files``."""
    edges: dict[tuple[str, str], int] = {}
    for name, path in files.items():
        for line, module, names in _imports(ast.parse(path.read_text()), name, path.name == "__init__.py"):
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in files] or [module]
            for t in targets:
                if t in files and t != name:
                    edges[(name, t)] = min(line, edges.get((name, t), line))
    return edges


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in files}
    for a, b in import_edges(files):
        graph[a].add(b)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
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
    return sorted(cycles)


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    """(qualified name, lines) of every function or method in ``path`` longer than ``limit`` lines."""
    out = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                length = child.end_lineno - child.lineno + 1
                if length > limit:
                    out.append((name, length))
                walk(child, name + ".<locals>.")
            elif isinstance(child, ast.ClassDef):
                walk(child, prefix + child.name + ".")
            else:
                walk(child, prefix)

    walk(ast.parse(path.read_text()), "")
    return out


def _describe_cycle(component: list[str], edges: dict[tuple[str, str], int], files: dict[str, Path],
                    root: Path) -> str:
    members = set(component)
    inside = sorted((a, b, line) for (a, b), line in edges.items() if a in members and b in members)
    lines = [f"import cycle: {' <-> '.join(component)}"]
    lines += [f"    {files[a].relative_to(root)}:{line} imports {b}" for a, b, line in inside]
    return "\n".join(lines)


def check(root: Path) -> list[str]:
    """Every problem found under ``root``, one string each (a cycle's string lists its edges on extra lines)."""
    files = module_files(root)
    edges = import_edges(files)
    graph = import_graph(files)
    problems = [_describe_cycle(c, edges, files, root) for c in find_cycles(graph)]
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
