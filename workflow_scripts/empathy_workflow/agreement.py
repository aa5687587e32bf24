"""Annotator agreement (paper 1): how much do annotators agree on empathic similarity, and what
does their disagreement cap a model at?

Everything works on a long-format table: item_id, annotator, aspect, score (a missing rating is an
absent row). `validate_ratings` turns bad input into an InputError or a counted exclusion;
`analyse_aspect` computes every statistic for one aspect, with bootstrap confidence intervals.
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings
import zlib
from typing import Callable

import krippendorff
import numpy as np
import pandas as pd
from scipy.stats import rankdata

from .io import InputError, require_numeric

LOGGER = logging.getLogger(__name__)

COLUMNS = ("item_id", "annotator", "aspect", "score")
LEVELS = ("nominal", "ordinal", "interval", "ratio")
MAX_DISTINCT_VALUES = 101
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


# ---------------------------------------------------------------------------------------------
# Input validation


def validate_ratings(frame: pd.DataFrame, scale: dict, source: str = "ratings",
                     logger: logging.Logger | None = None) -> tuple[pd.DataFrame, dict]:
    """Check a long-format ratings table; return (clean table, exclusions per aspect).

    Errors (InputError naming `source`, the row and the problem): a missing column, an empty
    item_id/annotator/aspect, a score that is not a number or off the declared scale, a duplicate
    (item, annotator, aspect) row, an aspect rated by one annotator, an aspect left with fewer than
    two items or with a single distinct value. Exclusions (counted and logged, never silent): rows
    with an empty score (a missing rating) and items rated by fewer than two annotators."""
    logger = logger or LOGGER
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing:
        raise InputError(f"{source}: lacks column(s) {', '.join(map(repr, missing))}; found "
                         f"{', '.join(map(repr, frame.columns))} (expected long format: "
                         f"{', '.join(COLUMNS)})")
    if frame.empty:
        raise InputError(f"{source}: no rating rows")
    extra = [column for column in frame.columns if column not in COLUMNS]
    if extra:
        logger.info("%s: ignoring extra column(s) %s", source, ", ".join(map(str, extra)))
    frame = frame.reset_index(drop=True)
    out = pd.DataFrame(index=frame.index)
    for column in ("item_id", "annotator", "aspect"):
        values = frame[column]
        text = values.astype("string").str.strip()
        empty = values.isna() | (text == "")
        if empty.any():
            row = int(empty.to_numpy().nonzero()[0][0])
            raise InputError(f"{source}: row {row + 2}, column {column!r}: empty value")
        # 1 and 1.0 written by different tools name the same item: normalise integral floats.
        out[column] = [_identifier(value) for value in values]
    low, high = float(scale["min"]), float(scale["max"])
    if not low < high:
        raise InputError(f"{source}: declared scale [{low}, {high}] is empty")
    out["score"] = require_numeric(frame, "score", source, allow_missing=True, low=low, high=high)

    duplicated = out.duplicated(["item_id", "annotator", "aspect"], keep=False)
    if duplicated.any():
        first = out[duplicated].iloc[0]
        rows = (out.index[duplicated & (out["item_id"] == first["item_id"])
                          & (out["annotator"] == first["annotator"])
                          & (out["aspect"] == first["aspect"])] + 2).tolist()
        raise InputError(
            f"{source}: {int(duplicated.sum())} duplicate (item_id, annotator, aspect) rows, e.g. rows "
            f"{', '.join(map(str, rows))}: item {first['item_id']!r}, annotator {first['annotator']!r}, "
            f"aspect {first['aspect']!r}; each annotator may rate an item once per aspect")

    exclusions: dict[str, dict] = {}
    kept = []
    for aspect in sorted(out["aspect"].unique()):
        part = out[out["aspect"] == aspect]
        empty = part["score"].isna()
        if empty.any():
            logger.warning("%s: aspect %r: %d row(s) with an empty score treated as missing ratings "
                           "(rows %s)", source, aspect, int(empty.sum()),
                           _preview((part.index[empty] + 2).tolist()))
        part = part[~empty]
        annotators = sorted(part["annotator"].unique())
        if len(annotators) < 2:
            raise InputError(f"{source}: aspect {aspect!r} is rated by {len(annotators)} annotator(s) "
                             f"({', '.join(annotators) or 'none'}); agreement needs at least two")
        counts = part.groupby("item_id")["score"].size()
        lonely = sorted(counts.index[counts < 2])
        if lonely:
            logger.warning("%s: aspect %r: excluding %d item(s) with fewer than two ratings: %s",
                           source, aspect, len(lonely), _preview(lonely))
        part = part[~part["item_id"].isin(lonely)]
        if part["item_id"].nunique() < 2:
            raise InputError(f"{source}: aspect {aspect!r} has {part['item_id'].nunique()} item(s) "
                             f"with at least two ratings; agreement needs at least two")
        if part["score"].nunique() > MAX_DISTINCT_VALUES:
            # The package's coincidence matrix costs items x values^2 memory; a rating scale has few values.
            raise InputError(f"{source}: aspect {aspect!r} has {part['score'].nunique()} distinct scores; "
                             f"agreement expects a rating scale (at most {MAX_DISTINCT_VALUES} values): "
                             f"round continuous scores to the scale's steps first")
        if part["score"].nunique() < 2:
            raise InputError(f"{source}: aspect {aspect!r}: every rating is {part['score'].iloc[0]}; "
                             f"agreement is undefined without variation")
        exclusions[aspect] = {
            "empty_score_rows": int(empty.sum()),
            "items_fewer_than_two_ratings": len(lonely),
            "ratings_of_excluded_items": int(counts[counts < 2].sum()),
        }
        kept.append(part)
    clean = pd.concat(kept).sort_values(["aspect", "item_id", "annotator"]).reset_index(drop=True)
    return clean, exclusions


def _identifier(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _preview(values: list, limit: int = 10) -> str:
    shown = ", ".join(map(str, values[:limit]))
    return shown + (f", ... ({len(values) - limit} more)" if len(values) > limit else "")


def reliability_matrix(part: pd.DataFrame) -> tuple[np.ndarray, list[str], list[str]]:
    """Annotators x items matrix of one aspect's scores, NaN where an annotator did not rate."""
    wide = part.pivot(index="annotator", columns="item_id", values="score")
    wide = wide.sort_index().reindex(sorted(wide.columns), axis=1)
    return wide.to_numpy(dtype=float), [str(a) for a in wide.index], [str(i) for i in wide.columns]


# ---------------------------------------------------------------------------------------------
# Statistics


def round_half_up(values) -> np.ndarray:
    """2.5 -> 3, 3.5 -> 4 (numpy's round sends halves to the even neighbour: 2.5 -> 2)."""
    return np.floor(np.asarray(values, dtype=float) + 0.5)


def value_counts(matrix: np.ndarray, domain: np.ndarray) -> np.ndarray:
    """Items x values: how many annotators gave each value to each item (the package's input)."""
    return (matrix.T[:, :, None] == domain[None, None, :]).sum(axis=1)


def krippendorff_alpha(matrix: np.ndarray | None = None, level: str = "interval",
                       domain: np.ndarray | None = None, counts: np.ndarray | None = None) -> float:
    """Krippendorff's alpha via the `krippendorff` package; `matrix` is annotators x items (NaN =
    missing). `domain` is the ordered value scale (needed for ordinal; values never used change
    neither nominal nor ordinal alpha). Pass `counts` (items x domain) instead to skip the count."""
    if counts is None:
        domain = np.unique(matrix[~np.isnan(matrix)]) if domain is None else np.asarray(domain, float)
        counts = value_counts(matrix, domain)
    return float(krippendorff.alpha(value_counts=counts, value_domain=domain, level_of_measurement=level))


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant (the caller counts it)."""
    x = x - x.mean()
    y = y - y.mean()
    denominator = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denominator) if denominator > 0 else math.nan


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman correlation: Pearson on average ranks (ties share their mean rank)."""
    return pearson(rankdata(x), rankdata(y))


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


def expanded_tail(n_items: int, confidence: float) -> float:
    """Tail probability of the expanded percentile interval (see BOOTSTRAP_METHOD): it restores
    the (n-1)/n variance factor and the t quantile the percentile interval lacks."""
    from scipy.stats import norm, t

    if n_items < 2:
        return (1 - confidence) / 2
    widened = math.sqrt(n_items / (n_items - 1)) * t.ppf(1 - (1 - confidence) / 2, n_items - 1)
    return float(norm.sf(widened))


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


def _finite(value):
    """JSON has no NaN: an undefined statistic is written as null (and counted elsewhere)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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


# ---------------------------------------------------------------------------------------------
# Markdown and plots


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


def plot_heatmaps(results: dict, directory, save_figure, new_figure) -> list[str]:
    """Annotator-by-annotator Pearson correlation, one heatmap per aspect."""
    import os

    written = []
    for aspect, result in results.items():
        annotators = result["annotators"]
        size = len(annotators)
        values = np.ones((size, size))
        for i, a in enumerate(annotators):
            for j, b in enumerate(annotators):
                if i != j:
                    v = result["pairwise"]["pearson"][a][b]
                    values[i, j] = np.nan if v is None else v
        figure, axis = new_figure(1.2 + 0.7 * size, 1.0 + 0.6 * size)
        image = axis.imshow(values, vmin=-1, vmax=1, cmap="RdBu_r")
        axis.set_xticks(range(size), annotators, rotation=45, ha="right")
        axis.set_yticks(range(size), annotators)
        for i in range(size):
            for j in range(size):
                if not np.isnan(values[i, j]):
                    axis.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=8)
        axis.set_title(f"{aspect}: Pearson r between annotators")
        figure.colorbar(image, ax=axis)
        path = os.path.join(directory, f"correlation_heatmap_{aspect}.png")
        save_figure(figure, path)
        written.append(path)
    return written


def plot_distributions(clean: pd.DataFrame, directory, save_figure, new_figure) -> str:
    """Share of each rating value per annotator, one panel per aspect."""
    import os

    aspects = sorted(clean["aspect"].unique())
    figure, axes = new_figure(4.2 * len(aspects), 3.4)
    figure.clf()
    axes = figure.subplots(1, len(aspects), squeeze=False)[0]
    domain = np.sort(clean["score"].unique())
    for axis, aspect in zip(axes, aspects):
        part = clean[clean["aspect"] == aspect]
        annotators = sorted(part["annotator"].unique())
        width = 0.8 / len(annotators)
        for index, annotator in enumerate(annotators):
            scores = part.loc[part["annotator"] == annotator, "score"]
            shares = [(scores == value).mean() for value in domain]
            axis.bar(np.arange(len(domain)) + index * width - 0.4 + width / 2, shares, width, label=annotator)
        axis.set_xticks(range(len(domain)), [f"{v:g}" for v in domain])
        axis.set_xlabel("rating")
        axis.set_title(aspect)
    axes[0].set_ylabel("share of the annotator's ratings")
    axes[-1].legend(fontsize=7, title="annotator")
    path = os.path.join(directory, "rating_distribution.png")
    save_figure(figure, path)
    return path


def plot_alpha(entries: list[tuple[str, str, dict]], path, save_figure, new_figure, title: str) -> None:
    """Krippendorff's alpha at each level with its bootstrap interval; entries are
    (group label, bar label, per-aspect result)."""
    levels = LEVELS
    groups = list(dict.fromkeys(group for group, _, _ in entries))
    figure, axis = new_figure(max(5.0, 1.8 * len(entries)), 3.8)
    width = 0.8 / len(levels)
    for index, level in enumerate(levels):
        xs, heights, lows, highs = [], [], [], []
        for position, (_, _, result) in enumerate(entries):
            value = result["krippendorff_alpha"][level]
            value = np.nan if value is None else value  # undefined: no bar
            interval = (result["ci"] or {}).get("krippendorff_alpha", {}).get(level)
            xs.append(position + index * width - 0.4 + width / 2)
            heights.append(value)
            lows.append(value - interval[0] if interval else 0)
            highs.append(interval[1] - value if interval else 0)
        axis.bar(xs, heights, width, yerr=[lows, highs], capsize=3, label=f"{level} alpha")
    axis.set_xticks(range(len(entries)), [f"{group}\n{label}" if len(groups) > 1 else label
                                          for group, label, _ in entries], fontsize=8)
    axis.axhline(0, color="black", linewidth=0.6)
    axis.set_ylabel("Krippendorff's alpha")
    axis.set_title(title)
    axis.legend(fontsize=8)
    save_figure(figure, path)


# ---------------------------------------------------------------------------------------------
# Aggregated scores (EmpathicStories ships only these; Urdu's are the annotator means)


def _distribution(values: pd.Series) -> dict:
    present = values.dropna()
    counts = present.value_counts().sort_index()
    return {
        "n": int(present.size),
        "missing": int(values.isna().sum()),
        "mean": float(present.mean()),
        "std": float(present.std(ddof=1)) if present.size > 1 else None,
        "counts": {f"{value:g}": int(count) for value, count in counts.items()},
    }


def _correlation_matrix(frame: pd.DataFrame, columns: list[str], method: str) -> dict:
    return {a: {b: _finite(float(frame[[a, b]].dropna().corr(method=method).iloc[0, 1]))
                for b in columns if b != a} for a in columns}


def _two_rater_bootstrap(x: np.ndarray, y: np.ndarray, resamples: int, confidence: float,
                         rng: np.random.Generator) -> dict:
    draws: dict[str, list[float]] = {"pearson": [], "spearman": []}
    for _ in range(resamples):
        index = rng.integers(0, x.size, size=x.size)
        with np.errstate(all="ignore"):
            draws["pearson"].append(pearson(x[index], y[index]))
            draws["spearman"].append(spearman(x[index], y[index]))
    tail = (1 - confidence) / 2
    out = {}
    for key, values in draws.items():
        values = np.asarray(values)
        finite = values[np.isfinite(values)]
        out[key] = [float(np.quantile(finite, tail)), float(np.quantile(finite, 1 - tail))] if finite.size else None
    return out


def human_vs_model(human: pd.Series, model: pd.Series, scale: dict, settings: dict,
                   rng: np.random.Generator) -> dict:
    """Agreement of an aggregated human score with a model's score on the same pairs: Pearson,
    Spearman (bootstrap intervals), and Krippendorff's alpha (interval) treating the two as raters
    when the model's scores lie on the human scale (otherwise alpha is null, with the reason)."""
    both = human.notna() & model.notna()
    x, y = human[both].to_numpy(float), model[both].to_numpy(float)
    result = {"n": int(both.sum()), "missing": int((~both).sum()),
              "pearson": _finite(pearson(x, y)), "spearman": _finite(spearman(x, y)),
              "human_mean": float(x.mean()), "model_mean": float(y.mean())}
    off = int(((y < scale["min"]) | (y > scale["max"])).sum())
    if off:
        result["krippendorff_alpha_interval"] = None
        result["alpha_note"] = (f"not computed: {off} model score(s) lie outside the human scale "
                                f"[{scale['min']:g}, {scale['max']:g}], so the two are not raters on one scale")
    else:
        result["krippendorff_alpha_interval"] = krippendorff_alpha(np.vstack([x, y]), "interval")
        result["alpha_note"] = "interval alpha with the human aggregate and the model as two raters"
    resamples = int(settings["bootstrap"])
    result["ci"] = _two_rater_bootstrap(x, y, resamples, float(settings["confidence"]), rng) if resamples else None
    return result


def aggregate_analysis(frame: pd.DataFrame, aspects: list[str], model_column: str, scale: dict,
                       settings: dict, seed: int, name: str, source: str) -> dict:
    """Label distributions, correlations between aspects, and human aggregate vs the model score."""
    for column in aspects + [model_column]:
        if column not in frame.columns:
            raise InputError(f"{source}: lacks column {column!r}; found {', '.join(map(repr, frame.columns))}")
    frame = frame.reset_index(drop=True)
    for column in aspects:
        frame[column] = require_numeric(frame, column, source, allow_missing=True,
                                        low=scale["min"], high=scale["max"])
    frame[model_column] = require_numeric(frame, model_column, source, allow_missing=True)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    result = {
        "n_pairs": len(frame),
        "distributions": {column: _distribution(frame[column]) for column in aspects + [model_column]},
        "aspect_correlations": {"pearson": _correlation_matrix(frame, aspects, "pearson"),
                                "spearman": _correlation_matrix(frame, aspects, "spearman")},
        "human_vs_gpt": {aspect: human_vs_model(frame[aspect], frame[model_column], scale, settings, rng)
                         for aspect in aspects},
    }
    if "label" in frame.columns:
        result["distributions"]["label"] = _distribution(pd.to_numeric(frame["label"], errors="coerce"))
    return result


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


def plot_aggregate(name: str, result: dict, frame: pd.DataFrame, model_column: str, directory,
                   save_figure, new_figure) -> None:
    import os

    aspects = list(result["aspect_correlations"]["pearson"])
    columns = aspects + [model_column]
    figure, _ = new_figure(3.0 * len(columns), 3.0)
    figure.clf()
    axes = figure.subplots(1, len(columns), squeeze=False)[0]
    for axis, column in zip(axes, columns):
        counts = result["distributions"][column]["counts"]
        axis.bar(range(len(counts)), list(counts.values()))
        axis.set_xticks(range(len(counts)), list(counts))
        axis.set_title(column)
        axis.tick_params(axis="x", labelsize=7, rotation=90)
    axes[0].set_ylabel("pairs")
    figure.suptitle(f"{name}: label distributions")
    save_figure(figure, os.path.join(directory, f"{name}_distributions.png"))

    size = len(aspects)
    spearman_table = result["aspect_correlations"]["spearman"]
    values = np.array([[1.0 if a == b else np.nan if spearman_table[a][b] is None else spearman_table[a][b]
                        for b in aspects] for a in aspects])
    figure, axis = new_figure(1.5 + 0.8 * size, 1.2 + 0.7 * size)
    image = axis.imshow(values, vmin=-1, vmax=1, cmap="RdBu_r")
    axis.set_xticks(range(size), aspects, rotation=45, ha="right")
    axis.set_yticks(range(size), aspects)
    for i in range(size):
        for j in range(size):
            axis.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=8)
    axis.set_title(f"{name}: Spearman between aspects")
    figure.colorbar(image, ax=axis)
    save_figure(figure, os.path.join(directory, f"{name}_aspect_correlations.png"))

    figure, axis = new_figure(4.5, 4.0)
    pairs = frame[["empathy", model_column]].dropna()
    grouped = pairs.groupby(["empathy", model_column]).size().reset_index(name="n")
    axis.scatter(grouped["empathy"], grouped[model_column], s=12 * grouped["n"], alpha=0.6)
    agree = result["human_vs_gpt"]["empathy"]
    axis.set_xlabel("human aggregate (empathy)")
    axis.set_ylabel(model_column)
    axis.set_title(f"{name}: Pearson {_fmt(agree['pearson'])}, Spearman {_fmt(agree['spearman'])}")
    save_figure(figure, os.path.join(directory, f"{name}_human_vs_gpt.png"))
