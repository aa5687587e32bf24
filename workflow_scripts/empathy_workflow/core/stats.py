"""Statistics every part uses: Pearson and Spearman, Krippendorff's alpha, the reliability
matrix, bootstrap intervals, paired permutation tests and Holm's correction."""

from __future__ import annotations

import math
import zlib
from typing import Sequence

import krippendorff
import numpy as np
import pandas as pd
from scipy.stats import rankdata

from empathy_workflow.core.io import json_safe


def _correlation(function, gold: np.ndarray, predicted: np.ndarray) -> float | None:
    # A constant column has no correlation; report null rather than NaN (NaN is not valid JSON).
    if len(gold) < 2 or np.ptp(gold) == 0 or np.ptp(predicted) == 0:
        return None
    value = float(function(gold, predicted)[0])
    return None if math.isnan(value) else value


LEVELS = ("nominal", "ordinal", "interval", "ratio")


def reliability_matrix(part: pd.DataFrame) -> tuple[np.ndarray, list[str], list[str]]:
    """Annotators x items matrix of one aspect's scores, NaN where an annotator did not rate."""
    wide = part.pivot(index="annotator", columns="item_id", values="score")
    wide = wide.sort_index().reindex(sorted(wide.columns), axis=1)
    return wide.to_numpy(dtype=float), [str(a) for a in wide.index], [str(i) for i in wide.columns]


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


def expanded_tail(n_items: int, confidence: float) -> float:
    """Tail probability of the expanded percentile interval (see BOOTSTRAP_METHOD): it restores
    the (n-1)/n variance factor and the t quantile the percentile interval lacks."""
    from scipy.stats import norm, t

    if n_items < 2:
        return (1 - confidence) / 2
    widened = math.sqrt(n_items / (n_items - 1)) * t.ppf(1 - (1 - confidence) / 2, n_items - 1)
    return float(norm.sf(widened))


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
              "pearson": json_safe(pearson(x, y)), "spearman": json_safe(spearman(x, y)),
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


def _rng(seed: int, *names: str) -> np.random.Generator:
    """A generator per (seed, names): adding a model or metric leaves the others' numbers alone."""
    return np.random.default_rng([int(seed)] + [zlib.crc32(name.encode()) for name in names])


def paired_permutation_test(a: Sequence[float], b: Sequence[float], permutations: int,
                            rng: np.random.Generator) -> float:
    """Two-sided paired test of mean(a - b) = 0 by random sign flips of the differences;
    p = (1 + #{|permuted mean| >= |observed mean|}) / (1 + permutations)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.size == 0:
        return float("nan")
    if permutations <= 0:
        return float("nan")
    observed = abs(d.mean())
    signs = rng.choice(np.array([-1.0, 1.0]), size=(permutations, d.size))
    permuted = np.abs((signs * d).mean(axis=1))
    # A relative tolerance so that ties (e.g. all-zero differences) count as "as extreme".
    extreme = permuted >= observed - 1e-12 * max(1.0, observed)
    return float((1 + extreme.sum()) / (1 + permutations))


def bootstrap_interval(values: Sequence[float], resamples: int, rng: np.random.Generator,
                       confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean."""
    values = np.asarray(values, dtype=float)
    if values.size == 0 or resamples <= 0:
        return float("nan"), float("nan")
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaNs stay NaN and are not counted)."""
    p = np.asarray(p_values, dtype=float)
    valid = np.flatnonzero(~np.isnan(p))
    adjusted = np.full(p.shape, np.nan)
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()
