"""Rerun triggers computed from the code: a rule script's fingerprint is the hash of the library
modules it imports, followed transitively inside the package (lazy imports in functions too).
Snakemake's own code trigger sees only the script; as a rule param this fingerprint makes an edit
to a module rerun exactly the rules whose scripts reach it, and nobody keeps lists by hand."""

from __future__ import annotations

import ast
import functools
import hashlib
import os
from pathlib import Path

PACKAGE = "empathy_workflow"


def _module_file(package_dir: Path, parts: list[str]) -> Path | None:
    """The file of a dotted module inside the package (a module or a subpackage's __init__)."""
    base = package_dir.joinpath(*parts) if parts else package_dir
    if base.with_suffix(".py").is_file() and parts:
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


@functools.lru_cache(maxsize=None)
def library_imports(path: Path, package_dir: Path) -> frozenset[Path]:
    """Library files `path` imports directly: modules, the names' own modules when a name is a
    submodule, and the __init__ of every package on the way. Cached: the Snakefile fingerprints
    every rule's script at start-up, and the scripts share most modules."""
    # the package a relative import starts from (for a package's __init__, the package itself)
    here = list(path.relative_to(package_dir).parts[:-1]) if path.is_relative_to(package_dir) else []
    found: set[Path] = set()

    def add(parts: list[str]) -> None:
        for depth in range(len(parts) + 1):  # the packages on the way, then the module itself
            file = _module_file(package_dir, parts[:depth])
            if file is not None:
                found.add(file)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom):
            module = node.module.split(".") if node.module else []
            if node.level:
                target = here[: len(here) - node.level + 1] + module
            elif module and module[0] == PACKAGE:
                target = module[1:]
            else:
                continue
            add(target)
            for alias in node.names:  # `from empathy_workflow.core import io`: io is a module
                if _module_file(package_dir, target + [alias.name]) is not None:
                    add(target + [alias.name])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == PACKAGE:
                    add(parts[1:])
    return frozenset(found)


def import_closure(script: str | os.PathLike, package_dir: str | os.PathLike | None = None) -> list[Path]:
    """Every library file `script` reaches through imports, sorted."""
    script = Path(script)
    package_dir = Path(package_dir) if package_dir else script.parent / PACKAGE
    todo, seen = list(library_imports(script, package_dir)), set()
    while todo:
        file = todo.pop()
        if file not in seen:
            seen.add(file)
            todo.extend(library_imports(file, package_dir))
    return sorted(seen)


def library_fingerprint(script: str | os.PathLike, package_dir: str | os.PathLike | None = None) -> str:
    """Hash of the library files `script` imports (names and bytes), 16 hex digits."""
    script = Path(script)
    package_dir = Path(package_dir) if package_dir else script.parent / PACKAGE
    digest = hashlib.sha256()
    for file in import_closure(script, package_dir):
        digest.update(file.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
