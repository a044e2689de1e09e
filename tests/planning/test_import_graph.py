"""The project's modules import one another without a cycle, counting imports inside functions
too (a cycle hidden in a function is still one): each layer can be read, and loaded, alone."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
APPS = ("config", "lifecycle", "planning", "insights")


def modules() -> dict[str, tuple[Path, bool]]:
    """Every first-party module by dotted name, with its file and whether it is a package."""
    found = {}
    for app in APPS:
        for path in (REPO / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if package else parts)] = (path, package)
    return found


def _typing_only(tree: ast.AST) -> set[int]:
    """The nodes under `if TYPE_CHECKING:`, which never run."""
    return {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }


def _named(node: ast.AST, package: str, known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parents = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*parents, base] if base else parents)
    # `from x import y`: the module x.y when there is one, else the name y of the module x.
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


def imports(name: str, path: Path, package: bool, known: set[str]) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = name if package else name.rpartition(".")[0]
    skipped = _typing_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        for target in _named(node, own, known):
            while target and target not in known:
                target = target.rpartition(".")[0]
            # Importing a.b.c runs the packages a.b and a first, unless we are inside them.
            while target:
                if target in known and not (name + ".").startswith(target + "."):
                    yield target
                target = target.rpartition(".")[0]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while (member := stack.pop()) != module:
                group.append(member)
            if group:
                found.append(sorted([module, *group]))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_through_others():
    known = modules()
    graph = {name: set(imports(name, *known[name], set(known))) for name in known}

    assert cycles(graph) == []


def test_the_plan_file_sits_on_the_forms_and_services_not_under_them():
    known = modules()
    for name in ["planning.forms", "planning.services.plans", "planning.services.editing"]:
        assert not any(
            target.startswith("planning.planfile")
            for target in imports(name, *known[name], set(known))
        ), name
