"""The package's layout holds: no import circle between its modules, and `wsss/core/` (the infrastructure) imports
no stage.

The imports are read from the source (`ast`), every one of them, also those inside functions, so that an import
moved into a function cannot hide a circle. Nothing here imports the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "wsss"
CORE = "wsss.core"


def module_name(path: Path, package_dir: Path) -> str:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """{module name: file} of every module of the package (a package is its `__init__.py`)."""
    return {module_name(path, package_dir): path for path in sorted(package_dir.rglob("*.py"))}


def imported_modules(path: Path, module: str, modules: dict[str, Path]) -> set[str]:
    """The package's modules that `module` (file `path`) imports: `from x import y` imports module x.y where y is a
    module, else x; relative imports resolved. A package's own parents run as well on import, but they are not
    counted: a package's `__init__` that imports its modules would otherwise be a circle with each of them."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    found.add(f"{base}.{alias.name}")
                elif base in modules:
                    found.add(base)
    found.discard(module)
    return found


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    modules = package_modules(package_dir)
    return {module: imported_modules(path, module, modules) for module, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted: every import circle."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def core_imports_of_stages(graph: dict[str, set[str]]) -> list[str]:
    """'core module -> module' for every import of a module outside `wsss.core` by one inside it."""
    def in_core(module: str) -> bool:
        return module == CORE or module.startswith(CORE + ".")

    return [f"{module} -> {target}" for module, targets in sorted(graph.items()) if in_core(module)
            for target in sorted(targets) if not in_core(target)]


def test_no_import_circle_between_the_packages_modules():
    found = circles(import_graph())
    assert not found, "import circles (each a set of modules that import one another): " + "; ".join(
        " <-> ".join(component) for component in found)


def test_core_imports_no_stage():
    assert (PACKAGE_DIR / "core" / "__init__.py").is_file()
    found = core_imports_of_stages(import_graph())
    assert not found, "wsss/core imports modules outside it (core may import only core, stdlib and third-party " \
                      "packages): " + "; ".join(found)


def test_the_checks_see_a_circle_and_a_core_module_that_imports_a_stage(tmp_path):
    """The checks themselves: a circle hidden in a function, a relative import, and core importing a stage."""
    package = tmp_path / "wsss"
    (package / "core").mkdir(parents=True)
    (package / "stage").mkdir()
    for folder in (package, package / "core", package / "stage"):
        (folder / "__init__.py").write_text("")
    (package / "core" / "base.py").write_text("import os\nfrom ..stage import work\n")
    (package / "stage" / "work.py").write_text("from ..core.base import os\nfrom . import other\n")
    (package / "stage" / "other.py").write_text("def later():\n    from .work import os\n")
    graph = import_graph(package)
    assert graph["wsss.stage.work"] == {"wsss.core.base", "wsss.stage.other"}
    assert circles(graph) == [["wsss.core.base", "wsss.stage.other", "wsss.stage.work"]]
    assert core_imports_of_stages(graph) == ["wsss.core.base -> wsss.stage.work"]
