"""Agreement measures on an items x annotators matrix: kappas, pairwise and leave-one-out
correlations, split-half reliability, the human ceiling they imply, and an item bootstrap of all
of them. Used by the agreement study and by EmPO's human evaluation."""

from __future__ import annotations

import itertools
import logging
import math
import warnings
import zlib
from typing import Callable

import numpy as np
from scipy.stats import rankdata

from empathy_workflow.core.stats import (
    LEVELS,
    expanded_tail,
    krippendorff_alpha,
    pearson,
    round_half_up,
    spearman,
    value_counts,
)

PAIR_STATISTICS = ("pearson", "spearman", "cohen_kappa", "quadratic_weighted_kappa")


# Keys of the per-aspect result that carry a bootstrap interval (the `ci` dict mirrors them).
MEAN_KEYS = {
    "pearson": "mean_pairwise_pearson",
    "spearman": "mean_pairwise_spearman",
    "cohen_kappa": "mean_pairwise_cohen_kappa",
    "quadratic_weighted_kappa": "quadratic_weighted_kappa",
}


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


LOGGER = logging.getLogger(__name__)

MAX_UNDEFINED_SHARE = 0.1

CI_KEYS = tuple(f"krippendorff_alpha.{level}" for level in LEVELS) + tuple(MEAN_KEYS.values()) + (
    "human_ceiling.expected_correlation", "human_ceiling.leave_one_out_mean_pearson",
    "human_ceiling.leave_one_out_mean_spearman")


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


def _safe_statistics(sample: np.ndarray, domain: np.ndarray) -> dict:
    try:
        return point_statistics(sample, domain)
    except ValueError:
        # krippendorff raises when a resample holds one value only: that resample is undefined.
        return {}
