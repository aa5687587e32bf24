"""Significance of the differences between EmPO models on per-item metrics: paired permutation
tests, bootstrap intervals, Holm's correction."""

from __future__ import annotations

import logging
import os
from typing import Mapping, Sequence

import pandas as pd

from empathy_workflow.core.io import json_safe, read_csv
from empathy_workflow.core.stats import (
    _rng,
    bootstrap_interval,
    holm,
    paired_permutation_test,
)
from empathy_workflow.empo.epitome_data import MECHANISMS
from empathy_workflow.empo.text_metrics import EMOTION_KEYS

logger = logging.getLogger(__name__)


# Summary key -> per-item column, for the bootstrap intervals in text_metrics.json.
INTERVAL_COLUMNS = {
    "diff_epitome": {**{m: f"diff_{m}" for m in MECHANISMS}, "mean": "diff_epitome_mean"},
    "bertscore": {k: f"bertscore_{k}" for k in ("precision", "recall", "f1")},
    "diversity": {"mean_length": "length", "nidf": "nidf"},
    "vad": {f"abs_diff_max_{k}": f"abs_diff_max_{k}" for k in EMOTION_KEYS},
}


# Per-item columns compared between models (lower is better for diff_* and abs_diff_*).
SIGNIFICANCE_METRICS = (
    [f"diff_{m}" for m in MECHANISMS] + ["diff_epitome_mean", "bertscore_precision", "bertscore_recall",
                                         "bertscore_f1", "length", "nidf"]
    + [f"abs_diff_max_{k}" for k in EMOTION_KEYS]
)


def significance(tables: Mapping[str, pd.DataFrame], settings: Mapping, seed: int,
                 metrics: Sequence[str] | None = None) -> dict:
    """Bootstrap intervals of each model's mean per metric, and paired permutation tests with
    bootstrap intervals of the mean difference for every pair of models, items matched on
    (conv_id, item)."""
    permutations = int(settings.get("permutations", 1000))
    resamples = int(settings.get("bootstrap", 1000))
    confidence = float(settings.get("confidence", 0.95))
    models = list(tables)
    if metrics is None:
        metrics = [m for m in SIGNIFICANCE_METRICS if all(m in t.columns for t in tables.values())]
    result = {"permutations": permutations, "bootstrap": resamples, "confidence": confidence, "seed": int(seed),
              "test": "paired permutation (random sign flips of per-item differences), two-sided; "
                      "interval: percentile bootstrap of the mean over items",
              "metrics": list(metrics), "models": {}, "comparisons": []}
    for model in models:
        table = tables[model]
        result["models"][model] = {}
        for metric in metrics:
            values = table[metric].to_numpy(dtype=float)
            low, high = bootstrap_interval(values, resamples, _rng(seed, "interval", model, metric), confidence)
            result["models"][model][metric] = {"mean": float(values.mean()), "ci_low": low, "ci_high": high,
                                               "n": int(values.size)}
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            merged = tables[a].merge(tables[b], on=["conv_id", "item"], suffixes=("_a", "_b"))
            if len(merged) < max(len(tables[a]), len(tables[b])):
                logger.warning("%s vs %s: %d items in common (of %d and %d)", a, b, len(merged),
                               len(tables[a]), len(tables[b]))
            for metric in metrics:
                x, y = merged[f"{metric}_a"].to_numpy(dtype=float), merged[f"{metric}_b"].to_numpy(dtype=float)
                low, high = bootstrap_interval(x - y, resamples, _rng(seed, "difference", a, b, metric), confidence)
                result["comparisons"].append({
                    "a": a, "b": b, "metric": metric, "n": int(len(merged)),
                    "mean_a": float(x.mean()) if len(x) else float("nan"),
                    "mean_b": float(y.mean()) if len(y) else float("nan"),
                    "difference": float((x - y).mean()) if len(x) else float("nan"),
                    "ci_low": low, "ci_high": high,
                    "p_value": paired_permutation_test(x, y, permutations, _rng(seed, "permutation", a, b, metric)),
                })
    for record, adjusted in zip(result["comparisons"], holm([c["p_value"] for c in result["comparisons"]])):
        record["p_value_holm"] = adjusted
    return json_safe(result)


def read_per_item(path: str | os.PathLike) -> pd.DataFrame:
    frame = read_csv(path, required=("conv_id", "item"), what="per-item scores", dtype={"conv_id": str})
    return frame
