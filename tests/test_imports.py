"""The house's layering, read from the source with `ast` (every import: at the top, inside
functions, under TYPE_CHECKING), from the bottom up:

1. plain rooms that know no run: svd.errors, svd.settings, svd.models, svd.schema, svd.fetch,
   svd.media, svd.archive, svd.mask, svd.outputs, the model add-ons, ...
2. svd.events (the progress events), then svd.contract (Prepared, Rendered, the Backend
   protocol), which imports only rooms below it;
3. the renderers, svd/backends/*: they import the contract and the rooms, never the run
   (svd.run) nor anything that runs one (svd.jobs, svd.api, svd.server, svd.ui, svd.cli);
4. svd.run (prepare, render, store), then what runs it: svd.remote, svd.zerogpu,
   svd.cluster, svd.jobs, svd.cli;
5. the surfaces: svd.api, svd/ui/*, and svd.server, which builds them all.

No two svd modules import each other, directly or round a loop. And no code outside
svd/backends/ asks a backend's name what it can do: it asks the backend (`supports`,
`remote`, `takes_key`, `terms`, ...).
"""

from __future__ import annotations

import ast
from pathlib import Path

SVD = Path(__file__).resolve().parent.parent / "svd"
ABOVE_RENDERERS = ("svd.run", "svd.jobs", "svd.api", "svd.server", "svd.ui", "svd.cli")
BACKEND_NAMES = {"local", "fal"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SVD.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SVD.rglob("*.py"))}


def imported(path: Path, known: dict[str, Path]) -> set[str]:
    """The svd modules `path` imports anywhere in it: `from svd.x import y` is svd.x.y when
    y is a module, else svd.x."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m == "svd" or m.startswith("svd.")} - {name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(path, known) & set(known) for name, path in known.items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import loop, as the modules round it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_is_read():
    edges = graph()
    assert "svd.contract" in edges["svd.run"]
    assert "svd.backends.local" in edges["svd.backends"]  # a lazy import counts
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle_in_svd():
    loop = cycle(graph())
    assert loop is None, "svd modules import each other round a loop: " + " -> ".join(loop)


def test_renderers_import_nothing_above_them():
    wrong = [
        f"{name} imports {dep}"
        for name, deps in graph().items()
        if name.startswith("svd.backends")
        for dep in sorted(deps)
        if any(dep == top or dep.startswith(top + ".") for top in ABOVE_RENDERERS)
    ]
    assert not wrong, "a backend reaches up (see this file's docstring): " + "; ".join(wrong)


def test_the_contract_sits_below_run_and_renderers():
    edges = graph()
    assert edges["svd.events"] == set()
    below = {"svd.events", "svd.schema", "svd.models", "svd.errors"}
    assert edges["svd.contract"] <= below, edges["svd.contract"] - below
    assert edges["svd.backends.base"] == set()


def _names_a_backend(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in BACKEND_NAMES
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_names_a_backend(e) for e in node.elts)
    return False


def test_no_code_outside_the_backends_compares_a_backend_name():
    """`x == "fal"`, `x != "local"`, `x in ("local", "fal")`, a match on them: outside
    svd/backends/ a backend is asked what it can do instead."""
    found = []
    for name, path in modules().items():
        if name == "svd.backends" or name.startswith("svd.backends."):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
            elif isinstance(node, ast.MatchValue):
                sides = [node.value]
            else:
                continue
            if any(_names_a_backend(side) for side in sides):
                found.append(f"{path.relative_to(SVD.parent)}:{node.lineno}")
    assert not found, "a backend's name compared with a string: " + ", ".join(found)


def test_no_function_in_svd_is_over_sixty_lines():
    """A function longer than a screen is two jobs: split it along its seam."""
    long = []
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if node.end_lineno - start + 1 > 60:
                    long.append(f"{path.relative_to(SVD.parent)}:{node.lineno} {node.name}")
    assert not long, "over sixty lines: " + ", ".join(long)
