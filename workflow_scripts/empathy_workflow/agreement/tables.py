"""Markdown tables of the agreement study: alpha and pairwise statistics per aspect with their
intervals, the human ceiling, and the aggregate-score comparison."""

from __future__ import annotations

from empathy_workflow.core.reliability import CEILING_METHOD
from empathy_workflow.core.stats import LEVELS


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _with_ci(value, interval) -> str:
    if interval is None:
        return _fmt(value)
    return f"{_fmt(value)} [{_fmt(interval[0])}, {_fmt(interval[1])}]"


def agreement_markdown(name: str, results: dict) -> str:
    """One table per dataset: rows are statistics, columns are aspects, with bootstrap intervals."""
    aspects = list(results)
    first = results[aspects[0]]
    lines = [f"# Annotator agreement: {name}", ""]
    if first["ci"] is not None:
        lines.append(f"Point estimate [{first['bootstrap']['confidence']:.0%} bootstrap interval, "
                     f"{first['bootstrap']['resamples']} item resamples, seed {first['bootstrap']['seed']}].")
        lines.append("")
    lines.append("| statistic | " + " | ".join(aspects) + " |")
    lines.append("|---|" + "---|" * len(aspects))

    def row(label: str, get) -> None:
        lines.append(f"| {label} | " + " | ".join(get(results[a]) for a in aspects) + " |")

    for level in LEVELS:
        row(f"Krippendorff's alpha ({level})",
            lambda r, level=level: _with_ci(r["krippendorff_alpha"][level],
                                            (r["ci"] or {}).get("krippendorff_alpha", {}).get(level)))
    for key, label in (("mean_pairwise_pearson", "mean pairwise Pearson"),
                       ("mean_pairwise_spearman", "mean pairwise Spearman"),
                       ("mean_pairwise_cohen_kappa", "mean pairwise Cohen's kappa (rounded half up)"),
                       ("quadratic_weighted_kappa", "mean pairwise quadratic-weighted kappa")):
        row(label, lambda r, key=key: _with_ci(r[key], (r["ci"] or {}).get(key)))
    row("leave-one-out r (annotator vs mean of others)",
        lambda r: _with_ci(r["human_ceiling"]["leave_one_out_mean_pearson"],
                           (r["ci"] or {}).get("human_ceiling", {}).get("leave_one_out_mean_pearson")))
    row("reliability of the mean label (Spearman-Brown)",
        lambda r: _fmt(r["human_ceiling"]["reliability_of_mean"]))
    row("human ceiling: expected r of a perfect model",
        lambda r: _with_ci(r["human_ceiling"]["expected_correlation"],
                           (r["ci"] or {}).get("human_ceiling", {}).get("expected_correlation")))
    row("human ceiling (split-half check)",
        lambda r: _fmt(r["human_ceiling"].get("split_half_expected_correlation")))
    row("items", lambda r: str(r["n_items"]))
    row("annotators", lambda r: str(r["n_annotators"]))
    row("ratings (missing)", lambda r: f"{r['n_ratings']} ({r['missing_ratings']})")
    row("excluded items (< 2 ratings)", lambda r: str(r["excluded"]["items_fewer_than_two_ratings"]))
    row("empty-score rows", lambda r: str(r["excluded"]["empty_score_rows"]))
    lines += ["", CEILING_METHOD, "",
              "Cohen's kappa is unweighted, on ratings rounded half up to integers (2.5 -> 3; a "
              "rating off the half-step grid goes to the nearest integer, 1.2 -> 1, 2.2 -> 2); every "
              "other statistic uses the ratings as given. "
              "Quadratic-weighted kappa uses the raw ratings with weights equal to the squared "
              "difference of the values. Pairwise statistics use the items both annotators rated "
              "and are averaged over annotator pairs.", ""]
    if first["ci"] is not None:
        lines += [f"Intervals: {first['bootstrap']['method']}", ""]
    undefined = [f"- {aspect}: {key}: {reason}" for aspect in aspects
                 for key, reason in results[aspect].get("undefined", {}).items()]
    if undefined:
        lines += ["Undefined statistics (n/a above):", ""] + undefined + [""]
    return "\n".join(lines)


def aggregate_markdown(results: dict) -> str:
    lines = ["# Aggregated scores: human labels and the shipped GPT-3.5 score", ""]
    for name, result in results.items():
        if not isinstance(result, dict) or "distributions" not in result:
            continue
        lines += [f"## {name} ({result['n_pairs']} pairs{', ' + result['note'] if result.get('note') else ''})", ""]
        lines += ["| score | n | mean | std | counts |", "|---|---|---|---|---|"]
        for column, dist in result["distributions"].items():
            counts = ", ".join(f"{k}: {v}" for k, v in dist["counts"].items())
            lines.append(f"| {column} | {dist['n']} | {_fmt(dist['mean'])} | {_fmt(dist['std'])} | {counts} |")
        aspects = list(result["aspect_correlations"]["pearson"])
        lines += ["", "Correlations between aspects (Pearson / Spearman):", "",
                  "| | " + " | ".join(aspects) + " |", "|---|" + "---|" * len(aspects)]
        for a in aspects:
            cells = ["1" if a == b else f"{_fmt(result['aspect_correlations']['pearson'][a][b])} / "
                     f"{_fmt(result['aspect_correlations']['spearman'][a][b])}" for b in aspects]
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
        lines += ["", "Human aggregate vs gpt_score:", "",
                  "| aspect | n | Pearson | Spearman | alpha (interval) |", "|---|---|---|---|---|"]
        for aspect, agree in result["human_vs_gpt"].items():
            ci = agree["ci"] or {}
            alpha = agree["krippendorff_alpha_interval"]
            lines.append(f"| {aspect} | {agree['n']} | {_with_ci(agree['pearson'], ci.get('pearson'))} | "
                         f"{_with_ci(agree['spearman'], ci.get('spearman'))} | "
                         f"{_fmt(alpha) if alpha is not None else 'n/a: ' + agree['alpha_note']} |")
        lines.append("")
    return "\n".join(lines)
