"""The package layout: no import circles between modules nor between the package's folders (imports inside
functions included: they run too, only later), and the runtime package never imports test tools."""

import ast
from pathlib import Path

import tagrouter

PACKAGE = Path(tagrouter.__file__).parent
#: what only tests, benchmark scripts and the README's rehearsals may import
TEST_TOOLS = "tagrouter.testing"


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("tagrouter", *path.relative_to(PACKAGE).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imported(path: Path) -> list[tuple[str, int]]:
    """Every name that an ``import`` or ``from`` statement anywhere in the file imports (module level, in
    functions, under ``if``), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [
                (t, node.lineno) for t in (node.module, *(f"{node.module}.{a.name}" for a in node.names))
            ]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
    return found


def imports() -> dict[str, dict[str, str]]:
    """Module -> the tagrouter modules it imports anywhere in its code -> where (``module:line``)."""
    names = modules()
    graph: dict[str, dict[str, str]] = {name: {} for name in names}
    for name, path in names.items():
        for target, line in imported(path):
            if target in names and target != name:
                graph[name].setdefault(target, f"{name}:{line}")
    return graph


def folders() -> dict[str, dict[str, str]]:
    """The import graph between the package's top-level parts: each folder (``tagrouter.evaluation``, all
    its modules and subfolders as one) and each top-level module (``tagrouter.router``)."""

    def part(module: str) -> str:
        return ".".join(module.split(".")[:2])

    graph: dict[str, dict[str, str]] = {}
    for name, targets in imports().items():
        edges = graph.setdefault(part(name), {})
        for target, where in targets.items():
            if part(target) != part(name):
                edges.setdefault(part(target), f"{where} -> {target}")
    return graph


def circles(graph: dict[str, dict[str, str]]) -> list[str]:
    """Each node that reaches itself, with one way round (every step as ``module:line -> target``)."""

    def way_back(start: str) -> list[str] | None:
        paths, seen = [(start, [])], {start}
        while paths:  # breadth first: the shortest way round
            node, steps = paths.pop(0)
            for nxt, where in graph.get(node, {}).items():
                if nxt == start:
                    return [*steps, where]
                if nxt not in seen:
                    seen.add(nxt)
                    paths.append((nxt, [*steps, where]))
        return None

    return [f"{node}: {' | '.join(way)}" for node in sorted(graph) if (way := way_back(node))]


def test_no_module_imports_itself_through_others():
    assert circles(imports()) == []


def test_no_folder_imports_itself_through_others():
    # e.g. router -> tuning -> evaluation/metrics, evaluation/tagrouter_method -> router would be one
    assert circles(folders()) == []


def test_the_circle_finder_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "import json\n\ndef late():\n    if True:\n        from tagrouter.router import TagRouter\n"
    )
    assert ("tagrouter.router", 5) in imported(module)
    graph = {"a": {"b": "a:1"}, "b": {"c": "b:2"}, "c": {"a": "c:3"}, "d": {"a": "d:4"}}
    assert circles(graph) == ["a: a:1 | b:2 | c:3", "b: b:2 | c:3 | a:1", "c: c:3 | a:1 | b:2"]


def test_the_runtime_package_never_imports_test_tools():
    for name, path in modules().items():
        for target, line in imported(path):
            assert target.split(".")[0] not in ("unittest", "pytest"), f"{name}:{line} imports {target}"
            if not _within(name, TEST_TOOLS):
                assert not _within(target, TEST_TOOLS), f"{name}:{line} imports the test tools {target}"


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")
