"""The package's shape: no module imports another that imports it back, at import time or later."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# installed names of the folders that are shipped under `fieldkit.*` (see pyproject.toml)
PACKAGE_DIRS = {"fieldkit": ROOT / "fieldkit", "fieldkit.scenes": ROOT / "scenes", "fieldkit.viewer": ROOT / "viewer"}


def module_files() -> dict[str, Path]:
    modules = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts))
            modules[name.removesuffix(".__init__")] = path
    return modules


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that `name` imports, at its top or inside a function: an import put
    off into a function to dodge a circle is still a circle."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from package import submodule` imports the submodule; any other name comes from the package
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in known and target != name}
    return found


def import_cycles() -> list[list[str]]:
    files = module_files()
    graph = {name: imports_of(name, path, set(files)) for name, path in files.items()}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    # a package importing its own submodules is how packages re-export; not a circle of modules
    return [cycle for cycle in cycles if not all(a.startswith(b + ".") or b.startswith(a + ".")
                                                 for a, b in zip(cycle, cycle[1:]))]


def test_the_cycle_finder_sees_a_circle(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_text("from fieldkit.b import x\n")
    (tmp_path / "b.py").write_text("import fieldkit.a\n")
    monkeypatch.setitem(PACKAGE_DIRS, "fieldkit", tmp_path)
    monkeypatch.delitem(PACKAGE_DIRS, "fieldkit.scenes")
    monkeypatch.delitem(PACKAGE_DIRS, "fieldkit.viewer")
    assert import_cycles() == [["fieldkit.a", "fieldkit.b", "fieldkit.a"]]


def test_no_module_imports_one_that_imports_it_back():
    assert import_cycles() == []
