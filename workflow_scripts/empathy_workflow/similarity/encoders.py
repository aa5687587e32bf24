"""Masked-LM encoders for empathic similarity: zero-shot cosine (calibrated on train), and
contrastive fine-tuning with the authors' losses and triplets (sentence-transformers)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from empathy_workflow.core.io import InputError, atomic_dir
from empathy_workflow.similarity import protocol
from empathy_workflow.similarity.story_pairs import LOSSES, SCALE

logger = logging.getLogger(__name__)


def torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_encoder(path: str | os.PathLike, max_seq_length: int | None = None):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device=torch_device(), local_files_only=True)
    if max_seq_length:
        model.max_seq_length = int(max_seq_length)
    return model


def cosine_scores(model, texts_a: Sequence[str], texts_b: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """Cosine similarity of each (a, b) pair. Unique texts are encoded once."""
    unique = sorted(set(texts_a) | set(texts_b))
    embeddings = model.encode(unique, batch_size=batch_size, convert_to_numpy=True,
                              normalize_embeddings=True, show_progress_bar=False)
    index = {text: i for i, text in enumerate(unique)}
    a = embeddings[[index[t] for t in texts_a]]
    b = embeddings[[index[t] for t in texts_b]]
    return np.sum(a * b, axis=1).astype(float)


def fit_calibration(cosines: np.ndarray, gold: np.ndarray):
    """Monotone map cosine -> 1-4 fitted on the training pairs (clipped outside their range)."""
    from sklearn.isotonic import IsotonicRegression

    calibration = IsotonicRegression(y_min=SCALE[0], y_max=SCALE[1], increasing=True, out_of_bounds="clip")
    calibration.fit(np.asarray(cosines, dtype=float), np.asarray(gold, dtype=float))
    return calibration


def encoder_predictions(model_path, train: pd.DataFrame, test: pd.DataFrame, batch_size: int = 32,
                        max_seq_length: int | None = None) -> tuple[pd.DataFrame, dict]:
    """The paper's scoring: predicted = 3*cos+1 (raw cosine, so Pearson/Spearman are the cosine's
    and a pair is positive when cos > 0.5). Extra, labelled: the isotonic map fitted on train."""
    model = load_encoder(model_path, max_seq_length)
    logger.info("encoding %d train and %d test pairs with %s (max_seq_length %d)",
                len(train), len(test), model_path, model.max_seq_length)
    train_cos = cosine_scores(model, list(train.text_a), list(train.text_b), batch_size)
    test_cos = cosine_scores(model, list(test.text_a), list(test.text_b), batch_size)
    calibration = fit_calibration(train_cos, train.gold.to_numpy())
    frame = pd.DataFrame({"pair_id": test.pair_id, "gold": test.gold, "predicted": protocol.cosine_to_scale(test_cos),
                          "cosine": test_cos, "predicted_isotonic": calibration.predict(test_cos)})
    details = {
        "scoring": "paper: predicted = 3*cosine+1 (the notebooks' score recovery); positive when > 2.5",
        "extra_scorings": {"predicted_isotonic": "isotonic regression of gold on cosine, fitted on the "
                                                 f"training split (n={len(train)}); not the paper's"},
        "max_seq_length": int(model.max_seq_length),
        "train_cosine_pearson": float(np.corrcoef(train_cos, train.gold)[0, 1]),
    }
    return frame, details


def positive_threshold(gold: np.ndarray) -> float:
    """Pairs strictly above the training median count as positives (the notebooks' `binned` labels)."""
    return float(np.median(np.asarray(gold, dtype=float)))


def contrastive_dataset(train: pd.DataFrame, loss: str, seed: int) -> tuple[pd.DataFrame, dict]:
    """The training columns each loss expects (texts first, then `label` where it takes one)."""
    if loss == "mnrl":
        return protocol.build_triplets(list(train.text_a), list(train.text_b), train.gold.to_numpy(), seed)
    frame = pd.DataFrame({"sentence1": train.text_a.to_numpy(), "sentence2": train.text_b.to_numpy()})
    if loss == "online_contrastive":
        threshold = positive_threshold(train.gold.to_numpy())
        frame["label"] = (train.gold.to_numpy() > threshold).astype(int)
        return frame, {"median": threshold, "pairs": len(frame)}
    if loss in ("cosine", "cosent", "angle"):
        # Gold 1-4 -> 0-1: a target cosine for CosineSimilarityLoss; CoSENT/AnglE use only the order.
        frame["label"] = (train.gold.to_numpy() - SCALE[0]) / (SCALE[1] - SCALE[0])
        return frame, {"pairs": len(frame)}
    raise InputError(f"similarity.contrastive.loss: {loss!r} is not one of {', '.join(LOSSES)}")


def make_loss(model, loss: str, settings: dict):
    """The loss object with the notebooks' parameters (similarity_protocol.LOSS_PARAMETERS)."""
    from sentence_transformers import losses

    arguments = protocol.loss_arguments(loss, settings)
    return {
        "mnrl": losses.MultipleNegativesRankingLoss,
        "cosine": losses.CosineSimilarityLoss,
        "cosent": losses.CoSENTLoss,
        "angle": losses.AnglELoss,
        "online_contrastive": losses.OnlineContrastiveLoss,
    }[loss](model, **arguments)


def train_contrastive(encoder_path, train: pd.DataFrame, dev: pd.DataFrame | None, settings: dict, seed: int,
                      output_dir: str | os.PathLike, work_dir: str | os.PathLike | None = None) -> dict:
    """Fine-tune the encoder with SentenceTransformerTrainer; save it to `output_dir` (atomically)."""
    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.training_args import BatchSamplers
    from transformers import set_seed

    loss_name = settings["loss"]
    set_seed(seed)
    model = load_encoder(encoder_path, settings.get("max_seq_length"))
    frame, info = contrastive_dataset(train, loss_name, seed)
    dataset = Dataset.from_pandas(frame, preserve_index=False)
    logger.info("contrastive training: loss %s, %s", loss_name, info)

    before = _dev_pearson(model, dev)
    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="contrastive-"))
    arguments = SentenceTransformerTrainingArguments(
        output_dir=str(work_dir),
        num_train_epochs=settings["epochs"],
        # a size cap (the rehearsal's); -1: the full epochs
        max_steps=int(settings.get("max_steps", -1)),
        per_device_train_batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        # The notebooks: warmup_steps = ceil(steps * 0.3); a float in [0, 1) is a ratio here.
        warmup_steps=float(settings.get("warmup_ratio", 0.0)),
        seed=seed,
        data_seed=seed,
        # In-batch negatives must not contain the anchor's own positive twice.
        batch_sampler=BatchSamplers.NO_DUPLICATES if loss_name == "mnrl" else BatchSamplers.BATCH_SAMPLER,
        save_strategy="no",
        report_to="none",
        logging_steps=5,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        # model.fit(use_amp=True) in the notebooks: fp16 autocast, on a GPU only
        fp16=bool(settings.get("amp", False)) and torch.cuda.is_available(),
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    trainer = SentenceTransformerTrainer(model=model, args=arguments, train_dataset=dataset,
                                         loss=make_loss(model, loss_name, settings))
    result = trainer.train()
    after = _dev_pearson(model, dev)
    logger.info("dev Pearson of cosine: %.3f before, %.3f after fine-tuning",
                before if before is not None else float("nan"), after if after is not None else float("nan"))
    with atomic_dir(output_dir) as path:
        model.save(str(path))
    shutil.rmtree(work_dir, ignore_errors=True)
    return {**info, "loss": loss_name, "steps": int(result.global_step), "train_loss": float(result.training_loss),
            "dev_cosine_pearson_before": before, "dev_cosine_pearson_after": after}


def _dev_pearson(model, dev: pd.DataFrame | None) -> float | None:
    if dev is None or len(dev) < 3:
        return None
    cosines = cosine_scores(model, list(dev.text_a), list(dev.text_b))
    return float(np.corrcoef(cosines, dev.gold)[0, 1])
