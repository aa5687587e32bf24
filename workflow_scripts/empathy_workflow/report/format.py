"""Formatting for the report: numbers, markdown tables, flattened metrics, links relative to
the page, and the procedure notes that say which results are the papers' procedure."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Iterable

# Numbers stored beside metrics that describe how they were computed, not results.
SETTINGS = {"num_layers", "seed", "permutations", "resamples", "num_fewshot", "limit"}


SIMILARITY_COLUMNS = ["pearson", "spearman", "mse", "accuracy", "precision", "recall", "f1"]


METHOD_LABELS = {
    "zeroshot": "zero-shot encoder (cosine)",
    "contrastive": "contrastive fine-tuned encoder (cosine)",
    "llm_zeroshot": "LLM, untuned (guided choice, both orders)",
    "llm_sft": "LLM, LoRA fine-tuned (greedy answer)",
    "llm_api": "LLM behind an API, zero-shot prompt (parsed answer)",
}


# The table of the authors' procedures and every deviation (docs/fidelity.md in the repository).
FIDELITY_DOC = Path(__file__).resolve().parents[3] / "docs" / "fidelity.md"


SIMILARITY_PROCEDURE = (
    "**Procedure: the authors'** ([docs/fidelity.md]({link}), section Empathic similarity): encoders score "
    "the raw cosine (3*cos+1 on the 1-4 scale); the untuned LLM takes a guided choice over the seven "
    "answers at temperature 0, story orders (A, B) and (B, A) averaged; the fine-tuned LLM answers "
    "greedily and the number is parsed. Extra scorings that are not the paper's (isotonic map, expected "
    "score over the answers) are in the table after this one and in each metrics.json under `extra_metrics`.")


EMPO_PROCEDURE = (
    "**Procedure: the authors'** ([docs/fidelity.md]({link}), section EmPO): SFT, then DPO that keeps "
    "training the SFT adapter against the SFT model, on emotion-grounded pairs length-filtered with the train "
    "split's p95 of prompt+reply tokens; greedy generation with the authors' system message; diff-Epitome, "
    "BERTScore, NIDF and n-gram diversity, template trees and VAD as the EmPO evaluation code computes them. "
    "Sizes, steps and caps of this run, and every deviation, are in that table.")


# Metrics where lower is better: the run comparison says which way is an improvement. Signed
# differences (vad.diff_max_*) have no better direction and are reported as "changed".
LOWER_IS_BETTER = re.compile(r"^diff_epitome\.|^vad\.abs_diff|mse")


NO_DIRECTION = re.compile(r"^vad\.diff_max|_std$|^template_tree\.")


TEMPLATE_TREE_COMPARED = {"template_tree.compression_ratio", "template_tree.unique_templates"}


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return f"[{fmt(value[0], digits)}, {fmt(value[1], digits)}]"
    return str(value)


def table(header: list[str], rows: Iterable[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(cell) for cell in row) + " |")
    return "\n".join(lines)


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """Nested metrics -> {'group.key': number}; lists of two numbers (intervals) are kept whole."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key not in SETTINGS:
            flat[name] = value
    return flat


def relative(path: str | os.PathLike, start: str | os.PathLike) -> str:
    return os.path.relpath(path, start).replace(os.sep, "/")


def demote_headings(markdown: str, levels: int = 2) -> str:
    """Embed a stage's own markdown below a report heading."""
    return re.sub(r"^(#+)", lambda m: m.group(1) + "#" * levels, markdown, flags=re.MULTILINE)


def rewrite_links(markdown: str, source_dir: Path, report_dir: Path) -> str:
    """Relative image/link targets in an embedded file, re-pointed from the report's folder."""

    def fix(match: re.Match) -> str:
        target = match.group(2)
        if re.match(r"^[a-z]+://", target) or target.startswith("/"):
            return match.group(0)
        return f"{match.group(1)}({relative(source_dir / target, report_dir)})"

    return re.sub(r"(!?\[[^\]]*\])\(([^)]+)\)", fix, markdown)


def embed(path: Path, report_dir: Path, levels: int = 2) -> str:
    text = path.read_text(encoding="utf-8").strip()
    return rewrite_links(demote_headings(text, levels), path.parent, report_dir)
