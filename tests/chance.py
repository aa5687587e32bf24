"""Chance baselines computed in the tests from the data they score (issue 19): what a classifier
with no signal reaches on the same gold labels, so a "beats chance" threshold is never a fixed
number that chance itself can pass.

- shuffled predictions: the model's own predictions permuted over the items (same predicted
  label counts, no link to the items);
- prior-matched random classifier: each item gets a label drawn from the gold labels'
  distribution (the best-informed guesser that does not look at the item).

`chance_bar` is the larger of the two upper percentiles (99th of a few hundred seeded draws): a
score above it is not what either kind of chance reaches 99 times in 100.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

DRAWS = 300
PERCENTILE = 99


def macro_f1(labels: Sequence) -> Callable[[np.ndarray, np.ndarray], float]:
    """Macro F1 over the given labels (absent or never-predicted labels count as 0, as the
    workflow's scores do)."""
    from sklearn.metrics import f1_score

    labels = list(labels)
    return lambda gold, predicted: float(f1_score(gold, predicted, labels=labels, average="macro", zero_division=0))


def shuffled_scores(gold, predicted, score: Callable, draws: int = DRAWS, seed: int = 0) -> np.ndarray:
    gold, predicted = np.asarray(gold), np.asarray(predicted)
    rng = np.random.default_rng(seed)
    return np.array([score(gold, rng.permutation(predicted)) for _ in range(draws)])


def prior_matched_scores(gold, score: Callable, draws: int = DRAWS, seed: int = 0) -> np.ndarray:
    gold = np.asarray(gold)
    values, counts = np.unique(gold, return_counts=True)
    rng = np.random.default_rng(seed)
    return np.array([score(gold, rng.choice(values, size=len(gold), p=counts / counts.sum()))
                     for _ in range(draws)])


def chance_bar(gold, predicted, score: Callable, draws: int = DRAWS, seed: int = 0,
               percentile: float = PERCENTILE) -> dict:
    """{"shuffled": p, "prior_matched": p, "bar": max} at the given upper percentile."""
    shuffled = float(np.percentile(shuffled_scores(gold, predicted, score, draws, seed), percentile))
    prior = float(np.percentile(prior_matched_scores(gold, score, draws, seed + 1), percentile))
    return {"shuffled": shuffled, "prior_matched": prior, "bar": max(shuffled, prior)}


def from_confusion(confusion: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(gold, predicted) label arrays with exactly the counts of a confusion matrix (rows gold,
    columns predicted, labels 0..k-1): enough for any score that ignores item order."""
    confusion = np.asarray(confusion, dtype=int)
    gold, predicted = [], []
    for g in range(confusion.shape[0]):
        for p in range(confusion.shape[1]):
            gold += [g] * confusion[g, p]
            predicted += [p] * confusion[g, p]
    return np.array(gold), np.array(predicted)
