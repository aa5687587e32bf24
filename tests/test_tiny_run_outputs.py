"""The outputs of the full tiny run (conftest `tiny_run`, shared with the rerun tests), looked at:
every similarity metrics.json recomputes from its predictions.csv, all methods scored the same
pairs, every model has a generation for every prompt, lm-eval and the text metrics are there and
agree with their per-item tables, preference pairs stay in their split, and the real summary.md
holds the numbers of the result files, cell by cell."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from conftest import REPO, TINY_CONFIG, merge_config
from report_tables import markdown_tables, table_with

CONFIG = merge_config(yaml.safe_load((REPO / "config.yaml").read_text()), yaml.safe_load(TINY_CONFIG.read_text()))
# The report's row labels of the similarity methods (written out here, not imported: a label
# given to the wrong method shows)
LABELS = {"zeroshot": "zero-shot encoder (cosine)", "contrastive": "contrastive fine-tuned encoder (cosine)",
          "llm_zeroshot": "LLM, untuned (guided choice, both orders)", "llm_sft": "LLM, LoRA fine-tuned (greedy answer)"}


def read(path: Path):
    return json.loads(path.read_text())


def cell(value) -> str:
    """A number as the report prints it: three decimals, integers as they are."""
    if isinstance(value, bool) or value is None:
        return "n/a" if value is None else str(value)
    return str(value) if isinstance(value, int) else f"{value:.3f}"


def scores_by_hand(gold: np.ndarray, predicted: np.ndarray) -> dict:
    """Pearson, Spearman, MSE and the classification scores at the paper's threshold (positive:
    score > 2.5; macro averages, gold as y_true), computed here without the workflow's code."""
    y_true, y_pred = (gold > 2.5).astype(int), (predicted > 2.5).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=[0, 1], average="macro",
                                                               zero_division=0)
    constant = np.ptp(gold) == 0 or np.ptp(predicted) == 0
    return {"n": len(gold), "pearson": None if constant else float(np.corrcoef(gold, predicted)[0, 1]),
            "spearman": None if constant else float(stats.spearmanr(gold, predicted).statistic),
            "mse": float(np.mean((gold - predicted) ** 2)), "accuracy": float(accuracy_score(y_true, y_pred)),
            "precision": float(precision), "recall": float(recall), "f1": float(f1),
            "gold_positive_rate": float(y_true.mean())}


def similarity_files(run: Path) -> dict[tuple[str, str], Path]:
    return {(p.parent.parent.name, p.parent.name): p for p in (run / "results" / "similarity").glob("*/*/metrics.json")}


def test_every_similarity_metrics_json_recomputes_from_its_predictions(tiny_run):
    files = similarity_files(tiny_run)
    methods, test_sets = CONFIG["similarity"]["methods"], CONFIG["similarity"]["test_sets"]
    assert {method for method, _ in files} == set(methods)
    assert {test_set for _, test_set in files} == set(test_sets)
    for (method, test_set), path in files.items():
        result = read(path)
        predictions = pd.read_csv(path.with_name("predictions.csv"))
        scored = predictions.dropna(subset=["predicted"])
        assert result["n"] == len(scored) == len(predictions), path  # local models score every pair
        expected = scores_by_hand(scored["gold"].to_numpy(float), scored["predicted"].to_numpy(float))
        for key, value in expected.items():
            assert result[key] == (value if value is None else pytest.approx(value, abs=1e-9)), (path, key)
        assert set(result["extra_metrics"]) == set(result.get("extra_scorings", {})), path
        for column, extra in result["extra_metrics"].items():
            again = scores_by_hand(predictions["gold"].to_numpy(float), predictions[column].to_numpy(float))
            for key, value in extra.items():
                assert value == (again[key] if again[key] is None else pytest.approx(again[key], abs=1e-9)), (
                    path, column, key)


def test_all_methods_scored_the_same_pairs(tiny_run):
    files = similarity_files(tiny_run)
    limit = CONFIG["similarity"]["max_test_pairs"]
    for test_set in CONFIG["similarity"]["test_sets"]:
        frames = {method: pd.read_csv(path.with_name("predictions.csv"), dtype={"pair_id": str})
                  for (method, name), path in files.items() if name == test_set}
        assert set(frames) == set(CONFIG["similarity"]["methods"]), test_set
        first = next(iter(frames.values()))
        assert len(first) == limit and first["pair_id"].is_unique
        for method, frame in frames.items():
            assert frame["pair_id"].tolist() == first["pair_id"].tolist(), (test_set, method)
            assert frame["gold"].tolist() == first["gold"].tolist(), (test_set, method)


def generation_models(run: Path) -> list[str]:
    return ["base", "sft"] + sorted(CONFIG["empo"]["preference"]["runs"])


def test_every_model_has_a_generation_for_every_prompt(tiny_run):
    test = [json.loads(line) for line in
            (tiny_run / "results/data/empathetic_dialogues/test.jsonl").read_text().splitlines()]
    test_ids = {record["conv_id"] for record in test}
    expected = None
    for model in generation_models(tiny_run):
        records = [json.loads(line) for line in
                   (tiny_run / f"results/empo/generations/{model}.jsonl").read_text().splitlines()]
        ids = [record["conv_id"] for record in records]
        assert len(ids) == len(set(ids)) == min(CONFIG["empo"]["generation"]["max_examples"], len(test_ids)), model
        assert set(ids) <= test_ids, model
        assert all(record["generation"].strip() for record in records), model
        expected = expected or ids
        assert ids == expected, model  # every model answered the same prompts


def test_lm_eval_and_text_metrics_are_there_and_agree_with_their_items(tiny_run):
    lm_eval = CONFIG["empo"]["evaluation"]["lm_eval"]
    for model in generation_models(tiny_run):
        folder = tiny_run / "results/empo/eval" / model
        scores = read(folder / "lm_eval.json")
        task = scores["results"]["mmlu_local"]
        assert task["n"] == lm_eval["limit"] * len(lm_eval["subjects"]) and task["num_fewshot"] == lm_eval["num_fewshot"]
        # an accuracy over n questions is a multiple of 1/n
        assert task["acc"] * task["n"] == pytest.approx(round(task["acc"] * task["n"]))
        merged = read(folder / "metrics.json")
        assert merged["lm_eval"]["mmlu_local"] == scores["scores"]["mmlu_local"], model
        text = read(folder / "text_metrics.json")
        items = pd.read_csv(folder / "per_item.csv")
        generations = (tiny_run / f"results/empo/generations/{model}.jsonl").read_text().splitlines()
        assert text["n_items"] == len(items) == len(generations), model
        for key in ("precision", "recall", "f1"):
            assert text["bertscore"][key] == pytest.approx(items[f"bertscore_{key}"].mean(), abs=1e-9), (model, key)
            assert merged["bertscore"][key] == text["bertscore"][key]
        for mechanism in ("er", "ip", "ex"):
            assert text["diff_epitome"][mechanism] == pytest.approx(items[f"diff_{mechanism}"].mean(), abs=1e-9)
            squared = (items[f"level_{mechanism}_generation"] - items[f"level_{mechanism}_reference"]) ** 2
            assert items[f"diff_{mechanism}"].tolist() == squared.tolist(), (model, mechanism)
        for key in ("distinct_1", "distinct_2", "nidf", "mean_length"):
            assert math.isfinite(text["diversity"][key]), (model, key)


def test_preference_pairs_stay_in_their_split(tiny_run):
    """Every pair of split S names only conversations of S's data file, none of another split's."""
    folder = tiny_run / "results/data/empathetic_dialogues"
    ids = {split: {json.loads(line)["conv_id"] for line in (folder / f"{split}.jsonl").read_text().splitlines()}
           for split in ("train", "valid", "test")}
    assert not (ids["train"] & ids["valid"] or ids["train"] & ids["test"] or ids["valid"] & ids["test"])
    files = sorted((tiny_run / "results/empo/pairs").glob("*.jsonl"))
    assert {path.stem for path in files} >= {"train", "valid"}
    for path in files:
        split = path.stem
        pairs = [json.loads(line) for line in path.read_text().splitlines()]
        assert pairs, split
        for pair in pairs:
            assert {pair["conv_id"], pair["rejected_conv_id"]} <= ids[split], (split, pair["conv_id"])


def section_table(text: str, marker: str) -> list[dict]:
    """The first table after `marker` in the report."""
    start = text.index(marker)
    return markdown_tables(text[start:])[0]


def test_summary_holds_the_numbers_of_the_result_files(tiny_run):
    text = (tiny_run / "results/report/summary.md").read_text()
    files = similarity_files(tiny_run)
    columns = ("pearson", "spearman", "mse", "accuracy", "precision", "recall", "f1")
    rows = table_with(text, "method", "test set", "pearson", "n")
    assert len(rows) == len(files)
    by_label = {label: method for method, label in LABELS.items()}
    for row in rows:
        result = read(files[by_label[row["method"]], row["test set"]])
        for column in columns + ("n",):
            assert row[column] == cell(result[column]), (row["method"], row["test set"], column)
    extra = table_with(text, "method", "test set", "scoring", "pearson")
    assert len(extra) == sum(len(read(path)["extra_metrics"]) for path in files.values()) > 0
    for row in extra:
        values = read(files[by_label[row["method"]], row["test set"]])["extra_metrics"][row["scoring"]]
        for column in columns:
            assert row[column] == cell(values[column]), (row["method"], row["test set"], row["scoring"], column)

    models = generation_models(tiny_run)
    metrics = {model: read(tiny_run / f"results/empo/eval/{model}/metrics.json") for model in models}
    for group in ("bertscore", "lm_eval", "diversity", "vad"):
        table = section_table(text, f"**{group}**.")
        assert [row["model"] for row in table] == models, group
        for row in table:
            for key, shown in row.items():
                if key == "model":
                    continue
                value = metrics[row["model"]][group]
                for part in key.split("."):
                    value = value[part]
                assert shown == cell(value), (group, row["model"], key)
        assert len(table[0]) > 1, group
    assert "f1" in section_table(text, "**bertscore**.")[0] and "mmlu_local" in section_table(text, "**lm_eval**.")[0]
    diff = table_with(text, "model", "er", "ip", "ex", "mean")
    for row in diff:
        for column in ("er", "ip", "ex", "mean"):
            if row[column] != "not informative":
                assert row[column].split(" ")[0] == cell(metrics[row["model"]]["diff_epitome"][column]), (
                    row["model"], column)
