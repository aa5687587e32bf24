"""The report's sections, one per stage: data, agreement, similarity, EmPO (with diff-Epitome
and significance) and human evaluation, each read from result files."""

from __future__ import annotations

from pathlib import Path

from empathy_workflow.core.io import read_json
from empathy_workflow.empo.epitome_data import MECHANISMS
from empathy_workflow.report.charts import plot_empo, plot_similarity
from empathy_workflow.report.format import (
    EMPO_PROCEDURE,
    FIDELITY_DOC,
    LOWER_IS_BETTER,
    METHOD_LABELS,
    NO_DIRECTION,
    SIMILARITY_COLUMNS,
    SIMILARITY_PROCEDURE,
    TEMPLATE_TREE_COMPARED,
    embed,
    flatten,
    fmt,
    relative,
    table,
)


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
    return {m for m in MECHANISMS if isinstance(quality.get(m), dict)
            and not quality[m]["macro_f1"] - quality[m]["majority_macro_f1"] > quality.get("informative_margin", 0.10)}


def diff_epitome_section(metrics: dict[str, dict], models: list[str], quality: dict, significance: dict | None) -> str:
    """The EPITOME classifiers' held-out quality, then diff-Epitome per model with its bootstrap
    interval and the paired permutation tests between models, a mechanism whose classifier is
    within the margin of the majority class shown as "not informative" instead of a number."""
    margin = quality.get("informative_margin", 0.10)
    skip = not_informative(quality)
    quality_rows = [[m, quality[m]["accuracy"], quality[m]["macro_f1"], quality[m]["majority_macro_f1"],
                     quality[m]["macro_f1"] - quality[m]["majority_macro_f1"], quality[m]["n_heldout"],
                     str(quality[m]["confusion"]), "no" if m in skip else "yes"]
                    for m in MECHANISMS if m in quality]
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
        for key in MECHANISMS + ("mean",):
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
              table(["model", *MECHANISMS, "mean"], rows)]
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
