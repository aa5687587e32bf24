"""Evaluation of one EmPO model's generations: diff-Epitome, BERTScore, diversity, valence and
emotion intensity against the references, per item and summarised; lm-eval merged in."""

from __future__ import annotations

import logging
import time
from typing import Mapping

import pandas as pd

from empathy_workflow.core.io import InputError, json_safe
from empathy_workflow.core.stats import _rng, bootstrap_interval
from empathy_workflow.empo.bertscore import bertscore, bertscore_layer
from empathy_workflow.empo.epitome import diff_epitome, predict_levels
from empathy_workflow.empo.epitome_data import MECHANISMS
from empathy_workflow.empo.significance import INTERVAL_COLUMNS
from empathy_workflow.empo.text_metrics import (
    diversity,
    emotion_differences,
    nidf_table,
)

logger = logging.getLogger(__name__)


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
    return json_safe(metrics), per_item


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
