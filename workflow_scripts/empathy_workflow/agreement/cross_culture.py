"""Annotator agreement across datasets (paper 1): English vs Urdu side by side, aspect by aspect.

Each dataset's aspects stand under a shared aspect: `compare_as` maps an aspect to it (the English
re-annotation's summary_event, full_event and both_event all stand under event); an aspect not
named keeps its own name. A shared aspect that two or more datasets rated is a group of the main
table, with an English minus Urdu difference for every English row against the Urdu row of its
group; an aspect that only one dataset rated (English moral: the Urdu study dropped it) is shown
apart. Reads the per-dataset results of `agreement.analyse`; computes nothing new except the
differences.
"""

from __future__ import annotations

import itertools

from empathy_workflow.agreement.tables import _fmt, _with_ci
from empathy_workflow.core.io import InputError

STATISTICS = ("mean_pairwise_pearson", "mean_pairwise_spearman", "mean_pairwise_cohen_kappa",
              "quadratic_weighted_kappa")


# Below this many items, the table says the intervals are wide because the sample is small.
SMALL_SAMPLE_ITEMS = 30


ENGLISH_NOTE = ("No English per-annotator ratings are declared (EmpathicStories itself ships only "
                "aggregated scores), so only one side of the comparison is shown; declare them under "
                "agreement.datasets with language: en (the default config ships the paper's English "
                "re-annotation as english_reannotation).")


ROUNDING_NOTE = ("Cohen's kappa needs categories: it is computed on the ratings rounded half up to "
                 "integers (2.5 -> 3, as the authors' notebook does); ratings off the half-step grid "
                 "round to the nearest integer (1.2 -> 1, 2.2 -> 2). Every other statistic uses the "
                 "ratings exactly as given, off-grid values included.")


def _off_grid(values: list[float]) -> list[float]:
    """Ratings that are not a multiple of 0.5 (the scales' own step)."""
    return [value for value in values if abs(value * 2 - round(value * 2)) > 1e-9]


def _row(name: str, aspect: str, language: str | None, entry: dict) -> dict:
    ci = entry.get("ci") or {}
    return {
        "dataset": name,
        "aspect": aspect,
        "language": language,
        "krippendorff_alpha": entry["krippendorff_alpha"],
        "krippendorff_alpha_ci": ci.get("krippendorff_alpha"),
        **{key: entry[key] for key in STATISTICS},
        **{f"{key}_ci": ci.get(key) for key in STATISTICS},
        "human_ceiling": entry["human_ceiling"]["expected_correlation"],
        "n_items": entry["n_items"],
        "n_annotators": entry["n_annotators"],
        "off_grid_values": _off_grid(entry.get("value_domain", [])),
        "undefined": entry.get("undefined", {}),
    }


def _difference(a, b):
    return None if a is None or b is None else a - b


def _overlap(a, b):
    if a is None or b is None:
        return None
    return bool(a[0] <= b[1] and b[0] <= a[1])


def cross_culture(results: dict[str, dict], languages: dict[str, str | None],
                  compare_as: dict[str, dict[str, str]] | None = None) -> dict:
    """The cross-culture summary of every analysed dataset ({name: {aspect: result}})."""
    compare_as = compare_as or {}
    for name, mapping in compare_as.items():
        unknown = sorted(set(mapping) - set(results.get(name, {})))
        if unknown:
            raise InputError(f"config key agreement.datasets.{name}.compare_as names aspect(s) "
                             f"{', '.join(map(repr, unknown))}, which {name}'s ratings lack "
                             f"(aspects: {', '.join(sorted(results.get(name, {})))})")
    groups: dict[str, list[dict]] = {}
    for name, result in results.items():
        for aspect in sorted(result):
            shared = compare_as.get(name, {}).get(aspect, aspect)
            groups.setdefault(shared, []).append(_row(name, aspect, languages.get(name), result[aspect]))
    # Urdu first, then English, then the rest, each dataset's rows in aspect order
    order = {"ur": 0, "en": 1}
    for rows in groups.values():
        rows.sort(key=lambda r: (order.get(r["language"], 2), r["dataset"], r["aspect"]))
    shared = {g: rows for g, rows in sorted(groups.items()) if len({r["dataset"] for r in rows}) > 1}
    apart = {g: rows for g, rows in sorted(groups.items()) if g not in shared}

    comparisons = []
    for aspect, rows in shared.items():
        english = [r for r in rows if r["language"] == "en"]
        urdu = [r for r in rows if r["language"] == "ur"]
        for en, ur in itertools.product(english, urdu):
            comparisons.append({
                "aspect": aspect,
                "english": f"{en['dataset']}/{en['aspect']}",
                "urdu": f"{ur['dataset']}/{ur['aspect']}",
                "alpha_interval_difference": _difference(en["krippendorff_alpha"]["interval"],
                                                         ur["krippendorff_alpha"]["interval"]),
                "mean_pairwise_pearson_difference": _difference(en["mean_pairwise_pearson"],
                                                                ur["mean_pairwise_pearson"]),
                "alpha_interval_cis_overlap": _overlap((en["krippendorff_alpha_ci"] or {}).get("interval"),
                                                       (ur["krippendorff_alpha_ci"] or {}).get("interval")),
            })

    rows = [r for group in groups.values() for r in group]
    notes = [] if any(r["language"] == "en" for r in rows) else [ENGLISH_NOTE]
    off_grid = sorted({f"{r['dataset']}/{r['aspect']}: {', '.join(f'{v:g}' for v in r['off_grid_values'])}"
                       for r in rows if r["off_grid_values"]})
    notes.append(ROUNDING_NOTE + (f" Off-grid ratings: {'; '.join(off_grid)}." if off_grid else ""))
    small = sorted({(r["dataset"], r["n_items"]) for r in rows if r["n_items"] < SMALL_SAMPLE_ITEMS})
    for name, n_items in small:
        notes.append(f"{name} has {n_items} items: its bootstrap intervals (expanded percentile, "
                     f"items resampled) are wide because {n_items} items say little about agreement; "
                     f"a difference whose intervals overlap is not evidence of a cultural difference.")
    for r in rows:
        for key, reason in r["undefined"].items():
            notes.append(f"{r['dataset']}/{r['aspect']}: {key} is undefined (n/a): {reason}.")
    return {
        "datasets": {name: {"language": languages.get(name), "aspects": sorted(result),
                            "compare_as": dict(compare_as.get(name, {}))} for name, result in results.items()},
        "shared_aspects": shared,
        "separate_aspects": apart,
        "comparisons": comparisons,
        "english_per_annotator_available": any(r["language"] == "en" for r in rows),
        "notes": notes,
    }


HEADER = ("| aspect | dataset | rated as | language | alpha interval | alpha ordinal | mean pairwise r | "
          "mean pairwise rho | Cohen's kappa (rounded) | QWK | human ceiling r | items | annotators |")


def _table_row(aspect: str, r: dict) -> str:
    alpha_ci = r["krippendorff_alpha_ci"] or {}
    return (f"| {aspect} | {r['dataset']} | {r['aspect']} | {r['language'] or 'unspecified'} | "
            + " | ".join(_with_ci(r["krippendorff_alpha"][level], alpha_ci.get(level))
                         for level in ("interval", "ordinal"))
            + " | " + " | ".join(_with_ci(r[key], r[f"{key}_ci"]) for key in STATISTICS)
            + f" | {_fmt(r['human_ceiling'])} | {r['n_items']} | {r['n_annotators']} |")


def cross_culture_markdown(summary: dict) -> str:
    lines = ["# Annotator agreement across cultures: English vs Urdu", "",
             "Point estimate [bootstrap interval]; n/a: undefined (see the notes).", ""]
    lines += ["## Aspects both languages rated", "", HEADER, "|---" * 13 + "|"]
    for aspect, rows in summary["shared_aspects"].items():
        lines += [_table_row(aspect, r) for r in rows]
    if summary["comparisons"]:
        lines += ["", "English minus Urdu:", "",
                  "| aspect | English | Urdu | alpha interval | mean pairwise r | alpha intervals overlap |",
                  "|---|---|---|---|---|---|"]
        for d in summary["comparisons"]:
            delta = [_fmt(d[key]) if d[key] is None else f"{d[key]:+.3f}"
                     for key in ("alpha_interval_difference", "mean_pairwise_pearson_difference")]
            overlap = "n/a" if d["alpha_interval_cis_overlap"] is None else str(d["alpha_interval_cis_overlap"])
            lines.append(f"| {d['aspect']} | {d['english']} | {d['urdu']} | {delta[0]} | {delta[1]} | {overlap} |")
    if summary["separate_aspects"]:
        lines += ["", "## Aspects only one dataset rated", "", HEADER, "|---" * 13 + "|"]
        for aspect, rows in summary["separate_aspects"].items():
            lines += [_table_row(aspect, r) for r in rows]
    lines += ["", "Notes:", ""] + [f"- {note}" for note in summary["notes"]] + [""]
    return "\n".join(lines)


def plot_entries(summary: dict, results: dict[str, dict]) -> list[tuple[str, str, dict]]:
    """(group, bar label, per-aspect result) for agreement.plot_alpha, in the table's order."""
    return [(aspect, f"{r['dataset']}/{r['aspect']}" if r["aspect"] != aspect else r["dataset"],
             results[r["dataset"]][r["aspect"]])
            for part in ("shared_aspects", "separate_aspects")
            for aspect, rows in summary[part].items() for r in rows]
