"""The EPITOME level classifier used for diff-Epitome: training, prediction on replies, held-out
scores and the diff-Epitome of generations against references."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from empathy_workflow.core.io import InputError, atomic_dir
from empathy_workflow.empo.epitome_data import LEVELS, MECHANISMS, epitome_split, scored_held_out, trained_and_scored

logger = logging.getLogger(__name__)


def diff_epitome(generation_levels: Mapping[str, Sequence[int]], reference_levels: Mapping[str, Sequence[int]]
                 ) -> tuple[dict, pd.DataFrame]:
    """Squared level differences per item and mechanism; summary: their means and the mean of those."""
    per_item = {}
    for mechanism in MECHANISMS:
        g = np.asarray(generation_levels[mechanism], dtype=float)
        r = np.asarray(reference_levels[mechanism], dtype=float)
        if g.shape != r.shape:
            raise ValueError(f"{mechanism}: {g.size} generation levels but {r.size} reference levels")
        per_item[f"diff_{mechanism}"] = (g - r) ** 2
    per_item = pd.DataFrame(per_item)
    summary = {m: float(per_item[f"diff_{m}"].mean()) for m in MECHANISMS}
    summary["mean"] = float(np.mean([summary[m] for m in MECHANISMS]))
    per_item["diff_epitome_mean"] = per_item[[f"diff_{m}" for m in MECHANISMS]].mean(axis=1)
    return summary, per_item


def level_scores(gold: Sequence[int], predicted: Sequence[int]) -> dict:
    """Accuracy and macro F1 of predicted levels, with the majority-class baseline beside them."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    gold, predicted = np.asarray(gold), np.asarray(predicted)
    majority = int(pd.Series(gold).value_counts().idxmax())
    baseline = np.full_like(gold, majority)
    return {
        "n": int(len(gold)),
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, labels=list(LEVELS), average="macro", zero_division=0)),
        "f1_per_level": [float(x) for x in f1_score(gold, predicted, labels=list(LEVELS), average=None,
                                                    zero_division=0)],
        "majority_level": majority,
        "majority_accuracy": float(accuracy_score(gold, baseline)),
        "majority_macro_f1": float(f1_score(gold, baseline, labels=list(LEVELS), average="macro",
                                            zero_division=0)),
        "confusion_matrix": confusion_matrix(gold, predicted, labels=list(LEVELS)).tolist(),
        "gold_level_counts": [int((gold == level).sum()) for level in LEVELS],
        "predicted_level_counts": [int((predicted == level).sum()) for level in LEVELS],
    }


class LevelClassifier:
    """A saved sequence-classification model with its tokenizer. Either one mechanism's
    classifier (3 labels: levels 0, 1, 2; e.g. given weights), or the workflow's joint model:
    one encoder with 3 x 3 logits, the mechanisms named in its config (`epitome_mechanisms`)."""

    def __init__(self, directory: str | os.PathLike, max_length: int = 128, batch_size: int = 32,
                 device: str = "cpu"):
        from transformers import (
            AutoConfig,
            AutoModelForSequenceClassification,
            AutoTokenizer,
        )

        directory = Path(directory)
        if not (directory / "config.json").is_file():
            raise InputError(f"{directory}: not a saved classifier (no config.json)")
        if not any((directory / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
            # Pickled weights can run code when loaded: transformers reads pytorch_model.bin with
            # torch.load(weights_only=True), which refuses anything but tensors.
            logger.warning("%s: no safetensors weights; loading pytorch_model.bin with weights_only", directory)
        config = AutoConfig.from_pretrained(directory)
        self.mechanisms = list(getattr(config, "epitome_mechanisms", None) or [])
        expected = len(LEVELS) * max(1, len(self.mechanisms))
        if config.num_labels != expected:
            raise InputError(f"{directory}: classifier has {config.num_labels} labels, expected {expected} "
                             f"(levels 0, 1, 2{' for each of ' + ', '.join(self.mechanisms) if self.mechanisms else ''})")
        self.tokenizer = AutoTokenizer.from_pretrained(directory)
        self.model = AutoModelForSequenceClassification.from_pretrained(directory).to(device)
        self.model.eval()
        self.device = device
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)

    def predict(self, seekers: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """Levels, shape (n, mechanisms) for a joint model, (n, 1) for a single one."""
        import torch

        width = max(1, len(self.mechanisms))
        predictions = [np.zeros((0, width), dtype=int)]
        for start in range(0, len(seekers), self.batch_size):
            batch = self.tokenizer(list(seekers[start:start + self.batch_size]),
                                   list(responses[start:start + self.batch_size]),
                                   truncation=True, max_length=self.max_length, padding=True,
                                   return_tensors="pt").to(self.device)
            with torch.no_grad():
                logits = self.model(**batch).logits
            predictions.append(logits.view(len(logits), width, len(LEVELS)).argmax(dim=-1).cpu().numpy())
        return np.concatenate(predictions)


def load_level_classifier(path: str | os.PathLike, max_length: int, batch_size: int, device: str = "cpu"):
    """The classifier saved at `path`: the frozen-features classifier (epitome_features.json), the
    authors' bi-encoder (a .pth/.bin state dict, or a folder with biencoder.json), or a
    sequence-classification model folder."""
    from empathy_workflow.empo import epitome_biencoder, epitome_features

    if epitome_features.is_features_classifier(path):
        return epitome_features.FeaturesClassifier(path, device=device)
    if epitome_biencoder.is_biencoder(path):
        return epitome_biencoder.BiEncoderLevelClassifier(path, max_length=max_length, batch_size=batch_size,
                                                          device=device)
    return LevelClassifier(path, max_length=max_length, batch_size=batch_size, device=device)


def predict_levels(classifiers: Mapping[str, str | os.PathLike], seekers: Sequence[str], responses: Sequence[str],
                   max_length: int, batch_size: int, device: str = "cpu") -> dict[str, np.ndarray]:
    """{mechanism: levels} from {mechanism: classifier folder}; a joint folder named for several
    mechanisms is loaded and run once."""
    levels: dict[str, np.ndarray] = {}
    by_folder: dict[str, list[str]] = {}
    for mechanism in MECHANISMS:
        by_folder.setdefault(str(classifiers[mechanism]), []).append(mechanism)
    for folder, mechanisms in by_folder.items():
        classifier = load_level_classifier(folder, max_length, batch_size, device)
        predicted = classifier.predict(seekers, responses)
        for mechanism in mechanisms:
            if classifier.mechanisms:
                if mechanism not in classifier.mechanisms:
                    raise InputError(f"{folder}: joint classifier covers {', '.join(classifier.mechanisms)}, "
                                     f"not {mechanism}")
                levels[mechanism] = predicted[:, classifier.mechanisms.index(mechanism)]
            else:
                levels[mechanism] = predicted[:, 0]
    return levels


def train_epitome_classifier(pairs: pd.DataFrame, encoder: str | os.PathLike, output_dir: str | os.PathLike,
                             settings: Mapping, seed: int, device: str = "cpu") -> dict[str, dict]:
    """Fine-tune the encoder on the training part of EPITOME with the transformers Trainer (on
    `device`, seeded) as one model with three 3-way heads (er, ip, ex share the encoder, so one pass over
    the pairs trains all three: a third of the cost of three models), save it to `output_dir`,
    and score each mechanism on the held-out part. Returns {mechanism: metrics}."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    set_seed(seed)
    train_index, test_index = trained_and_scored(pairs, settings, seed)
    train = pairs.iloc[train_index]
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    labels = {f"{m}_level_{level}": 3 * i + level for i, m in enumerate(MECHANISMS) for level in LEVELS}
    model = AutoModelForSequenceClassification.from_pretrained(
        encoder, num_labels=len(labels), id2label={v: k for k, v in labels.items()}, label2id=labels)
    model.config.epitome_mechanisms = list(MECHANISMS)
    if settings.get("freeze_embeddings", True):
        # The embedding matrix is most of a small encoder's weights; freezing it roughly halves a
        # CPU training step and guards a few thousand examples against overfitting the vocabulary.
        model.base_model.embeddings.requires_grad_(False)
    max_length = int(settings["max_length"])
    encoded = tokenizer(train["seeker_post"].tolist(), train["response_post"].tolist(),
                        truncation=True, max_length=max_length)
    gold = train[[f"level_{m}" for m in MECHANISMS]].to_numpy()
    dataset = [{**{key: encoded[key][i] for key in encoded.keys()}, "labels": gold[i].tolist()}
               for i in range(len(train))]
    weights = None
    if settings.get("class_weights", True):
        # Inverse-frequency weights (sklearn's "balanced") per mechanism: levels 1 and 2 are rare
        # (ex: 84% level 0), and an unweighted short run just predicts level 0.
        counts = np.stack([np.bincount(gold[:, i], minlength=len(LEVELS)) for i in range(len(MECHANISMS))]).astype(float)
        weights = torch.tensor(np.where(counts > 0, counts.sum(axis=1, keepdims=True)
                                        / (len(LEVELS) * np.maximum(counts, 1)), 0.0), dtype=torch.float32)

    class JointTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            targets = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.logits.view(-1, len(MECHANISMS), len(LEVELS))
            loss = sum(torch.nn.functional.cross_entropy(logits[:, i], targets[:, i],
                                                         weight=None if weights is None else weights[i])
                       for i in range(len(MECHANISMS))) / len(MECHANISMS)
            return (loss, outputs) if return_outputs else loss

    with tempfile.TemporaryDirectory(prefix="epitome_trainer_") as scratch:
        args = TrainingArguments(
            output_dir=scratch, num_train_epochs=float(settings["epochs"]),
            per_device_train_batch_size=int(settings["batch_size"]), learning_rate=float(settings["learning_rate"]),
            weight_decay=0.01, seed=seed, data_seed=seed, use_cpu=device == "cpu", report_to=[], save_strategy="no",
            logging_steps=10, dataloader_num_workers=0)
        trainer = JointTrainer(model=model, args=args, train_dataset=dataset,
                               data_collator=DataCollatorWithPadding(tokenizer))
        started = time.perf_counter()
        result = trainer.train()
        logger.info("trained on %d pairs in %.1f s (loss %.4f)", len(dataset), time.perf_counter() - started,
                    result.training_loss)
    model.eval()
    save_classifier(model, tokenizer, output_dir)
    started = time.perf_counter()
    held = pairs.iloc[test_index]
    predicted = predict_levels({m: output_dir for m in MECHANISMS}, held["seeker_post"].tolist(),
                               held["response_post"].tolist(), max_length, int(settings["batch_size"]), device)
    logger.info("scored %d held-out pairs in %.1f s", len(held), time.perf_counter() - started)
    return {m: {"source": "trained", "model": "joint: one encoder, a 3-level head per mechanism",
                "encoder": str(encoder), "n_train": int(len(train_index)),
                "train_level_counts": [int(x) for x in np.bincount(train[f"level_{m}"], minlength=len(LEVELS))],
                "training_loss": float(result.training_loss),
                "held_out": level_scores(held[f"level_{m}"].to_numpy(), predicted[m])}
            for m in MECHANISMS}


def evaluate_given_classifier(pairs: pd.DataFrame, mechanism: str, folder: str | os.PathLike, settings: Mapping,
                              seed: int, device: str = "cpu") -> dict:
    """Given weights for one mechanism, scored on the same held-out part a trained model gets."""
    _, test_index = epitome_split(pairs, settings["held_out"], seed)
    held = pairs.iloc[scored_held_out(test_index, settings, seed)]
    levels = predict_levels({m: folder for m in MECHANISMS},
                            held["seeker_post"].tolist(), held["response_post"].tolist(),
                            int(settings["max_length"]), int(settings["batch_size"]), device)[mechanism]
    return {"source": "given", "weights": str(folder),
            "held_out": level_scores(held[f"level_{mechanism}"].to_numpy(), levels),
            "note": "given weights may have been trained on EPITOME pairs that are in this held-out part"}


def save_classifier(model, tokenizer, output_dir: str | os.PathLike) -> None:
    """Model and tokenizer into one folder, atomically (io.atomic_dir)."""
    with atomic_dir(output_dir) as scratch:
        model.save_pretrained(scratch, safe_serialization=True)
        tokenizer.save_pretrained(scratch)
