"""Scores of a similarity model against gold ratings on the 1-4 scale.

Regression: Pearson r, Spearman rho, MSE. Classification: a pair is positive when its score is
above 2.5 (the scale's midpoint); accuracy and macro-averaged precision, recall and F1.

The paper's notebooks call ``classification_report(y_pred, y_true)``. scikit-learn's signature is
``(y_true, y_pred)``; swapping them swaps precision and recall (F1 and accuracy are symmetric, so
they hide the mistake). Everything here passes gold first; tests/test_metrics.py pins it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from empathy_workflow.core.stats import _correlation

POSITIVE_ABOVE = 2.5  # positive class: score > 2.5 on the 1-4 scale


def binarize(scores: Sequence[float], threshold: float = POSITIVE_ABOVE) -> np.ndarray:
    """1 where the score is strictly above `threshold`, else 0 (2.5 itself is negative)."""
    return (np.asarray(scores, dtype=float) > threshold).astype(int)


def binary_scores(gold: Sequence[float], predicted: Sequence[float],
                          threshold: float = POSITIVE_ABOVE) -> dict:
    """Accuracy and macro precision/recall/F1 of the binarised scores. Gold is y_true (first)."""
    y_true = binarize(gold, threshold)
    y_pred = binarize(predicted, threshold)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=[0, 1], average="macro", zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }


def similarity_metrics(gold: Sequence[float], predicted: Sequence[float],
                       threshold: float = POSITIVE_ABOVE) -> dict:
    """Every scoreboard number for one method on one test set."""
    gold = np.asarray(gold, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    if gold.shape != predicted.shape or gold.ndim != 1:
        raise ValueError(f"gold and predicted differ in shape: {gold.shape} vs {predicted.shape}")
    if len(gold) == 0:
        raise ValueError("no pairs to score")
    if not (np.isfinite(gold).all() and np.isfinite(predicted).all()):
        raise ValueError("gold and predicted scores must be finite numbers")
    return {
        "n": int(len(gold)),
        "pearson": _correlation(stats.pearsonr, gold, predicted),
        "spearman": _correlation(stats.spearmanr, gold, predicted),
        "mse": float(np.mean((gold - predicted) ** 2)),
        "positive_above": threshold,
        "gold_positive_rate": float(binarize(gold, threshold).mean()),
        **binary_scores(gold, predicted, threshold),
    }
