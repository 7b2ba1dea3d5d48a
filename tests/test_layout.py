"""The package layout: no import circles (module-level or inside functions), and the runtime package never
imports test tools."""

import ast
from pathlib import Path

import tagrouter

PACKAGE = Path(tagrouter.__file__).parent


def imports() -> dict[str, set[str]]:
    """Module -> the tagrouter modules it imports anywhere in its code."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("tagrouter", *path.relative_to(PACKAGE).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in names}
    for name, path in names.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in names and t != name}
    return graph


def test_no_module_imports_itself_through_others():
    graph = imports()

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph[start]:
            if nxt == goal or (nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen))):
                return True
        return False

    circles = sorted(m for m in graph if reaches(m, m, set()))
    assert circles == [], f"modules in an import circle: {circles}"


def test_the_runtime_package_never_imports_test_tools():
    """No module outside ``tagrouter.testing`` imports pytest, unittest, hypothesis, schemathesis or
    ``tagrouter.testing`` (the stand-in servers and judge), anywhere in its code. Bug caught: a runtime
    module such as ``cli/demo.py`` importing ``tagrouter.testing.replay`` (checked by hand)."""
    graph = imports()
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] == "testing":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            assert not any(
                n.split(".")[0] in ("unittest", "pytest", "hypothesis", "schemathesis") for n in names
            ), path
    runtime = [m for m in graph if m != "tagrouter.testing" and not m.startswith("tagrouter.testing.")]
    assert len(runtime) > 50 and "tagrouter.cli.demo" in runtime
    offenders = {
        m: sorted(t for t in graph[m] if t == "tagrouter.testing" or t.startswith("tagrouter.testing."))
        for m in runtime
    }
    assert {m: t for m, t in offenders.items() if t} == {}
