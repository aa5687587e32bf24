"""The library's layers (issue 16): a core every part uses, one subpackage per paper
(agreement, similarity, empo), and the workflow-level report. Core imports only core; a paper's
subpackage imports core and itself, never another paper; the report, above them all, may
import any part (its tables name the papers' quantities); nothing imports the report. Lazy imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "workflow_scripts" / "empathy_workflow"
PAPERS = {"agreement", "similarity", "empo"}


def part(module: str) -> str:
    """The layer part of a dotted module name inside the package: core, a paper, or report."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "package"


def library_modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(module: str, path: Path) -> set[str]:
    """Dotted package modules (or names inside them) this file imports, relative imports resolved."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "empathy_workflow":
                found |= {f"{target}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "empathy_workflow"}
    return found


def allowed(importer: str, imported: str) -> bool:
    source, target = part(importer), part(imported)
    if target in ("package",):
        return True  # empathy_workflow/__init__ holds no code
    if source == "core":
        return target == "core"
    if source in PAPERS:
        return target in ("core", source)
    if source == "report":
        return target in {"core", "report"} | PAPERS  # the workflow layer, above every part
    return False


def layer_violations() -> list[str]:
    problems = []
    for module, path in sorted(library_modules().items()):
        for imported in sorted(imports_of(module, path)):
            if not allowed(module, imported):
                problems.append(f"{path.relative_to(REPO)}: imports {imported} ({part(module)} -> {part(imported)})")
    return problems


def test_layers_core_then_one_part_per_paper():
    assert library_modules(), "no library found"
    assert {part(m) for m in library_modules()} == {"package", "core", "report"} | PAPERS
    problems = layer_violations()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("importer,imported,ok", [
    ("empathy_workflow.core.hf", "empathy_workflow.empo.training.ADAPTER_INFO", False),
    ("empathy_workflow.similarity.llm", "empathy_workflow.empo.training.load_policy", False),
    ("empathy_workflow.empo.training", "empathy_workflow.similarity.llm", False),
    ("empathy_workflow.core.io", "empathy_workflow.report", False),
    ("empathy_workflow.empo.training", "empathy_workflow.core.hf.load_base_model", True),
    ("empathy_workflow.agreement.tables", "empathy_workflow.agreement.reliability", True),
])
def test_the_layer_rule_on_known_cases(importer, imported, ok):
    assert allowed(importer, imported) is ok


def test_relative_imports_are_resolved(tmp_path):
    module = tmp_path / "x.py"
    module.write_text("from ..empo import training\nfrom . import io\n\ndef f():\n    from ..similarity.llm import train_llm\n")
    assert imports_of("empathy_workflow.core.x", module) == {
        "empathy_workflow.empo.training", "empathy_workflow.core.io", "empathy_workflow.similarity.llm.train_llm"}
