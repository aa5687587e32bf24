"""Training the default EPITOME classifier (epitome_features) on the seeded split, and the
classifiers' quality as an output: results/empo/epitome/quality.json, per mechanism accuracy,
macro F1, the majority-class macro F1, the held-out size and the confusion matrix, plus whether
diff-Epitome of that mechanism is informative (macro F1 more than INFORMATIVE_MARGIN above the
majority class)."""

from __future__ import annotations

import logging
import os
import time
from typing import Mapping

import numpy as np
import pandas as pd

from empathy_workflow.core.io import InputError
from empathy_workflow.empo import epitome_biencoder, epitome_features
from empathy_workflow.empo.epitome import level_scores, predict_levels
from empathy_workflow.empo.epitome_data import LEVELS, MECHANISMS, trained_and_scored

logger = logging.getLogger(__name__)


# A classifier within this much macro F1 of always answering the majority level tells models
# apart by noise: the report shows its diff-Epitome as "not informative".
INFORMATIVE_MARGIN = 0.10


def train_features_classifier(pairs: pd.DataFrame, encoder: str | os.PathLike, output_dir: str | os.PathLike,
                              settings: Mapping, seed: int, device: str) -> dict[str, dict]:
    """Fit the frozen-features classifier on the training part of the seeded split, save it to
    `output_dir`, score every mechanism on the held-out part. Returns {mechanism: metrics}."""
    train_index, test_index = trained_and_scored(pairs, settings, seed)
    train, held = pairs.iloc[train_index], pairs.iloc[test_index]
    started = time.process_time()
    facts = epitome_features.train(train["seeker_post"].tolist(), train["response_post"].tolist(),
                                   {m: train[f"level_{m}"].to_numpy() for m in MECHANISMS}, encoder, output_dir,
                                   {**settings["features"], "batch_size": settings["batch_size"]}, device)
    logger.info("trained on %d pairs (%d features) in %.1f CPU s", len(train), facts["n_features"],
                time.process_time() - started)
    started = time.process_time()
    predicted = predict_levels({m: output_dir for m in MECHANISMS}, held["seeker_post"].tolist(),
                               held["response_post"].tolist(), int(settings["max_length"]),
                               int(settings["batch_size"]), device=device)
    logger.info("scored %d held-out pairs in %.1f CPU s", len(held), time.process_time() - started)
    model = ("frozen MiniLM embeddings of seeker and response + response char n-gram TF-IDF, "
             "class-balanced logistic regression per mechanism")
    return {m: {"source": "trained", "model": model, "encoder": str(encoder), "n_train": int(len(train)), **facts,
                "train_level_counts": [int(x) for x in np.bincount(train[f"level_{m}"], minlength=len(LEVELS))],
                "held_out": level_scores(held[f"level_{m}"].to_numpy(), predicted[m])}
            for m in MECHANISMS}


def train_biencoder_classifier(pairs: pd.DataFrame, encoder: str | os.PathLike, output_dir: str | os.PathLike,
                               settings: Mapping, seed: int, device: str) -> dict[str, dict]:
    """The paper's setup: one bi-encoder per mechanism (level + rationale tasks), trained on the
    training part of the seeded split, saved with the original parameter names, scored on the
    held-out part."""
    train_index, test_index = trained_and_scored(pairs, settings, seed)
    train, held = pairs.iloc[train_index], pairs.iloc[test_index]
    options = {**settings, **settings.get("biencoder", {})}
    models, losses, tokenizer = {}, {}, None
    for mechanism in MECHANISMS:
        started = time.process_time()
        rationales = train[f"rationales_{mechanism}"].tolist() if f"rationales_{mechanism}" in train else None
        models[mechanism], tokenizer, losses[mechanism] = epitome_biencoder.train(
            train["seeker_post"].tolist(), train["response_post"].tolist(), train[f"level_{mechanism}"].to_numpy(),
            rationales, encoder, options, seed, device)
        logger.info("%s: trained on %d pairs in %.1f CPU s (loss %.4f)", mechanism, len(train),
                    time.process_time() - started, losses[mechanism])
    epitome_biencoder.save(models, tokenizer, output_dir)
    predicted = predict_levels({m: output_dir for m in MECHANISMS}, held["seeker_post"].tolist(),
                               held["response_post"].tolist(), int(settings["max_length"]),
                               int(settings["batch_size"]), device=device)
    return {m: {"source": "trained", "encoder": str(encoder), "n_train": int(len(train)),
                "model": "bi-encoder with seeker-response attention and rationale task (Sharma et al. 2020)",
                "training_loss": losses[m],
                "train_level_counts": [int(x) for x in np.bincount(train[f"level_{m}"], minlength=len(LEVELS))],
                "held_out": level_scores(held[f"level_{m}"].to_numpy(), predicted[m])}
            for m in MECHANISMS}


def quality(metrics: Mapping[str, Mapping]) -> dict:
    """quality.json from the per-mechanism metrics files ({mechanism: metrics with `held_out`})."""
    out = {"informative_margin": INFORMATIVE_MARGIN}
    for mechanism in MECHANISMS:
        if mechanism not in metrics or "held_out" not in metrics[mechanism]:
            raise InputError(f"EPITOME metrics: no held-out scores for {mechanism!r}")
        held = metrics[mechanism]["held_out"]
        out[mechanism] = {
            "accuracy": held["accuracy"], "macro_f1": held["macro_f1"],
            "majority_macro_f1": held["majority_macro_f1"], "majority_accuracy": held["majority_accuracy"],
            "n_heldout": held["n"], "confusion": held["confusion_matrix"],
            "confusion_axes": "rows: gold level 0-2, columns: predicted level 0-2",
            "informative": is_informative(held["macro_f1"], held["majority_macro_f1"]),
            "source": metrics[mechanism].get("source", "trained"),
        }
    return out


def is_informative(macro_f1: float, majority_macro_f1: float) -> bool:
    return macro_f1 - majority_macro_f1 > INFORMATIVE_MARGIN
