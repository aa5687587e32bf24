"""Similarity metrics on hand-made cases whose answers are worked out by hand."""

import math

import numpy as np
import pytest
from sklearn.metrics import classification_report

from empathy_workflow.similarity import metrics


def test_perfect_predictions():
    gold = [1.0, 2.0, 3.0, 4.0, 2.5, 3.5]
    scores = metrics.similarity_metrics(gold, gold)
    assert scores["pearson"] == pytest.approx(1.0)
    assert scores["spearman"] == pytest.approx(1.0)
    assert scores["mse"] == 0.0
    assert scores["accuracy"] == scores["precision"] == scores["recall"] == scores["f1"] == 1.0
    assert scores["n"] == 6


def test_hand_computed_regression_scores():
    # gold mean 2.5, predicted mean 2.5; covariance sum 2, variance sums 5 and 1 -> r = 2/sqrt(5)
    gold, predicted = [1, 2, 3, 4], [2, 2, 3, 3]
    scores = metrics.similarity_metrics(gold, predicted)
    assert scores["pearson"] == pytest.approx(2 / math.sqrt(5))
    # ranks of predicted: 1.5 1.5 3.5 3.5 against 1 2 3 4 -> same value as Pearson on the ranks
    assert scores["spearman"] == pytest.approx(2 / math.sqrt(5))
    assert scores["mse"] == pytest.approx(0.5)  # (1 + 0 + 0 + 1) / 4
    assert scores["accuracy"] == 1.0  # both binarise to 0 0 1 1


def test_threshold_is_strictly_above_2_5():
    assert metrics.binarize([1.0, 2.5, 2.5001, 4.0]).tolist() == [0, 0, 1, 1]
    scores = metrics.similarity_metrics([2.5, 3.0], [3.0, 2.5])  # gold 0 1, predicted 1 0
    assert scores["accuracy"] == 0.0


def test_precision_and_recall_use_gold_as_y_true():
    # Gold: four positives, two negatives. Predicted: one positive (correct), five negatives.
    # Positive class: precision 1/1, recall 1/4. Negative class: precision 2/5, recall 2/2.
    # Macro precision (1 + 0.4)/2 = 0.7, macro recall (0.25 + 1)/2 = 0.625,
    # F1: positive 0.4, negative 4/7 -> macro (0.4 + 4/7)/2.
    gold = [3.0, 3.5, 4.0, 3.0, 1.0, 2.0]
    predicted = [3.0, 1.0, 2.0, 1.5, 1.0, 2.5]
    scores = metrics.similarity_metrics(gold, predicted)
    assert scores["precision"] == pytest.approx(0.7)
    assert scores["recall"] == pytest.approx(0.625)
    assert scores["f1"] == pytest.approx((0.4 + 4 / 7) / 2)
    assert scores["accuracy"] == pytest.approx(3 / 6)

    y_true, y_pred = metrics.binarize(gold), metrics.binarize(predicted)
    right = classification_report(y_true, y_pred, output_dict=True)["macro avg"]
    swapped = classification_report(y_pred, y_true, output_dict=True)["macro avg"]  # the notebooks' order
    assert scores["precision"] == pytest.approx(right["precision"])
    assert scores["recall"] == pytest.approx(right["recall"])
    # The order matters on this case: swapping the arguments swaps precision and recall.
    assert swapped["precision"] == pytest.approx(0.625) != pytest.approx(scores["precision"])
    assert swapped["recall"] == pytest.approx(0.7) != pytest.approx(scores["recall"])
    assert swapped["f1-score"] == pytest.approx(right["f1-score"])  # F1 alone cannot tell


def test_constant_predictions_have_no_correlation():
    scores = metrics.similarity_metrics([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    assert scores["pearson"] is None and scores["spearman"] is None
    assert scores["mse"] == pytest.approx(2 / 3)
    # binarised gold 0 0 1, predicted 0 0 0: negative class precision 2/3, recall 1; the positive
    # class is never predicted, its precision counts as 0 (not an error) and its recall is 0
    assert scores["precision"] == pytest.approx((2 / 3 + 0) / 2)
    assert scores["recall"] == pytest.approx((1 + 0) / 2)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        metrics.similarity_metrics([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="no pairs"):
        metrics.similarity_metrics([], [])
    with pytest.raises(ValueError, match="finite"):
        metrics.similarity_metrics([1.0, np.nan], [1.0, 2.0])
