"""Human evaluation of EmPO replies, part 3: results from validated ratings joined with the key.

- Per model and dimension: the mean over prompts of each reply's mean rating (over its
  annotators), with a percentile bootstrap interval over prompts.
- Between every two models, per dimension, on the prompts both were rated on: the mean paired
  difference with its bootstrap interval, a paired permutation test, Holm-adjusted across the
  dimensions of that pair, and win rates (which reply's mean rating is higher).
- Per dimension: inter-annotator agreement through the agreement stage itself (agreement.analyse:
  Krippendorff's alpha at every level, pairwise statistics, the human ceiling), items = replies.
- With an LLM judge: alpha with and without the judge as one more rater, and the judge against the
  mean of the humans (agreement.human_vs_model).
The statistics are the project's own (evaluation.bootstrap_interval, paired_permutation_test,
holm; agreement.*); nothing here re-implements them.
"""

from __future__ import annotations

import itertools
import logging
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from empathy_workflow.core import reliability, stats
from empathy_workflow.core.io import InputError, json_safe

LOGGER = logging.getLogger(__name__)


def reply_means(ratings: pd.DataFrame, key: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """One row per (reply, dimension): model, prompt_id, mean rating, number of ratings."""
    joined = ratings.merge(key, on="item_id", how="left").merge(items[["item_id", "prompt_id"]], on="item_id")
    if joined["model"].isna().any():
        raise InputError(f"key.csv lacks item(s) {sorted(joined.loc[joined['model'].isna(), 'item_id'].unique())[:5]}")
    return (joined.groupby(["model", "prompt_id", "item_id", "dimension"], as_index=False)["score"]
            .agg(mean="mean", n="size"))


def model_scores(means: pd.DataFrame, models: Sequence[str], dimensions: Sequence[str], settings: Mapping,
                 seed: int) -> dict:
    resamples, confidence = int(settings["bootstrap"]), float(settings["confidence"])
    result = {}
    for model in models:
        result[model] = {}
        for dimension in dimensions:
            part = means[(means["model"] == model) & (means["dimension"] == dimension)]
            values = part["mean"].to_numpy(float)
            low, high = stats.bootstrap_interval(
                values, resamples, stats._rng(seed, "human_eval", model, dimension), confidence)
            result[model][dimension] = {"mean": float(values.mean()) if values.size else None,
                                        "ci": [low, high] if values.size else None,
                                        "n_replies": int(values.size), "n_ratings": int(part["n"].sum())}
    return result


def comparisons(means: pd.DataFrame, models: Sequence[str], dimensions: Sequence[str], settings: Mapping,
                seed: int) -> list[dict]:
    """Paired tests and win rates for every two models, Holm across the dimensions of each pair."""
    resamples, confidence = int(settings["bootstrap"]), float(settings["confidence"])
    permutations = int(settings["permutations"])
    records = []
    for a, b in itertools.combinations(models, 2):
        pair = []
        for dimension in dimensions:
            # one reply per (model, prompt): the prompts where both models' replies were rated
            part = means[means["dimension"] == dimension].pivot(index="prompt_id", columns="model", values="mean")
            both = part.reindex(columns=[a, b]).dropna()
            x, y = both[a].to_numpy(float), both[b].to_numpy(float)
            n = int(x.size)
            low, high = stats.bootstrap_interval(
                x - y, resamples, stats._rng(seed, "human_eval.difference", a, b, dimension), confidence)
            wins_a, wins_b = int((x > y).sum()), int((x < y).sum())
            pair.append({
                "a": a, "b": b, "dimension": dimension, "n_prompts": n,
                "mean_a": float(x.mean()) if n else None, "mean_b": float(y.mean()) if n else None,
                "difference": float((x - y).mean()) if n else None,
                "ci": [low, high] if n else None,
                "p_value": stats.paired_permutation_test(
                    x, y, permutations, stats._rng(seed, "human_eval.permutation", a, b, dimension)),
                "wins_a": wins_a, "wins_b": wins_b, "ties": n - wins_a - wins_b,
                # ties count half: 0.5 means neither model's replies are preferred
                "win_rate_a": (wins_a + 0.5 * (n - wins_a - wins_b)) / n if n else None,
            })
        for record, adjusted in zip(pair, stats.holm([r["p_value"] for r in pair])):
            record["p_value_holm"] = adjusted
        records += pair
    return records


def agreement_by_dimension(ratings: pd.DataFrame, dimensions: Mapping[str, Mapping], settings: Mapping, seed: int,
                           logger: logging.Logger | None = None) -> dict:
    """reliability.analyse per dimension (each has its own scale). A dimension where agreement is
    undefined (e.g. every rating the same, or no item rated twice) gets the stage's reason instead."""
    logger = logger or LOGGER
    result = {}
    for name, scale in dimensions.items():
        part = ratings[ratings["dimension"] == name].rename(columns={"dimension": "aspect"})
        if part.empty:
            result[name] = {"undefined": "no ratings"}
            continue
        try:
            analysed, _ = reliability.analyse(part, {"min": scale["min"], "max": scale["max"]}, settings, seed,
                                            source=f"human ratings, dimension {name}", logger=logger)
            result[name] = analysed[name]
        except InputError as error:
            logger.warning("agreement on %s undefined: %s", name, error)
            result[name] = {"undefined": str(error)}
    return result


def _alphas(part: pd.DataFrame) -> dict:
    matrix, _, _ = stats.reliability_matrix(part)
    domain = np.unique(matrix[~np.isnan(matrix)])
    values = {}
    for level in stats.LEVELS:
        try:
            values[level] = stats.krippendorff_alpha(matrix, level, domain)
        except ValueError:  # one value only: alpha undefined
            values[level] = None
    return values


def judge_agreement(humans: pd.DataFrame, judge: pd.DataFrame, dimensions: Mapping[str, Mapping],
                    settings: Mapping, seed: int) -> dict:
    """Per dimension: alpha (every level) of the humans alone and with the judge as one more
    rater, on the items the judge rated; and the judge's score against the mean human rating."""
    result = {}
    for name, scale in dimensions.items():
        h = humans[humans["dimension"] == name]
        j = judge[judge["dimension"] == name]
        shared = sorted(set(h["item_id"]) & set(j["item_id"]))
        if len(shared) < 2 or h.empty:
            result[name] = {"undefined": f"{len(shared)} item(s) rated by the judge and the humans"}
            continue
        h, j = h[h["item_id"].isin(shared)], j[j["item_id"].isin(shared)]
        human_mean = h.groupby("item_id")["score"].mean()
        judge_score = j.set_index("item_id")["score"].reindex(human_mean.index)
        rng = stats._rng(seed, "human_eval.judge", name)
        versus = stats.human_vs_model(human_mean, judge_score, {"min": scale["min"], "max": scale["max"]},
                                          settings, rng)
        result[name] = {"n_items": len(shared),
                        "alpha_humans": _alphas(h), "alpha_with_judge": _alphas(pd.concat([h, j])),
                        "judge_vs_human_mean": versus}
    return result


def results(ratings: pd.DataFrame, key: pd.DataFrame, items: pd.DataFrame, settings: Mapping,
            significance: Mapping, agreement_settings: Mapping, seed: int, judge: pd.DataFrame | None = None,
            logger: logging.Logger | None = None) -> dict:
    models, dimensions = list(settings["models"]), settings["dimensions"]
    means = reply_means(ratings, key, items)
    out = {
        "dimensions": {name: {k: v for k, v in entry.items() if k in ("label", "min", "max", "step")}
                       for name, entry in dimensions.items()},
        "unit": "a reply's mean rating over its annotators; means and intervals over prompts",
        "interval": f"{significance['confidence']:.0%} percentile bootstrap over prompts "
                    f"({significance['bootstrap']} resamples)",
        "test": f"paired permutation test (random sign flips, {significance['permutations']} permutations), "
                f"two-sided; p_value_holm: Holm across the dimensions of each model pair",
        "models": model_scores(means, models, list(dimensions), significance, seed),
        "comparisons": comparisons(means, models, list(dimensions), significance, seed),
        "agreement": agreement_by_dimension(ratings, dimensions, agreement_settings, seed, logger),
        "seed": int(seed),
    }
    if judge is not None:
        out["llm_judge"] = judge_agreement(ratings, judge, dimensions, agreement_settings, seed)
    return json_safe(out)


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _interval(ci) -> str:
    return "n/a" if not ci or ci[0] is None else f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"


def markdown(result: Mapping, counts: Mapping | None = None) -> str:
    dimensions = list(result["dimensions"])
    models = list(result["models"])
    lines = ["# Human evaluation of EmPO replies", "",
             f"Blinded ratings of each model's reply to the same test prompts. Unit: {result['unit']}; "
             f"interval: {result['interval']}.", ""]
    if counts:
        lines += [f"Ratings: {counts['ratings']} from {len(counts['annotators'])} annotator(s) "
                  f"({counts['empty_scores']} empty score(s) counted as missing).", ""]
    lines += ["| model | " + " | ".join(dimensions) + " |", "|---|" + "---|" * len(dimensions)]
    for model in models:
        cells = [f"{_fmt(result['models'][model][d]['mean'])} {_interval(result['models'][model][d]['ci'])}"
                 for d in dimensions]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += ["", f"Paired comparisons ({result['test']}):", "",
              "| A | B | dimension | prompts | mean A - B [interval] | p | p (Holm) | A wins / ties / B wins | "
              "win rate of A |", "|---|---|---|---|---|---|---|---|---|"]
    for c in result["comparisons"]:
        lines.append(f"| {c['a']} | {c['b']} | {c['dimension']} | {c['n_prompts']} | {_fmt(c['difference'])} "
                     f"{_interval(c['ci'])} | {_fmt(c['p_value'])} | {_fmt(c['p_value_holm'])} | "
                     f"{c['wins_a']} / {c['ties']} / {c['wins_b']} | {_fmt(c['win_rate_a'])} |")
    lines += ["", "Inter-annotator agreement per dimension (the agreement stage's statistics; items are replies):", "",
              "| dimension | alpha nominal | alpha ordinal | alpha interval | alpha ratio | mean pairwise r | "
              "human ceiling r | items | annotators |", "|---|---|---|---|---|---|---|---|---|"]
    for name, entry in result["agreement"].items():
        if "undefined" in entry:
            lines.append(f"| {name} | undefined: {entry['undefined']} |  |  |  |  |  |  |  |")
            continue
        alpha = entry["krippendorff_alpha"]
        lines.append(f"| {name} | " + " | ".join(_fmt(alpha[level]) for level in stats.LEVELS)
                     + f" | {_fmt(entry['mean_pairwise_pearson'])} | "
                       f"{_fmt(entry['human_ceiling']['expected_correlation'])} | {entry['n_items']} | "
                       f"{entry['n_annotators']} |")
    if "llm_judge" in result:
        lines += ["", "LLM judge (annotator `llm_judge`) against the humans:", "",
                  "| dimension | alpha interval, humans | alpha interval, with judge | judge vs mean of humans: "
                  "Pearson | Spearman | items |", "|---|---|---|---|---|---|"]
        for name, entry in result["llm_judge"].items():
            if "undefined" in entry:
                lines.append(f"| {name} | undefined: {entry['undefined']} |  |  |  |  |")
                continue
            versus = entry["judge_vs_human_mean"]
            lines.append(f"| {name} | {_fmt(entry['alpha_humans']['interval'])} | "
                         f"{_fmt(entry['alpha_with_judge']['interval'])} | {_fmt(versus['pearson'])} | "
                         f"{_fmt(versus['spearman'])} | {entry['n_items']} |")
    return "\n".join(lines) + "\n"
