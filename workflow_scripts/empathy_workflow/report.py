"""TODO docstring (from report: results/report/summary.md: every result of the workflow on one page, with plots.)"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Iterable

from empathy_workflow.core.io import read_json

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
FIDELITY_DOC = Path(__file__).resolve().parents[2] / "docs" / "fidelity.md"


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


def data_section(split_infos: list[Path]) -> str:
    lines = ["## Data and splits", ""]
    for path in split_infos:
        info = read_json(path)
        name = path.parent.name
        counts = info.get("counts", {})
        kind = "seeded re-split of the shipped data" if info.get("resplit") else "official splits"
        lines.append(f"- **{name}**: {kind}; " + ", ".join(f"{split} {count}" for split, count in counts.items()))
        if info.get("note"):
            lines.append(f"  {info['note']}")
    return "\n".join(lines)


def agreement_section(agreement_jsons: list[Path], aggregate_json: Path, cross_culture_json: Path,
                      report_dir: Path) -> str:
    parts = ["## Annotator agreement", ""]
    for path in agreement_jsons:
        markdown = path.with_name("agreement.md")
        if markdown.exists():
            parts.append(embed(markdown, report_dir, levels=2))
        plots = sorted((path.parent / "plots").glob("*.png")) if (path.parent / "plots").exists() else []
        if plots:
            parts.append("Plots: " + ", ".join(f"[{p.stem}]({relative(p, report_dir)})" for p in plots))
        parts.append("")
    for path in (aggregate_json.with_suffix(".md"), cross_culture_json.with_suffix(".md")):
        if path.exists():
            parts.append(embed(path, report_dir, levels=2))
            parts.append("")
    alpha_plot = cross_culture_json.with_name("cross_culture_alpha.png")
    if alpha_plot.exists():
        parts.append(f"![Krippendorff's alpha per aspect and dataset]({relative(alpha_plot, report_dir)})")
    return "\n".join(parts)


def human_ceiling(agreement_jsons: list[Path], aspect: str = "empathy") -> dict[str, dict]:
    """Per agreement dataset: the expected correlation of a perfect model with the mean label."""
    ceilings = {}
    for path in agreement_jsons:
        data = read_json(path)
        entry = data.get(aspect)
        if not entry:
            continue
        ceiling = entry.get("human_ceiling", {})
        interval = (entry.get("ci") or {}).get("human_ceiling", {}).get("expected_correlation")
        ceilings[path.parent.name] = {
            "expected_correlation": ceiling.get("expected_correlation"),
            "interval": interval,
            "leave_one_out_mean_pearson": ceiling.get("leave_one_out_mean_pearson"),
        }
    return ceilings


def similarity_section(metric_files: list[Path], ceilings: dict[str, dict], report_dir: Path,
                       plot_path: Path | None = None) -> str:
    rows, extra_rows, notes, scatters = [], [], set(), []
    by_testset: dict[str, list] = {}
    for path in metric_files:
        method, testset = path.parent.parent.name, path.parent.name
        metrics = read_json(path)
        rows.append([METHOD_LABELS.get(method, method), testset] + [metrics.get(k) for k in SIMILARITY_COLUMNS]
                    + [metrics.get("n")])
        for scoring, values in (metrics.get("extra_metrics") or {}).items():
            extra_rows.append([METHOD_LABELS.get(method, method), testset, scoring]
                              + [values.get(k) for k in SIMILARITY_COLUMNS])
        by_testset.setdefault(testset, []).append((method, metrics.get("pearson")))
        for key in ("split_note", "split", "text_note"):
            if isinstance(metrics.get(key), str):
                notes.add(metrics[key])
        scatter = path.with_name("scatter.png")
        if scatter.exists():
            scatters.append(f"[{method} / {testset}]({relative(scatter, report_dir)})")
    lines = ["## Empathic similarity", "",
             "Gold: the human empathic-similarity score (1-4); binary metrics use positive = score > 2.5 "
             "(macro averages).", "",
             SIMILARITY_PROCEDURE.format(link=relative(FIDELITY_DOC, report_dir)), "",
             table(["method", "test set"] + SIMILARITY_COLUMNS + ["n"], rows), ""]
    if extra_rows:
        lines += ["**Extra scorings, not the paper's procedure** (same pairs; [docs/fidelity.md]"
                  f"({relative(FIDELITY_DOC, report_dir)}) says why each is kept):", "",
                  table(["method", "test set", "scoring"] + SIMILARITY_COLUMNS, extra_rows), ""]
    if ceilings:
        lines += ["**Human ceiling beside the models.** The Pearson r a perfect model could expect against the "
                  "annotators' mean label, given their disagreement (see the agreement section for the method):", ""]
        lines.append(table(["dataset", "aspect", "ceiling r", "95% interval", "annotator vs others (LOO r)"],
                           [[name, "empathy", c["expected_correlation"], c["interval"],
                             c["leave_one_out_mean_pearson"]] for name, c in ceilings.items()]))
        lines.append("")
    for note in sorted(notes):
        lines.append(f"- {note}")
    if scatters:
        lines += ["", "Predicted vs gold: " + ", ".join(scatters)]
    if plot_path is not None:
        plot_similarity(by_testset, ceilings, plot_path)
        lines += ["", f"![Pearson r per method and test set]({relative(plot_path, report_dir)})"]
    return "\n".join(lines)


def empo_section(metric_files: list[Path], significance: Path, curves: list[Path], pair_stats: list[Path],
                 epitome: list[Path], report_dir: Path, plot_path: Path | None = None,
                 mapping: str = "plutchik", epitome_quality: Path | None = None) -> str:
    models = [path.parent.name for path in metric_files]
    metrics = {path.parent.name: read_json(path) for path in metric_files}
    lines = ["## EmPO: emotion-grounded preference optimisation", ""]

    # Pairs
    pair_rows = []
    for path in pair_stats:
        stats = read_json(path)
        split = path.name.replace("_stats.json", "")
        pair_rows.append([split, stats.get("pairs"), stats.get("prompts"), stats.get("conversations"),
                          stats.get("rejected_per_prompt"), stats.get("prompts_without_enough_rejected")])
    lines += ["### Preference pairs", "",
              f"Rejected replies come from conversations of the opposite emotion (mapping: `{mapping}`).", "",
              table(["split", "pairs", "prompts", "conversations in split", "rejected per prompt",
                     "prompts dropped (too few rejected candidates)"], pair_rows), ""]

    # Training curves
    curve_links = []
    for path in curves:
        png = path.with_suffix(".png")
        curve_links.append(f"[{path.stem}]({relative(png if png.exists() else path, report_dir)})")
    lines += ["### Training", "", "Curves (loss; reward margin and accuracy for preference runs): "
              + ", ".join(curve_links), ""]

    # Metric tables, one per group
    lines += ["### Evaluation on the EmpatheticDialogues test conversations", "",
              EMPO_PROCEDURE.format(link=relative(FIDELITY_DOC, report_dir)), ""]
    groups = ["diff_epitome", "bertscore", "diversity", "template_tree", "vad", "lm_eval"]
    explain = {
        "diff_epitome": "diff-Epitome: mean squared difference between the EPITOME level of the generation and "
                        "of the human reply, per mechanism (lower is closer to human empathy).",
        "bertscore": "BERTScore against the human reply.",
        "diversity": "Diversity and specificity of the generations.",
        "template_tree": "Template-tree (span) diversity, as the EmPO code reports it (Lee et al.): recurring "
                         "n-grams folded into spans; compression ratio = nodes of the template tree / nodes of the "
                         "word tree (lower = more shared templates); unique templates, span nodes and starting "
                         "words counted over the generations.",
        "vad": "Emotional valence/arousal/dominance and intensity (NRC lexicons): difference between the maximum "
               "over the context and the maximum over the response (lower = closer emotional tone).",
        "lm_eval": "Retained general ability (lm-eval accuracy).",
    }
    quality = read_json(epitome_quality) if epitome_quality is not None else None
    uninformative = not_informative(quality)
    for group in groups:
        if group == "diff_epitome" and quality is not None:
            lines += [diff_epitome_section(metrics, models, quality,
                                           read_json(significance) if significance.exists() else None), ""]
            continue
        flat = {model: flatten(metrics[model].get(group, {}) or {}) for model in models}
        keys = sorted({key for values in flat.values() for key in values})
        if not keys:
            continue
        lines += [f"**{group}**. {explain[group]}", "",
                  table(["model"] + keys, [[model] + [flat[model].get(k) for k in keys] for model in models]), ""]
        notes = {model: metrics[model].get(group, {}).get("note") for model in models
                 if isinstance(metrics[model].get(group), dict)}
        for note in sorted({n for n in notes.values() if isinstance(n, str)}):
            lines.append(f"- {note}")
        if group == "template_tree":
            for model in models:
                spans = (metrics[model].get(group) or {}).get("top_spans") or []
                if spans:
                    lines.append(f"- {model}, most frequent spans: "
                                 + "; ".join(f"\"{text}\" ({count})" for text, count in spans[:3]))
        lines.append("")

    # Run comparison (like `dvc metrics diff`): every model against sft (or base).
    baseline = "sft" if "sft" in metrics else models[0]
    flat_all = {model: flatten({g: metrics[model].get(g, {}) for g in groups}) for model in models}
    compare_rows = []
    for model in models:
        if model in (baseline, "base"):
            continue  # the comparison is between training runs; base is in the tables above
        for key in sorted(flat_all[model]):
            if key.startswith("template_tree.") and key not in TEMPLATE_TREE_COMPARED:
                continue  # the counts behind the ratio stay in the template_tree table
            old, new = flat_all[baseline].get(key), flat_all[model][key]
            if old is None or new is None:
                continue
            change = new - old
            if key.split(".")[0] == "diff_epitome" and key.split(".")[-1] in uninformative:
                direction = "not informative"
            elif abs(change) < 1e-9:
                direction = "same"
            elif NO_DIRECTION.search(key):
                direction = "changed"
            else:
                better = (change < 0) if LOWER_IS_BETTER.search(key) else (change > 0)
                direction = "better" if better else "worse"
            compare_rows.append([model, key, old, new, change, direction])
    if compare_rows:
        lines += [f"### Runs compared with {baseline}", "",
                  table(["run", "metric", baseline, "run value", "change", "direction"], compare_rows), ""]

    # Significance
    if significance.exists():
        tests = read_json(significance)
        if uninformative and isinstance(tests.get("comparisons"), list):
            # diff-Epitome of a mechanism whose classifier is near the majority class is no result
            tests = {**tests, "comparisons": [c for c in tests["comparisons"]
                                              if str(c.get("metric", "")).removeprefix("diff_") not in uninformative]}
        lines += ["### Significance", "", significance_table(tests), ""]
        if uninformative:
            lines += [f"- diff-Epitome of {', '.join(sorted(uninformative))} left out: not informative "
                      "(classifier near the majority class, see quality table above).", ""]

    # EPITOME classifiers
    rows = []
    for path in epitome:
        data = read_json(path)
        rows.append([path.name.split("_")[0], data.get("accuracy"), data.get("macro_f1"),
                     data.get("majority_accuracy", data.get("majority_baseline")), data.get("n_held_out"),
                     data.get("source", data.get("weights", "trained here"))])
    if rows and quality is None:
        lines += ["### How far to trust diff-Epitome", "",
                  "The EPITOME classifiers on their held-out part:", "",
                  table(["mechanism", "accuracy", "macro F1", "majority class", "held-out n", "weights"], rows), ""]

    if plot_path is not None and models:
        plot_empo(metrics, models, plot_path)
        lines.append(f"![EmPO metrics per model]({relative(plot_path, report_dir)})")
    return "\n".join(lines)


def human_eval_section(tables: list[Path], report_dir: Path) -> str:
    """The human evaluation's own tables (results.md of rule empo_human_results), when it ran."""
    if not tables:
        return ""
    return "\n\n".join(["## EmPO: human evaluation"] + [embed(path, report_dir, levels=2) for path in tables])


def not_informative(quality: dict | None) -> set[str]:
    """Mechanisms whose classifier is within quality.json's margin of the majority class."""
    if not quality:
        return set()
    return {m for m in DIFF_EPITOME_MECHANISMS if isinstance(quality.get(m), dict)
            and not quality[m]["macro_f1"] - quality[m]["majority_macro_f1"] > quality.get("informative_margin", 0.10)}


DIFF_EPITOME_MECHANISMS = ("er", "ip", "ex")


def diff_epitome_section(metrics: dict[str, dict], models: list[str], quality: dict, significance: dict | None) -> str:
    """The EPITOME classifiers' held-out quality, then diff-Epitome per model with its bootstrap
    interval and the paired permutation tests between models, a mechanism whose classifier is
    within the margin of the majority class shown as "not informative" instead of a number."""
    margin = quality.get("informative_margin", 0.10)
    skip = not_informative(quality)
    quality_rows = [[m, quality[m]["accuracy"], quality[m]["macro_f1"], quality[m]["majority_macro_f1"],
                     quality[m]["macro_f1"] - quality[m]["majority_macro_f1"], quality[m]["n_heldout"],
                     str(quality[m]["confusion"]), "no" if m in skip else "yes"]
                    for m in DIFF_EPITOME_MECHANISMS if m in quality]
    lines = ["**How far to trust diff-Epitome.** The EPITOME classifiers on their held-out pairs "
             "(`results/empo/epitome/quality.json`); a mechanism whose macro F1 is within "
             f"{margin:.2f} of always answering the majority level is not informative.", "",
             table(["mechanism", "accuracy", "macro F1", "majority macro F1", "margin", "held-out n",
                    "confusion (rows gold 0-2, columns predicted)", "informative"], quality_rows), ""]
    rows = []
    for model in models:
        values = metrics[model].get("diff_epitome", {}) or {}
        intervals = values.get("ci", {}) or {}
        row = [model]
        for key in DIFF_EPITOME_MECHANISMS + ("mean",):
            if key in skip:
                row.append("not informative")
            elif values.get(key) is None:
                row.append(None)
            else:
                interval = intervals.get(key)
                row.append(f"{fmt(values[key])} {fmt(interval)}" if interval else values[key])
        rows.append(row)
    lines += ["**diff_epitome**. diff-Epitome: mean squared difference between the EPITOME level of the "
              "generation and of the human reply, per mechanism (lower is closer to human empathy); "
              "in brackets the percentile bootstrap interval over items.", "",
              table(["model", "er", "ip", "ex", "mean"], rows)]
    if skip:
        lines += ["", f"- mean: averages all three mechanisms, {', '.join(sorted(skip))} included (not informative)."]
    comparisons = [c for c in (significance or {}).get("comparisons", [])
                   if str(c.get("metric", "")).startswith("diff_")]
    shown = [c for c in comparisons if c["metric"].removeprefix("diff_") not in skip]
    if shown:
        lines += ["", "Between models (paired permutation test on the per-item squared differences; "
                  "Holm-adjusted over every metric of the significance table):", "",
                  significance_table({**significance, "comparisons": shown})]
    return "\n".join(lines)


def significance_table(data: dict) -> str:
    """Rows of (metric, model A, model B, difference, p) from whatever nesting the stage wrote."""
    rows = []
    comparisons = data.get("comparisons", data)
    if isinstance(comparisons, list):
        for entry in comparisons:
            rows.append([entry.get("metric"), entry.get("model_a", entry.get("a")), entry.get("model_b", entry.get("b")),
                         entry.get("mean_difference", entry.get("difference")),
                         [entry["ci_low"], entry["ci_high"]] if "ci_low" in entry else None,
                         entry.get("p_value"), entry.get("p_value_holm")])
    elif isinstance(comparisons, dict):
        for metric, pairs in comparisons.items():
            if not isinstance(pairs, dict):
                continue
            for pair, entry in pairs.items():
                if isinstance(entry, dict):
                    a, _, b = pair.partition("_vs_")
                    rows.append([metric, entry.get("model_a", a), entry.get("model_b", b),
                                 entry.get("mean_difference", entry.get("difference")), None,
                                 entry.get("p_value"), entry.get("p_value_holm")])
    method = data.get("test", data.get("method", "paired permutation test on per-item scores"))
    return f"{method}\n\n" + table(["metric", "model A", "model B", "mean difference (A - B)", "95% interval",
                                     "p", "p (Holm)"], rows)


def plot_similarity(by_testset: dict[str, list], ceilings: dict[str, dict], path: Path) -> None:
    from empathy_workflow.core.plots import new_figure, save_figure

    figure, axis = new_figure(7, 4)
    testsets = sorted(by_testset)
    methods = sorted({method for values in by_testset.values() for method, _ in values})
    width = 0.8 / max(1, len(methods))
    for index, method in enumerate(methods):
        values = [dict(by_testset[t]).get(method) for t in testsets]
        positions = [i + index * width for i in range(len(testsets))]
        axis.bar(positions, [v if v is not None else 0 for v in values], width, label=method)
    for i, testset in enumerate(testsets):
        ceiling = ceilings.get(testset, {}).get("expected_correlation")
        if ceiling is not None:
            axis.hlines(ceiling, i - width / 2, i + 0.8 - width / 2, colors="black", linestyles="dashed",
                        label="human ceiling" if i == 0 else None)
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(testsets))], testsets)
    axis.set_ylabel("Pearson r with the gold score")
    axis.axhline(0, color="grey", linewidth=0.5)
    axis.legend(fontsize=7)
    save_figure(figure, path)


def plot_empo(metrics: dict[str, dict], models: list[str], path: Path) -> None:
    from empathy_workflow.core.plots import new_figure, save_figure

    panels = [("diff_epitome", "mean", "diff-Epitome (lower better)"),
              ("bertscore", "f1", "BERTScore F1"),
              ("diversity", "distinct_2", "distinct-2"),
              ("lm_eval", None, "lm-eval accuracy")]
    figure, axes = new_figure(11, 3)
    figure.clf()
    axes = figure.subplots(1, len(panels))
    for axis, (group, key, title) in zip(axes, panels):
        values, errors = [], []
        for model in models:
            section = metrics[model].get(group, {}) or {}
            if key is None:  # lm_eval: first task
                numbers = [v for v in flatten(section).values()]
                value = numbers[0] if numbers else None
            else:
                value = section.get(key)
            value = value if isinstance(value, (int, float)) else None
            values.append(value if value is not None else 0.0)
            interval = (section.get("ci") or {}).get(key) if key else None
            errors.append(interval)
        axis.bar(models, values, color="#4c72b0")
        for index, interval in enumerate(errors):
            if isinstance(interval, list) and len(interval) == 2:
                axis.errorbar(index, values[index], yerr=[[values[index] - interval[0]], [interval[1] - values[index]]],
                              color="black", capsize=3)
        axis.set_title(title, fontsize=9)
        axis.tick_params(axis="x", labelrotation=30, labelsize=8)
    save_figure(figure, path)


def build_summary(inputs: dict[str, list[str]], config: dict, output: Path) -> str:
    report_dir = output.parent
    plots = report_dir / "plots"
    paths = {key: [Path(p) for p in values] for key, values in inputs.items()}
    ceilings = human_ceiling(paths["agreement"])
    sections = [
        "# Empathy in language models: results",
        "",
        f"Configuration: seed {config.get('seed')}; models "
        + ", ".join(f"`{name}` = {entry['source']}" for name, entry in config.get("models", {}).items())
        + ". Numbers below are read from the result files under `results/`; rerun `snakemake` to refresh.",
        "",
        data_section(paths["splits"]),
        "",
        agreement_section(paths["agreement"], paths["aggregate"][0], paths["cross_culture"][0], report_dir),
        "",
        similarity_section(paths["similarity"], ceilings, report_dir, plots / "similarity_pearson.png"),
        "",
        empo_section(paths["empo"], paths["significance"][0], paths["curves"], paths["pair_stats"],
                     paths["epitome"], report_dir, plots / "empo_metrics.png",
                     mapping=config.get("empo", {}).get("pairs", {}).get("emotion_mapping", "plutchik"),
                     epitome_quality=Path(paths["epitome_quality"][0]) if paths.get("epitome_quality") else None),
        "",
        human_eval_section(paths.get("human_eval", []), report_dir),
        "",
    ]
    return "\n".join(sections).rstrip() + "\n"


def main(snakemake) -> None:
    from empathy_workflow.core.io import write_text

    inputs = {key: list(snakemake.input[key]) if not isinstance(snakemake.input[key], str)
              else [snakemake.input[key]] for key in snakemake.input.keys()}
    output = Path(snakemake.output.summary)
    write_text(output, build_summary(inputs, snakemake.params.config, output))
