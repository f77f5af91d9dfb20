"""The house rules, read from the source: each part of shelf/ imports only the parts its `MAY_IMPORT` names (and
the plain modules at shelf/'s top level), no import circles in shelf/ or benchmarks/, no torch where reports and
storage run, and modules small enough to read."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("ingest", "storage", "analytics", "recognition", "serving")
ENTRY_POINT = "shelf.__main__"  # `python -m shelf` starts the CLI: the one top-level module that imports a part
TORCH_FREE_PARTS = ("ingest", "storage", "analytics")
MAX_LINES, MAX_TOP_LEVEL_MODULES = 600, 8


def modules(package: str) -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path) -> list[tuple[str, int]]:
    """Every module `path` imports, at any depth (inside functions and TYPE_CHECKING blocks too), absolute."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import; Shelf spells imports out"
            found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def graph(package: str) -> dict[str, set[tuple[str, int]]]:
    """Module → the modules of the same package it imports (`from a import b` counts as a.b when b is a module)."""
    known = modules(package)
    edges = {}
    for name, path in known.items():
        edges[name] = set()
        for target, line in imports(path):
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges[name].add((target, line))
    return edges


def part_of(module: str) -> str:
    """'shelf.storage.store' → 'storage'; a module at shelf/'s top level → 'core'."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 and pieces[1] in PARTS else "core"


def declared_rules() -> dict[str, tuple[str, ...]]:
    """Each part's MAY_IMPORT, read from its __init__.py without importing it."""
    rules = {}
    for part in PARTS:
        tree = ast.parse((ROOT / "shelf" / part / "__init__.py").read_text(encoding="utf-8"))
        values = [node.value for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                  and any(getattr(t, "id", None) == "MAY_IMPORT"
                          for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))]
        assert len(values) == 1, f"shelf/{part}/__init__.py must say once which parts it may import (MAY_IMPORT)"
        rules[part] = ast.literal_eval(values[0])
    return rules


def layering_problems(edges: dict[str, set[tuple[str, int]]], rules: dict[str, tuple[str, ...]]) -> list[str]:
    problems = []
    for module, targets in sorted(edges.items()):
        for target, line in sorted(targets):
            source, dest = part_of(module), part_of(target)
            allowed = dest in ("core", source) or dest in rules.get(source, ()) or module == ENTRY_POINT
            if not allowed:
                problems.append(f"{module}:{line} ({source}) imports {target} ({dest}); "
                                f"{source} may import only {', '.join(('core',) + rules.get(source, ()))}")
    return problems


def cycles(edges: dict[str, set[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a circle of imports."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target, _ in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while (member := stack.pop()) != node:
                on_stack.discard(member)
                component.append(member)
            on_stack.discard(node)
            if component:
                found.append(sorted(component + [node]))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_each_part_imports_only_the_parts_below_it():
    assert layering_problems(graph("shelf"), declared_rules()) == []


def test_the_declared_rules_point_one_way():
    """A part never lists a part that lists it back, directly or through others: the rules themselves are a ladder."""
    rules = declared_rules()
    assert cycles({part: {(other, 0) for other in allowed} for part, allowed in rules.items()}) == []
    assert "recognition" not in rules["analytics"] and "analytics" not in rules["recognition"]
    assert not set(rules["storage"]) & {"analytics", "recognition", "serving"}


@pytest.mark.parametrize("package", ["shelf", "benchmarks"])
def test_no_import_circles(package):
    assert cycles(graph(package)) == []


def test_storage_analytics_and_ingest_never_import_torch():
    heavy = [f"{path.relative_to(ROOT)}:{line} imports {target}"
             for name, path in modules("shelf").items() if part_of(name) in TORCH_FREE_PARTS
             for target, line in imports(path) if target.split(".")[0] in ("torch", "torchvision")]
    assert heavy == []


def test_modules_stay_small_and_the_top_level_stays_short():
    long = {str(path.relative_to(ROOT)): n for path in modules("shelf").values()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
    top_level = [p.name for p in (ROOT / "shelf").glob("*.py")]
    assert len(top_level) <= MAX_TOP_LEVEL_MODULES, top_level


def test_the_checks_catch_a_wrong_import_and_a_circle():
    """The rules above would see a violation (so they are not vacuous): a report importing the model, and a circle."""
    edges = graph("shelf")
    edges["shelf.analytics.report"] = edges["shelf.analytics.report"] | {("shelf.recognition.model", 1)}
    assert any("shelf.analytics.report:1 (analytics) imports shelf.recognition.model" in p
               for p in layering_problems(edges, declared_rules()))
    edges["shelf.storage.schema"] = edges["shelf.storage.schema"] | {("shelf.storage.store", 1)}
    assert any({"shelf.storage.schema", "shelf.storage.store"} <= set(circle) for circle in cycles(edges))
