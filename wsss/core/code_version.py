"""Code versions: a hash of the code a stage runs, so a change to it reruns the stage and voids its checkpoints.

The version of an entry point (a stage script or a package module) covers it and every module of
this package it imports, directly or through others, found by reading their import statements. Each
file enters as its syntax tree with docstrings removed, so comments, docstrings and formatting do
not count and any change to what the code does does.

Only the standard library is used: the rules call this while Snakemake builds the DAG.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = "wsss"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # wsss/, above core/


def _module_file(module: str) -> Path | None:
    """The file of a module of this package (`wsss.data.voc`), or None when it is not one of ours."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str | None:
    try:
        relative = path.resolve().relative_to(PACKAGE_DIR.parent)
    except ValueError:
        return None  # a script outside the package
    parts = list(relative.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(tree: ast.AST, module: str | None, is_package: bool) -> set[str]:
    """Absolute names of what a module imports (a `from x import y` may name module x.y or object y)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if module is None:
                    continue
                parts = module.split(".")
                anchor = parts if is_package else parts[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _parsed(path: Path) -> tuple[str, frozenset[str]]:
    """(normalised syntax tree as text, modules of this package it imports) of one file."""
    status = path.stat()
    return _parse(path, status.st_mtime_ns, status.st_size)


@functools.lru_cache(maxsize=None)
def _parse(path: Path, mtime_ns: int, size: int) -> tuple[str, frozenset[str]]:
    """`_parsed`, cached for as long as the file keeps its modification time and size."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module = _module_name(path)
    imported = _imported_modules(tree, module, path.name == "__init__.py")
    files = set()
    for name in imported:
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            found = _module_file(".".join(parts[:depth]))
            if found is not None:
                files.add(str(found))
    dump = ast.dump(_strip_docstrings(tree), annotate_fields=False, include_attributes=False)
    return dump, frozenset(files)


def module_closure(entry: str | Path) -> list[Path]:
    """The entry file and every file of this package it imports, directly or not, in a stable order."""
    start = Path(entry).resolve() if not isinstance(entry, str) or entry.endswith(".py") else _module_file(entry)
    if start is None or not start.is_file():
        raise FileNotFoundError(f"no such module or file: {entry}")
    seen, pending = set(), [start]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        pending.extend(Path(name) for name in _parsed(path)[1])
    return sorted(seen)


def code_version(*entries: str) -> str:
    """A short hash of the code the entries (files or module names) run."""
    files = sorted({path for entry in entries for path in module_closure(entry)})
    digest = hashlib.sha256()
    for path in files:
        label = path.relative_to(PACKAGE_DIR.parent) if path.is_relative_to(PACKAGE_DIR.parent) else path.name
        digest.update(f"{label}\0{_parsed(path)[0]}\0".encode())
    return digest.hexdigest()[:16]
