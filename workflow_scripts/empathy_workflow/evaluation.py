"""EmPO text metrics (diff-Epitome, BERTScore, diversity, valence/intensity) and significance tests.

Definitions follow the EmPO code (justtherightsize/empo, src/emp_metrics/), which took them from
MichiganNLP/empathy_eval and EmpGPT-3:
- diff-Epitome: for each mechanism (er: emotional reactions, ip: interpretations, ex: explorations)
  a classifier gives a level 0/1/2 to (seeker turn, response); the per-item score is
  (level(generation) - level(reference))^2, averaged over items; `mean` averages the three.
- NIDF (specificity): word w's document frequency c_w over ED training utterances (a token counts
  once per utterance); NIDF(w) = (log max_c - log c_w) / (log max_c - log min_c), i.e. the IDF
  min-max scaled to [0, 1]; a response scores the mean NIDF of its distinct tokens, an unseen
  token scoring 1 (as in EmPO).
- Valence/intensity: the maximum lexicon value over the context's tokens (the last seeker turn)
  minus the maximum over the response's tokens, for V, A, D and emotion intensity; a token not in
  the lexicon counts 0 (so an item with no lexicon word has maximum 0). EmPO reports the signed
  mean ("diff_max_*"); the issue asks for the mean absolute difference and its spread: all three
  are written.
Tokenisation is a lower-cased regex word tokenizer (words with inner apostrophes kept whole,
punctuation marks as tokens), not NLTK's, so no tokenizer data is needed at run time.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .io import InputError, read_csv, read_jsonl

logger = logging.getLogger(__name__)

MECHANISMS = ("er", "ip", "ex")
MECHANISM_NAMES = {"er": "emotional reactions", "ip": "interpretations", "ex": "explorations"}
LEVELS = (0, 1, 2)
VAD_DIMENSIONS = ("valence", "arousal", "dominance")
EMOTION_KEYS = ("v", "a", "d", "intensity")

_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[^\w\s]")


# ---------------------------------------------------------------------------------------------
# Inputs


def tokenize(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens ("I'm sad." -> ["i'm", "sad", "."])."""
    return _TOKEN.findall(str(text).lower())


def read_generations(path: str | os.PathLike) -> pd.DataFrame:
    """One row per generation: conv_id, item (occurrence of that conv_id), context (the last
    seeker turn), reference, generation. Raises InputError naming the line on a bad record."""
    records = read_jsonl(path)
    if not records:
        raise InputError(f"{path}: no generations")
    rows = []
    seen: Counter = Counter()
    for number, record in enumerate(records, start=1):
        where = f"{path}: line {number}"
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected a JSON object")
        missing = [key for key in ("conv_id", "prompt", "reference", "generation") if key not in record]
        if missing:
            raise InputError(f"{where}: missing key(s) {', '.join(missing)}")
        prompt = record["prompt"]
        if not isinstance(prompt, list) or not prompt or not all(
                isinstance(m, dict) and "role" in m and "content" in m for m in prompt):
            raise InputError(f"{where}: 'prompt' must be a non-empty list of {{role, content}} messages")
        if prompt[-1]["role"] != "user":
            raise InputError(f"{where}: the prompt's last message has role {prompt[-1]['role']!r}, "
                             f"expected 'user' (the seeker turn)")
        for key in ("reference", "generation"):
            if not isinstance(record[key], str):
                raise InputError(f"{where}: {key!r} must be a string, got {type(record[key]).__name__}")
        conv_id = str(record["conv_id"])
        rows.append({"conv_id": conv_id, "item": seen[conv_id], "context": str(prompt[-1]["content"]),
                     "reference": record["reference"], "generation": record["generation"]})
        seen[conv_id] += 1
    return pd.DataFrame(rows)


def read_vad_lexicon(path: str | os.PathLike) -> dict[str, tuple[float, float, float]]:
    frame = read_csv(path, required=("word",) + VAD_DIMENSIONS, what="VAD lexicon",
                     keep_default_na=False, na_values=[""])
    for column in VAD_DIMENSIONS:
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.isna().any():
            row = int(values.isna().to_numpy().nonzero()[0][0])
            raise InputError(f"{path}: row {row + 2}, column {column!r}: {frame[column].iloc[row]!r} "
                             f"is not a number")
        frame[column] = values
    words = frame["word"].astype(str).str.lower()
    return {w: (v, a, d) for w, v, a, d in zip(words, frame["valence"], frame["arousal"], frame["dominance"])}


def read_intensity_lexicon(path: str | os.PathLike) -> dict[str, float]:
    """word -> intensity; a word listed under several emotions keeps its highest intensity (the
    EmPO code kept whichever line came last, an accident of the file's order)."""
    frame = read_csv(path, required=("word", "emotion", "intensity"), what="intensity lexicon",
                     keep_default_na=False, na_values=[""])
    values = pd.to_numeric(frame["intensity"], errors="coerce")
    if values.isna().any():
        row = int(values.isna().to_numpy().nonzero()[0][0])
        raise InputError(f"{path}: row {row + 2}, column 'intensity': {frame['intensity'].iloc[row]!r} "
                         f"is not a number")
    frame = frame.assign(word=frame["word"].astype(str).str.lower(), intensity=values)
    return frame.groupby("word")["intensity"].max().to_dict()


def ed_utterances(path: str | os.PathLike) -> list[str]:
    """Every turn's text in the ED training conversations (the documents for NIDF)."""
    texts = []
    for number, record in enumerate(read_jsonl(path), start=1):
        turns = record.get("turns") if isinstance(record, dict) else None
        if not isinstance(turns, list):
            raise InputError(f"{path}: line {number}: expected a 'turns' list")
        for turn in turns:
            if not isinstance(turn, dict) or "text" not in turn:
                raise InputError(f"{path}: line {number}: a turn lacks 'text'")
            texts.append(str(turn["text"]))
    if not texts:
        raise InputError(f"{path}: no utterances to count words in")
    return texts


# ---------------------------------------------------------------------------------------------
# Diversity and specificity


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(token_lists: Iterable[Sequence[str]], n: int) -> float:
    """Distinct n-grams over all n-grams in the corpus (0 when there is none)."""
    counts = Counter(g for tokens in token_lists for g in ngrams(tokens, n))
    total = sum(counts.values())
    return len(counts) / total if total else 0.0


def ngram_entropy(token_lists: Iterable[Sequence[str]], n: int) -> float:
    """Shannon entropy (bits) of the corpus' n-gram frequency distribution."""
    counts = Counter(g for tokens in token_lists for g in ngrams(tokens, n))
    total = sum(counts.values())
    if not total:
        return 0.0
    p = np.array(list(counts.values()), dtype=float) / total
    return float(-(p * np.log2(p)).sum())


def document_frequencies(texts: Iterable[str]) -> Counter:
    """In how many texts each token occurs (once per text)."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(set(tokenize(text)))
    return counts


def nidf_table(word_counts: Mapping[str, int]) -> dict[str, float]:
    """NIDF(w) = (log max_c - log c_w) / (log max_c - log min_c): 0 for the commonest word, 1 for
    the rarest."""
    if not word_counts:
        raise ValueError("no word counts to build NIDF from")
    if min(word_counts.values()) <= 0:
        raise ValueError("word counts must be positive")
    low, high = math.log(min(word_counts.values())), math.log(max(word_counts.values()))
    span = high - low
    if span == 0:
        return {w: 0.0 for w in word_counts}
    return {w: (high - math.log(c)) / span for w, c in word_counts.items()}


def specificity(tokens: Sequence[str], table: Mapping[str, float]) -> float:
    """Mean NIDF of a response's distinct tokens; unseen tokens count 1; an empty response 0."""
    distinct = set(tokens)
    if not distinct:
        return 0.0
    return float(np.mean([table.get(t, 1.0) for t in sorted(distinct)]))


def diversity(texts: Sequence[str], table: Mapping[str, float]) -> tuple[dict, pd.DataFrame]:
    """Corpus-level diversity and per-item length and specificity."""
    token_lists = [tokenize(t) for t in texts]
    first = [tokens[0] for tokens in token_lists if tokens]
    summary = {f"distinct_{n}": distinct_n(token_lists, n) for n in (1, 2, 3)}
    summary.update({f"entropy_{n}": ngram_entropy(token_lists, n) for n in (1, 2, 3)})
    lengths = np.array([len(tokens) for tokens in token_lists], dtype=float)
    nidf = np.array([specificity(tokens, table) for tokens in token_lists])
    summary.update({
        "mean_length": float(lengths.mean()),
        "unique_first_words": len(set(first)),
        "unique_first_words_ratio": len(set(first)) / len(texts) if texts else 0.0,
        "nidf": float(nidf.mean()),
        "empty_responses": int((lengths == 0).sum()),
    })
    per_item = pd.DataFrame({"length": lengths, "nidf": nidf})
    return summary, per_item


# ---------------------------------------------------------------------------------------------
# Valence, arousal, dominance and intensity


def emotion_maxima(tokens: Sequence[str], vad: Mapping[str, Sequence[float]],
                   intensity: Mapping[str, float]) -> dict[str, float]:
    """Maximum V, A, D and intensity over the tokens; a token not in a lexicon counts 0."""
    values = [vad[t] for t in tokens if t in vad]
    maxima = {key: max([0.0] + [float(v[i]) for v in values]) for i, key in enumerate(("v", "a", "d"))}
    maxima["intensity"] = max([0.0] + [float(intensity[t]) for t in tokens if t in intensity])
    return maxima


def emotion_differences(contexts: Sequence[str], responses: Sequence[str], vad, intensity
                        ) -> tuple[dict, pd.DataFrame]:
    """Per item: max over the context minus max over the response, for V, A, D and intensity.
    Summary: the signed mean (EmPO's `diff_max_*`), and the mean and std of the absolute value."""
    rows = []
    for context, response in zip(contexts, responses, strict=True):
        c = emotion_maxima(tokenize(context), vad, intensity)
        r = emotion_maxima(tokenize(response), vad, intensity)
        rows.append({f"diff_max_{k}": c[k] - r[k] for k in EMOTION_KEYS})
    per_item = pd.DataFrame(rows, columns=[f"diff_max_{k}" for k in EMOTION_KEYS])
    summary = {}
    for key in EMOTION_KEYS:
        diff = per_item[f"diff_max_{key}"].to_numpy(dtype=float)
        summary[f"diff_max_{key}"] = float(diff.mean())
        summary[f"abs_diff_max_{key}"] = float(np.abs(diff).mean())
        summary[f"abs_diff_max_{key}_std"] = float(np.abs(diff).std(ddof=1)) if len(diff) > 1 else 0.0
    per_item = per_item.assign(**{f"abs_diff_max_{k}": per_item[f"diff_max_{k}"].abs() for k in EMOTION_KEYS})
    return summary, per_item


# ---------------------------------------------------------------------------------------------
# diff-Epitome


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


def read_epitome(path: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """The prepared EPITOME table as one row per (sp_id, rp_id) pair: seeker_post, response_post,
    level_er, level_ip, level_ex, rationales_er/ip/ex (EPITOME annotates the same pairs for the
    three mechanisms).
    A pair listed twice keeps its first level; the counts of such repeats are returned."""
    frame = read_csv(path, required=("mechanism", "sp_id", "rp_id", "seeker_post", "response_post", "level"),
                     what="EPITOME table", keep_default_na=False, dtype=str)
    levels = pd.to_numeric(frame["level"].str.strip(), errors="coerce")
    bad = ~levels.isin(LEVELS)
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise InputError(f"{path}: row {row + 2}, column 'level': {frame['level'].iloc[row]!r} is not 0, 1 or 2")
    unknown = ~frame["mechanism"].isin(MECHANISMS)
    if unknown.any():
        row = int(unknown.to_numpy().nonzero()[0][0])
        raise InputError(f"{path}: row {row + 2}, column 'mechanism': {frame['mechanism'].iloc[row]!r} is not "
                         f"one of {', '.join(MECHANISMS)}")
    frame = frame.assign(level=levels.astype(int))
    info = {"rows": int(len(frame))}
    pairs = None
    for mechanism in MECHANISMS:
        part = frame[frame["mechanism"] == mechanism]
        if part.empty:
            raise InputError(f"{path}: no rows with mechanism {mechanism!r}")
        conflicting = part.groupby(["sp_id", "rp_id"])["level"].nunique()
        info[f"{mechanism}_repeated_pairs_with_conflicting_levels"] = int((conflicting > 1).sum())
        part = part.drop_duplicates(["sp_id", "rp_id"], keep="first")
        part = part.assign(rationales=part["rationales"] if "rationales" in part.columns else "")
        part = part[["sp_id", "rp_id", "seeker_post", "response_post", "level", "rationales"]].rename(
            columns={"level": f"level_{mechanism}", "rationales": f"rationales_{mechanism}"})
        if pairs is None:
            pairs = part
        else:
            pairs = pairs.merge(part[["sp_id", "rp_id", f"level_{mechanism}", f"rationales_{mechanism}"]],
                                on=["sp_id", "rp_id"], how="inner")
    if pairs.empty:
        raise InputError(f"{path}: no (sp_id, rp_id) pair is annotated for all three mechanisms")
    info["pairs"] = int(len(pairs))
    return pairs.reset_index(drop=True), info


def epitome_split(pairs: pd.DataFrame, held_out: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of the pairs, stratified by the (er, ip, ex) level combination (combinations
    seen fewer than twice pooled): (train indices, held-out indices). The same split serves a
    trained classifier and given weights, so their held-out scores compare."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(pairs))
    combo = sum(pairs[f"level_{m}"].to_numpy() * 3 ** i for i, m in enumerate(MECHANISMS))
    counts = pd.Series(combo).value_counts()
    combo = np.where(pd.Series(combo).map(counts).to_numpy() >= 2, combo, -1)
    n_test = int(round(held_out * len(pairs))) if held_out < 1 else int(held_out)
    strata = pd.Series(combo).value_counts()
    stratify = combo if (strata >= 2).all() and n_test >= len(strata) and len(pairs) - n_test >= len(strata) else None
    train, test = train_test_split(index, test_size=held_out, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(test)


def scored_held_out(test_index: np.ndarray, settings: Mapping, seed: int) -> np.ndarray:
    """The held-out pairs that are scored: all of them, or a seeded subsample of
    `max_held_out_examples` (a size cap, e.g. for the CPU rehearsal; null: all). Trained and
    given classifiers get the same subsample."""
    limit = settings.get("max_held_out_examples")
    if limit and len(test_index) > limit:
        rng = np.random.default_rng([seed, 1])
        return np.sort(rng.choice(test_index, size=int(limit), replace=False))
    return test_index


def classification_scores(gold: Sequence[int], predicted: Sequence[int]) -> dict:
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
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

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
    from . import epitome_biencoder, epitome_features

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
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              Trainer, TrainingArguments, set_seed)

    set_seed(seed)
    train_index, test_index = epitome_split(pairs, settings["held_out"], seed)
    test_index = scored_held_out(test_index, settings, seed)
    limit = settings.get("max_train_examples")
    if limit and len(train_index) > limit:
        # A seeded subsample keeps CPU training within the stage's time budget.
        train_index = np.sort(np.random.default_rng(seed).choice(train_index, size=int(limit), replace=False))
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
                "held_out": classification_scores(held[f"level_{m}"].to_numpy(), predicted[m])}
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
            "held_out": classification_scores(held[f"level_{mechanism}"].to_numpy(), levels),
            "note": "given weights may have been trained on EPITOME pairs that are in this held-out part"}


def save_classifier(model, tokenizer, output_dir: str | os.PathLike) -> None:
    """Save into a sibling temporary folder, then move it into place: no half-written model."""
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        model.save_pretrained(scratch, safe_serialization=True)
        tokenizer.save_pretrained(scratch)
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(scratch, output_dir)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch)


# ---------------------------------------------------------------------------------------------
# BERTScore


def bertscore(candidates: Sequence[str], references: Sequence[str], model: str, num_layers: int | None,
              rescale_with_baseline: bool = False, baseline_path: str | None = None, lang: str = "en",
              batch_size: int = 32, baseline_name: str | None = None) -> pd.DataFrame:
    """Per-item BERTScore precision, recall and F1 of candidates against references (bert-score).
    `model` is a hub id or a local model folder; a local folder needs `num_layers`. Rescaling
    needs a baseline: `baseline_path`, else the one bert-score ships for the hub model
    `baseline_name` (e.g. "FacebookAI/roberta-large" finds roberta-large.tsv) or `model`."""
    import bert_score

    local = os.path.isdir(model)
    if local:
        if num_layers is None:
            raise InputError(f"config key empo.evaluation.bertscore.num_layers: required for the local model {model}")
        import json
        depth = json.loads((Path(model) / "config.json").read_text()).get("num_hidden_layers")
        if depth is not None and not 1 <= num_layers <= depth:
            raise InputError(f"config key empo.evaluation.bertscore.num_layers: {num_layers} is outside 1..{depth} "
                             f"(the layers of {model})")
    if rescale_with_baseline:
        name = baseline_name or model
        shipped_dir = Path(bert_score.__file__).parent / "rescale_baseline" / lang
        # Hub ids with an organisation ("FacebookAI/roberta-large") are shipped under the bare name.
        candidates_ = [shipped_dir / f"{name}.tsv", shipped_dir / f"{name.split('/')[-1]}.tsv"]
        shipped = next((c for c in candidates_ if not os.path.isdir(name) and c.is_file()), None)
        if baseline_path is None and shipped is None:
            raise InputError(
                f"config key empo.evaluation.bertscore.rescale_with_baseline: no baseline for {name!r} "
                f"(bert-score ships baselines only for hub models, e.g. roberta-large; not for a local "
                f"folder); set empo.evaluation.bertscore.baseline_path to a baseline TSV or turn rescaling off")
        if baseline_path is None:
            baseline_path = str(shipped)
        if not os.path.isfile(baseline_path):
            raise InputError(f"config key empo.evaluation.bertscore.baseline_path: {baseline_path} does not exist")
    if not candidates:
        return pd.DataFrame({"bertscore_precision": [], "bertscore_recall": [], "bertscore_f1": []})
    precision, recall, f1 = bert_score.score(
        list(candidates), list(references), model_type=model, num_layers=num_layers,
        rescale_with_baseline=rescale_with_baseline, baseline_path=baseline_path,
        lang=lang if rescale_with_baseline else None, batch_size=batch_size, device=bertscore_device(),
        verbose=False)
    return pd.DataFrame({"bertscore_precision": precision.cpu().numpy().astype(float),
                         "bertscore_recall": recall.cpu().numpy().astype(float),
                         "bertscore_f1": f1.cpu().numpy().astype(float)})


def bertscore_layer(model: str, num_layers: int | None, hub_id: str | None = None) -> tuple[int | None, str]:
    """(layer, where it comes from) for empo.evaluation.bertscore.num_layers. A number is used as
    given; null is bert-score's own default layer for the model (bert_score.utils.model2layers,
    looked up by the model's hub id, e.g. 17 for FacebookAI/roberta-large), as bert_score.score
    picks it for a hub id. A local model bert-score has no default for (a packaged one) gets its
    last layer, and the metrics say so."""
    if num_layers is not None:
        return int(num_layers), "config"
    from bert_score.utils import model2layers

    for name in (hub_id, model):
        if not name or name.startswith("package:"):
            continue
        for key in (name, name.split("/")[-1]):
            if key in model2layers:
                return int(model2layers[key]), f"bert-score's default layer for {key}"
    if os.path.isdir(model):
        import json

        depth = json.loads((Path(model) / "config.json").read_text()).get("num_hidden_layers")
        if depth:
            return int(depth), f"last layer of {hub_id or model} (bert-score has no default layer for it)"
    raise InputError(f"config key empo.evaluation.bertscore.num_layers: null, but bert-score has no default layer "
                     f"for {hub_id or model}; set a layer number")


def bertscore_device() -> str:
    """The job's GPU when it has one (runtime.place_job hides GPUs under device: cpu), else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------------------------------------
# Everything for one model's generations


def evaluate_generations(generations: pd.DataFrame, classifiers: Mapping[str, str], bertscore_model: str,
                         word_counts: Mapping[str, int], vad, intensity, settings: Mapping,
                         classifier_metrics: Mapping[str, dict] | None = None,
                         bertscore_source: str | None = None, seed: int = 0,
                         device: str = "cpu") -> tuple[dict, pd.DataFrame]:
    """text_metrics (diff_epitome, bertscore, diversity, vad) and the per-item table. Each group
    gets `ci` {key: [low, high]}: bootstrap intervals of the per-item means (settings.significance)."""
    texts = generations["generation"].tolist()
    references = generations["reference"].tolist()
    contexts = generations["context"].tolist()
    epitome_settings = settings["epitome"]

    started = time.perf_counter()
    # One pass over generations and references together.
    levels = predict_levels(classifiers, contexts + contexts, texts + references,
                            epitome_settings["max_length"], epitome_settings["batch_size"], device)
    gen_levels = {m: v[:len(texts)] for m, v in levels.items()}
    ref_levels = {m: v[len(texts):] for m, v in levels.items()}
    epitome_summary, epitome_items = diff_epitome(gen_levels, ref_levels)
    for mechanism in MECHANISMS:
        epitome_items[f"level_{mechanism}_generation"] = gen_levels[mechanism]
        epitome_items[f"level_{mechanism}_reference"] = ref_levels[mechanism]
    logger.info("diff-Epitome %s (%.1f s)", epitome_summary, time.perf_counter() - started)

    started = time.perf_counter()
    bs = settings["bertscore"]
    layer, layer_from = bertscore_layer(bertscore_model, bs.get("num_layers"), bertscore_source)
    bert_items = bertscore(texts, references, bertscore_model, layer,
                           bs.get("rescale_with_baseline", False), bs.get("baseline_path"),
                           batch_size=bs.get("batch_size", 32), baseline_name=bertscore_source)
    bert_summary = {
        "precision": float(bert_items["bertscore_precision"].mean()),
        "recall": float(bert_items["bertscore_recall"].mean()),
        "f1": float(bert_items["bertscore_f1"].mean()),
        "model": bs["model"], "num_layers": layer, "num_layers_from": layer_from,
        "rescale_with_baseline": bool(bs.get("rescale_with_baseline", False)),
    }
    logger.info("BERTScore P/R/F1 %.4f/%.4f/%.4f (%.1f s)", bert_summary["precision"], bert_summary["recall"],
                bert_summary["f1"], time.perf_counter() - started)

    diversity_summary, diversity_items = diversity(texts, nidf_table(word_counts))
    vad_summary, vad_items = emotion_differences(contexts, texts, vad, intensity)

    per_item = pd.concat([generations[["conv_id", "item"]].reset_index(drop=True), epitome_items,
                          bert_items, diversity_items, vad_items], axis=1)
    metrics = {
        "n_items": int(len(generations)),
        "diff_epitome": epitome_summary,
        "bertscore": bert_summary,
        "diversity": diversity_summary,
        "vad": vad_summary,
    }
    significance_settings = settings.get("significance", {})
    resamples = int(significance_settings.get("bootstrap", 1000))
    confidence = float(significance_settings.get("confidence", 0.95))
    for group, keys in INTERVAL_COLUMNS.items():
        metrics[group]["ci"] = {
            key: list(bootstrap_interval(per_item[column].to_numpy(dtype=float), resamples,
                                         _rng(seed, "text_metrics", column), confidence))
            for key, column in keys.items()}
    metrics["ci_confidence"] = confidence
    if classifier_metrics:
        metrics["epitome_classifiers"] = {
            m: {k: classifier_metrics[m]["held_out"][k] for k in ("accuracy", "macro_f1", "majority_accuracy", "n")}
            for m in MECHANISMS}
    return _finite(metrics), per_item


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


def merge_lm_eval(text_metrics: dict, lm_eval: dict, path: str = "lm_eval.json") -> dict:
    """metrics.json: the text metrics plus `lm_eval` {TASK: score}: the rule empo_lm_eval's
    "scores" (the requested tasks' primary metric) when present, else each task's accuracy in
    lm-eval's "results"."""
    scores = lm_eval.get("scores") if isinstance(lm_eval, dict) else None
    if isinstance(scores, dict) and scores:
        bad = [task for task, value in scores.items() if not isinstance(value, (int, float)) or isinstance(value, bool)]
        if bad:
            raise InputError(f"{path}: scores.{bad[0]} is not a number: {scores[bad[0]]!r}")
        return {**text_metrics, "lm_eval": {task: float(value) for task, value in sorted(scores.items())}}
    results = lm_eval.get("results") if isinstance(lm_eval, dict) else None
    if not isinstance(results, dict) or not results:
        raise InputError(f"{path}: expected a non-empty 'results' object of lm-eval task results")
    scores = {}
    for task, values in sorted(results.items()):
        if not isinstance(values, dict):
            raise InputError(f"{path}: results.{task} is not an object")
        for key in ("acc,none", "acc", "acc_norm,none", "acc_norm", "exact_match,none", "exact_match", "score"):
            if isinstance(values.get(key), (int, float)):
                scores[task] = float(values[key])
                break
        else:
            raise InputError(f"{path}: results.{task} has no accuracy (looked for acc, acc_norm, exact_match); "
                             f"keys: {', '.join(sorted(values))}")
    return {**text_metrics, "lm_eval": scores}


# ---------------------------------------------------------------------------------------------
# Significance


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
    return _finite(result)


def _finite(value):
    """NaN (no items, or zero resamples) written as JSON null, not as the non-standard NaN."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def read_per_item(path: str | os.PathLike) -> pd.DataFrame:
    frame = read_csv(path, required=("conv_id", "item"), what="per-item scores", dtype={"conv_id": str})
    return frame
