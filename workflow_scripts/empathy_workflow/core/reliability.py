"""TODO docstring (from agreement: Annotator agreement (paper 1): how much do annotators agree on empathic similarity, and what)"""

from __future__ import annotations

import itertools
import logging
import math
import warnings
import zlib
from typing import Callable

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from empathy_workflow.core.ratings import validate_ratings
from empathy_workflow.core.stats import (
    LEVELS,
    _finite,
    expanded_tail,
    krippendorff_alpha,
    pearson,
    reliability_matrix,
    round_half_up,
    spearman,
    value_counts,
)

LOGGER = logging.getLogger(__name__)


PAIR_STATISTICS = ("pearson", "spearman", "cohen_kappa", "quadratic_weighted_kappa")


# Keys of the per-aspect result that carry a bootstrap interval (the `ci` dict mirrors them).
MEAN_KEYS = {
    "pearson": "mean_pairwise_pearson",
    "spearman": "mean_pairwise_spearman",
    "cohen_kappa": "mean_pairwise_cohen_kappa",
    "quadratic_weighted_kappa": "quadratic_weighted_kappa",
}


CEILING_METHOD = (
    "Human ceiling. (1) Leave-one-out: each annotator's Pearson/Spearman correlation with the mean "
    "of the other annotators' ratings, over the items that annotator rated and at least one other "
    "annotator rated. (2) Expected correlation of a perfect model with the aggregated (mean) label: "
    "classical test theory with the Spearman-Brown formula. With r = the mean pairwise Pearson "
    "correlation between annotators (the reliability of one annotator) and k = the mean number of "
    "ratings per item, the reliability of the k-annotator mean is R = k*r / (1 + (k-1)*r); a model "
    "that predicts each item's true (population-mean) score perfectly correlates with the observed "
    "mean label at sqrt(R) (the correlation of a true score with its measurement). This is the "
    "ceiling for Pearson against the mean label; R <= 0 gives a ceiling of 0. (3) Split-half check: "
    "the annotators are split into two halves in every balanced way (at most 50 seeded splits), the "
    "per-item means of the halves are correlated (r_h, averaged over splits), stepped up with "
    "R_sh = 2*r_h / (1 + r_h), and the ceiling is sqrt(R_sh)."
)


def cohen_kappa(x: np.ndarray, y: np.ndarray) -> float:
    """Cohen's kappa on the given categories (unweighted); NaN when chance agreement is 1."""
    categories, codes = np.unique(np.concatenate([x, y]), return_inverse=True)
    n, size = len(x), len(categories)
    table = np.bincount(codes[:n] * size + codes[n:], minlength=size * size).reshape(size, size) / n
    observed = np.trace(table)
    expected = float(table.sum(axis=1) @ table.sum(axis=0))
    return float((observed - expected) / (1 - expected)) if expected < 1 else math.nan


def rounded_cohen_kappa(x: np.ndarray, y: np.ndarray) -> float:
    """Cohen's kappa after rounding half-point ratings up to integers (2.5 -> 3)."""
    return cohen_kappa(round_half_up(x), round_half_up(y))


def quadratic_weighted_kappa(x: np.ndarray, y: np.ndarray) -> float:
    """Quadratic-weighted kappa on the raw ratings, weights = squared difference of the values:
    1 - mean (x_i - y_i)^2 / E[(X - Y)^2] with X, Y drawn independently from the two raters'
    marginals. On equally spaced categories this is the usual QWK (weights (i-j)^2/(K-1)^2)."""
    observed = float(((x - y) ** 2).mean())
    expected = float(x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    return 1 - observed / expected if expected > 0 else math.nan


PAIR_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "pearson": pearson,
    "spearman": spearman,
    "cohen_kappa": rounded_cohen_kappa,
    "quadratic_weighted_kappa": quadratic_weighted_kappa,
}


def pairwise(matrix: np.ndarray, function: Callable, min_common: int = 2) -> tuple[np.ndarray, int]:
    """Annotator x annotator matrix of `function` over the items both rated (NaN on the diagonal
    and where undefined), and how many annotator pairs were undefined (too few shared items, or a
    constant rater)."""
    size = matrix.shape[0]
    result = np.full((size, size), np.nan)
    skipped = 0
    observed = ~np.isnan(matrix)
    for a, b in itertools.combinations(range(size), 2):
        both = observed[a] & observed[b]
        value = function(matrix[a, both], matrix[b, both]) if both.sum() >= min_common else math.nan
        if math.isnan(value):
            skipped += 1
        result[a, b] = result[b, a] = value
    return result, skipped


def pairwise_complete(matrix: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """`pairwise(matrix, PAIR_FUNCTIONS[name])` for a matrix without missing ratings, all pairs at
    once (the same formulas, vectorised). The bootstrap recomputes every pair for each resample;
    per-pair Python calls made 8 annotators x 10 aspects x 1000 resamples take minutes."""
    rows = matrix.astype(float)
    n_items = rows.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        if name in ("pearson", "spearman"):
            if name == "spearman":
                rows = rankdata(rows, axis=1)
            centered = rows - rows.mean(axis=1, keepdims=True)
            squares = (centered * centered).sum(axis=1)
            denominator = np.sqrt(np.outer(squares, squares))
            result = np.where(denominator > 0, (centered @ centered.T) / denominator, np.nan)
        elif name == "quadratic_weighted_kappa":
            observed = ((rows[:, None, :] - rows[None, :, :]) ** 2).mean(axis=2)
            means, variances = rows.mean(axis=1), rows.var(axis=1)
            expected = variances[:, None] + variances[None, :] + (means[:, None] - means[None, :]) ** 2
            result = np.where(expected > 0, 1 - observed / expected, np.nan)
        elif name == "cohen_kappa":
            rounded = round_half_up(rows)
            onehot = (rounded[:, :, None] == np.unique(rounded)[None, None, :]).astype(float)
            observed = np.einsum("aik,bik->ab", onehot, onehot) / n_items
            marginals = onehot.mean(axis=1)
            expected = marginals @ marginals.T
            result = np.where(expected < 1, (observed - expected) / (1 - expected), np.nan)
        else:
            raise ValueError(f"unknown pairwise statistic {name!r}")
    np.fill_diagonal(result, np.nan)
    upper = result[np.triu_indices(result.shape[0], 1)]
    return result, int(np.isnan(upper).sum())


def leave_one_out_complete(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`leave_one_out` (Pearson, Spearman) for a matrix without missing ratings, vectorised."""
    # the others' mean as leave_one_out takes it (not total minus self: rounding would break ties
    # that Spearman's average ranks must see)
    others = np.stack([np.nanmean(np.delete(matrix, a, axis=0), axis=0) for a in range(matrix.shape[0])])

    def rowwise(x, y):
        x = x - x.mean(axis=1, keepdims=True)
        y = y - y.mean(axis=1, keepdims=True)
        denominator = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denominator > 0, (x * y).sum(axis=1) / denominator, np.nan)

    return rowwise(matrix, others), rowwise(rankdata(matrix, axis=1), rankdata(others, axis=1))


def mean_pairwise(pair_matrix: np.ndarray) -> float:
    upper = pair_matrix[np.triu_indices(pair_matrix.shape[0], 1)]
    upper = upper[~np.isnan(upper)]
    return float(upper.mean()) if upper.size else math.nan


def leave_one_out(matrix: np.ndarray, function: Callable = pearson) -> np.ndarray:
    """Each annotator's correlation with the mean of the others, over items that annotator rated
    and at least one other annotator rated."""
    observed = ~np.isnan(matrix)
    values = np.full(matrix.shape[0], np.nan)
    for a in range(matrix.shape[0]):
        others = np.delete(matrix, a, axis=0)
        rated = observed[a] & (~np.isnan(others)).any(axis=0)
        if rated.sum() >= 2:
            values[a] = function(matrix[a, rated], np.nanmean(others[:, rated], axis=0))
    return values


def spearman_brown(r: float, k: float) -> float:
    """Reliability of the mean of k raters whose pairwise reliability is r."""
    return k * r / (1 + (k - 1) * r)


def ceiling_from_reliability(reliability: float) -> float:
    """Correlation of the true score with an observed score of this reliability (0 if R <= 0)."""
    if math.isnan(reliability):
        return math.nan
    return math.sqrt(reliability) if reliability > 0 else 0.0


def half_splits(size: int, rng: np.random.Generator, limit: int = 50) -> list[tuple[tuple, tuple]]:
    """Balanced splits of `size` annotators into two halves (each split once); a seeded sample of
    `limit` of them when there are more."""
    everyone = set(range(size))
    splits = []
    for first in itertools.combinations(range(size), size // 2):
        second = tuple(sorted(everyone - set(first)))
        if (second, first) not in splits:
            splits.append((first, second))
    if len(splits) > limit:
        chosen = sorted(rng.choice(len(splits), size=limit, replace=False))
        splits = [splits[i] for i in chosen]
    return splits


def split_half(matrix: np.ndarray, splits: list) -> float:
    """Mean correlation between the per-item means of two annotator halves."""
    values = []
    for first, second in splits:
        with warnings.catch_warnings():
            # an item no annotator of a half rated has no half mean (NaN, skipped below)
            warnings.simplefilter("ignore", RuntimeWarning)
            a = np.nanmean(matrix[list(first)], axis=0) if _any_rated(matrix, first) else None
            b = np.nanmean(matrix[list(second)], axis=0) if _any_rated(matrix, second) else None
        if a is None or b is None:
            continue
        both = ~np.isnan(a) & ~np.isnan(b)
        if both.sum() >= 2:
            r = pearson(a[both], b[both])
            if not math.isnan(r):
                values.append(r)
    return float(np.mean(values)) if values else math.nan


def _any_rated(matrix: np.ndarray, rows) -> bool:
    return bool((~np.isnan(matrix[list(rows)])).any())


def point_statistics(matrix: np.ndarray, domain: np.ndarray, splits: list | None = None) -> dict:
    """Every scalar statistic of one aspect (used for the estimate and for each bootstrap resample)."""
    counts = value_counts(matrix, domain)
    stats: dict = {f"krippendorff_alpha.{level}": krippendorff_alpha(level=level, domain=domain, counts=counts)
                   for level in LEVELS}
    pairs = {}
    complete = not np.isnan(matrix).any()
    for name, function in PAIR_FUNCTIONS.items():
        pairs[name], stats[f"skipped.{name}"] = (pairwise_complete(matrix, name) if complete
                                                 else pairwise(matrix, function))
        stats[MEAN_KEYS[name]] = mean_pairwise(pairs[name])
    k = float((~np.isnan(matrix)).sum(axis=0).mean())
    reliability = spearman_brown(stats["mean_pairwise_pearson"], k)
    stats["human_ceiling.reliability_of_mean"] = reliability
    stats["human_ceiling.expected_correlation"] = ceiling_from_reliability(reliability)
    if complete:
        loo_p, loo_s = leave_one_out_complete(matrix)
    else:
        loo_p, loo_s = leave_one_out(matrix, pearson), leave_one_out(matrix, spearman)
    stats["human_ceiling.leave_one_out_mean_pearson"] = float(np.nanmean(loo_p)) if (~np.isnan(loo_p)).any() else math.nan
    stats["human_ceiling.leave_one_out_mean_spearman"] = float(np.nanmean(loo_s)) if (~np.isnan(loo_s)).any() else math.nan
    if splits is not None:
        r_half = split_half(matrix, splits)
        stats["human_ceiling.split_half_expected_correlation"] = (
            ceiling_from_reliability(spearman_brown(r_half, 2)) if not math.isnan(r_half) else math.nan)
    stats["_pairs"] = pairs
    stats["_loo"] = (loo_p, loo_s)
    stats["_k"] = k
    return stats


def bootstrap(matrix: np.ndarray, domain: np.ndarray, resamples: int, confidence: float, seed: int,
              aspect: str, logger: logging.Logger | None = None) -> dict:
    """Percentile intervals from resampling items with replacement. The generator is seeded from
    (seed, aspect name), so an aspect's interval does not depend on which other aspects exist."""
    logger = logger or LOGGER
    rng = np.random.default_rng([seed, zlib.crc32(aspect.encode("utf-8"))])
    n_items = matrix.shape[1]
    draws: dict[str, list[float]] = {}
    for index in range(resamples):
        sample = matrix[:, rng.integers(0, n_items, size=n_items)]
        # An annotator may vanish from a resample when they rated few items; drop empty rows.
        sample = sample[(~np.isnan(sample)).any(axis=1)]
        if sample.shape[0] < 2:
            stats = {}
        else:
            with np.errstate(all="ignore"):
                stats = _safe_statistics(sample, domain)
        for key in CI_KEYS:
            draws.setdefault(key, []).append(stats.get(key, math.nan))
        if (index + 1) % 250 == 0:
            logger.info("aspect %s: bootstrap %d/%d", aspect, index + 1, resamples)
    tail = expanded_tail(n_items, confidence)
    intervals, undefined = {}, {}
    for key, values in draws.items():
        values = np.asarray(values, dtype=float)
        finite = values[np.isfinite(values)]
        undefined[key] = int(values.size - finite.size)
        # an interval over the defined resamples only would be conditional on the statistic existing
        honest = finite.size and undefined[key] <= MAX_UNDEFINED_SHARE * values.size
        intervals[key] = ([float(np.quantile(finite, tail)), float(np.quantile(finite, 1 - tail))]
                          if honest else None)
    return {"intervals": intervals, "undefined": undefined, "tail_probability": tail}


MAX_UNDEFINED_SHARE = 0.1


BOOTSTRAP_METHOD = (
    "expanded percentile (Hesterberg 2015, The American Statistician 69(4)): items resampled with "
    "replacement; the interval runs between the bootstrap quantiles at tail probability "
    "Phi(-sqrt(n/(n-1)) * t(n-1, 1-(1-confidence)/2)), n = items, instead of (1-confidence)/2. "
    "The plain percentile interval is too narrow for few items; for 10 items at 95% the tails are "
    "0.0086 instead of 0.025, for 291 items 0.0243. An interval is null when the statistic is "
    f"undefined in more than {MAX_UNDEFINED_SHARE:.0%} of the resamples.")


CI_KEYS = tuple(f"krippendorff_alpha.{level}" for level in LEVELS) + tuple(MEAN_KEYS.values()) + (
    "human_ceiling.expected_correlation", "human_ceiling.leave_one_out_mean_pearson",
    "human_ceiling.leave_one_out_mean_spearman")


def _safe_statistics(sample: np.ndarray, domain: np.ndarray) -> dict:
    try:
        return point_statistics(sample, domain)
    except ValueError:
        # krippendorff raises when a resample holds one value only: that resample is undefined.
        return {}


def _nest(flat: dict) -> dict:
    """{'a.b': v} -> {'a': {'b': v}} for the JSON layout."""
    nested: dict = {}
    for key, value in flat.items():
        head, _, tail = key.partition(".")
        if tail:
            nested.setdefault(head, {})[tail] = value
        else:
            nested[head] = value
    return nested


def analyse_aspect(part: pd.DataFrame, aspect: str, exclusions: dict, settings: dict, seed: int,
                   logger: logging.Logger | None = None) -> dict:
    """All statistics of one aspect of a validated ratings table."""
    logger = logger or LOGGER
    matrix, annotators, items = reliability_matrix(part)
    domain = np.unique(matrix[~np.isnan(matrix)])
    splits = half_splits(len(annotators), np.random.default_rng([seed, zlib.crc32(aspect.encode())]))
    stats = point_statistics(matrix, domain, splits)
    pairs, (loo_p, loo_s), k = stats.pop("_pairs"), stats.pop("_loo"), stats.pop("_k")
    skipped = {name: stats.pop(f"skipped.{name}") for name in PAIR_STATISTICS}
    for name, count in skipped.items():
        if count:
            logger.warning("aspect %s: %d annotator pair(s) have %s undefined (fewer than two shared "
                           "items or a constant rater); the mean is over the other pairs", aspect, count, name)
    n_pairs = len(annotators) * (len(annotators) - 1) // 2
    undefined = undefined_reasons(stats, n_pairs)
    for key, reason in undefined.items():
        logger.warning("aspect %s: %s is undefined: %s", aspect, key, reason)
    nested = _nest(stats)
    ceiling = nested["human_ceiling"]
    ceiling.update({
        "method": CEILING_METHOD,
        "mean_ratings_per_item": k,
        "single_annotator_reliability": stats["mean_pairwise_pearson"],
        "leave_one_out": {
            "pearson": {a: _finite(float(v)) for a, v in zip(annotators, loo_p)},
            "spearman": {a: _finite(float(v)) for a, v in zip(annotators, loo_s)},
        },
        "split_half_splits": len(splits),
    })
    resamples = int(settings["bootstrap"])
    confidence = float(settings["confidence"])
    tail = None
    if resamples > 0:
        boot = bootstrap(matrix, domain, resamples, confidence, seed, aspect, logger)
        tail = boot["tail_probability"]
        undefined_resamples = {key: count for key, count in boot["undefined"].items() if count}
        if undefined_resamples:
            logger.warning("aspect %s: undefined in some bootstrap resamples (left out of the "
                           "interval): %s", aspect, undefined_resamples)
        for key, interval in boot["intervals"].items():
            if key in undefined:
                boot["intervals"][key] = None  # no interval around an undefined estimate
            elif interval is None:
                undefined[f"ci.{key}"] = (f"undefined in {boot['undefined'][key]} of {resamples} "
                                          f"resamples (more than {MAX_UNDEFINED_SHARE:.0%})")
        ci = _nest(boot["intervals"])
    else:
        ci, undefined_resamples = None, {}
        logger.info("aspect %s: agreement.bootstrap is 0; no confidence intervals", aspect)
    observed = ~np.isnan(matrix)
    result = {
        **{key: value for key, value in nested.items() if key != "human_ceiling"},
        "human_ceiling": ceiling,
        "ci": ci,
        "bootstrap": {"resamples": resamples, "confidence": confidence, "seed": seed,
                      "method": BOOTSTRAP_METHOD, "tail_probability": tail,
                      "undefined_resamples": undefined_resamples},
        "undefined": undefined,
        "n_items": len(items),
        "n_annotators": len(annotators),
        "n_ratings": int(observed.sum()),
        "n_annotator_pairs": n_pairs,
        "annotators": annotators,
        "value_domain": [float(v) for v in domain],
        "missing_ratings": int((~observed).sum()),
        "excluded": {**exclusions, "annotator_pairs_undefined": skipped},
        "pairwise": {name: {a: {b: _finite(float(pairs[name][i, j])) for j, b in enumerate(annotators) if i != j}
                            for i, a in enumerate(annotators)} for name in PAIR_STATISTICS},
        "annotator_means": {a: float(np.nanmean(matrix[i])) for i, a in enumerate(annotators)},
    }
    return _clean(result)


def undefined_reasons(stats: dict, n_pairs: int) -> dict[str, str]:
    """Why each undefined (NaN) point estimate is undefined; the JSON writes it as null."""
    reasons = {}
    for name, key in MEAN_KEYS.items():
        if math.isnan(stats[key]):
            reasons[key] = (f"undefined for all {n_pairs} annotator pairs: each pair shares fewer than "
                            f"two items or has a rater without variation" +
                            (" after rounding" if name == "cohen_kappa" else ""))
    for level in LEVELS:
        if math.isnan(stats[f"krippendorff_alpha.{level}"]):
            reasons[f"krippendorff_alpha.{level}"] = "no disagreement is expected by chance (one value)"
    derived = {"human_ceiling.reliability_of_mean": "needs the mean pairwise Pearson, which is undefined",
               "human_ceiling.expected_correlation": "needs the mean pairwise Pearson, which is undefined",
               "human_ceiling.leave_one_out_mean_pearson": "undefined for every annotator (a constant rater "
                                                           "or a constant mean of the others)",
               "human_ceiling.leave_one_out_mean_spearman": "undefined for every annotator (a constant rater "
                                                            "or a constant mean of the others)",
               "human_ceiling.split_half_expected_correlation": "undefined for every split of the annotators "
                                                                "(a half whose per-item means do not vary)"}
    for key, reason in derived.items():
        if key in stats and math.isnan(stats[key]):
            reasons[key] = reason
    return reasons


def _clean(value):
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return _finite(value)


def analyse(frame: pd.DataFrame, scale: dict, settings: dict, seed: int, source: str = "ratings",
            logger: logging.Logger | None = None) -> tuple[dict, pd.DataFrame]:
    """Validate, then analyse every aspect: ({aspect: result}, the validated table)."""
    logger = logger or LOGGER
    clean, exclusions = validate_ratings(frame, scale, source, logger)
    results = {}
    for aspect in sorted(clean["aspect"].unique()):
        part = clean[clean["aspect"] == aspect]
        logger.info("aspect %s: %d items, %d annotators, %d ratings", aspect, part["item_id"].nunique(),
                    part["annotator"].nunique(), len(part))
        results[aspect] = analyse_aspect(part, aspect, exclusions[aspect], settings, seed, logger)
    return results, clean
