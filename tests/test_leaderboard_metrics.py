"""Issue 13, item 3: the Open LLM Leaderboard v2 group scored as the leaderboard scores it.

The input is the structure lm_eval.simple_evaluate returns for `--tasks leaderboard` (lm-eval
0.4.x: "results" with "METRIC,FILTER" keys and an "alias", "group_subtasks", "n-samples",
"n-shot"), made by hand with realistic values. The expected normalised scores follow
https://huggingface.co/docs/leaderboards/open_llm_leaderboard/normalization, worked out here by
hand for the numbers below.
"""

from __future__ import annotations

import pytest

from empathy_workflow.empo.lm_eval_tasks import leaderboard, runner

BBH = {  # subtask: (acc_norm, number of choices in lm-eval's config)
    "boolean_expressions": (0.784, 2), "causal_judgement": (0.615, 2), "date_understanding": (0.42, 6),
    "disambiguation_qa": (0.30, 3), "formal_fallacies": (0.53, 2), "geometric_shapes": (0.25, 11),
    "hyperbaton": (0.62, 2), "logical_deduction_five_objects": (0.36, 5),
    "logical_deduction_seven_objects": (0.30, 7), "logical_deduction_three_objects": (0.52, 3),
    "movie_recommendation": (0.58, 6), "navigate": (0.55, 2), "object_counting": (0.40, 19),
    "penguins_in_a_table": (0.41, 5), "reasoning_about_colored_objects": (0.39, 18),
    "ruin_names": (0.45, 6), "salient_translation_error_detection": (0.38, 6), "snarks": (0.60, 2),
    "sports_understanding": (0.71, 2), "temporal_sequences": (0.26, 4),
    "tracking_shuffled_objects_five_objects": (0.17, 5), "tracking_shuffled_objects_seven_objects": (0.12, 7),
    "tracking_shuffled_objects_three_objects": (0.34, 3), "web_of_lies": (0.49, 2),
}
MUSR = {"murder_mysteries": (0.55, 2), "object_placements": (0.31, 5), "team_allocation": (0.30, 3)}
MATH = ["algebra", "counting_and_prob", "geometry", "intermediate_algebra", "num_theory", "prealgebra",
        "precalculus"]


def _entry(alias, **metrics):
    entry = {"alias": alias}
    for name, value in metrics.items():
        entry[f"{name},none"] = value
        entry[f"{name}_stderr,none"] = "N/A" if name.startswith("inst_") else 0.02
    return entry


def lm_eval_output() -> dict:
    results, n_samples, subtasks = {}, {}, {}

    def leaf(task, n, **metrics):
        results[task] = _entry(f" - {task}", **metrics)
        n_samples[task] = {"original": n, "effective": n}

    for name, (value, _) in BBH.items():
        leaf(f"leaderboard_bbh_{name}", 250, acc_norm=value)
    for name, (value, _) in MUSR.items():
        leaf(f"leaderboard_musr_{name}", 250, acc_norm=value)
    for i, name in enumerate(MATH):
        leaf(f"leaderboard_math_{name}_hard", 100 + 10 * i, exact_match=0.02 * (i + 1))
    leaf("leaderboard_gpqa_diamond", 198, acc_norm=0.29)
    leaf("leaderboard_gpqa_extended", 546, acc_norm=0.27)
    leaf("leaderboard_gpqa_main", 448, acc_norm=0.30)
    leaf("leaderboard_ifeval", 541, prompt_level_strict_acc=0.38, inst_level_strict_acc=0.50,
         prompt_level_loose_acc=0.43, inst_level_loose_acc=0.56)
    leaf("leaderboard_mmlu_pro", 12032, acc=0.2713)
    subtasks["leaderboard_bbh"] = [f"leaderboard_bbh_{n}" for n in BBH]
    subtasks["leaderboard_musr"] = [f"leaderboard_musr_{n}" for n in MUSR]
    subtasks["leaderboard_math_hard"] = [f"leaderboard_math_{n}_hard" for n in MATH]
    subtasks["leaderboard_gpqa"] = ["leaderboard_gpqa_diamond", "leaderboard_gpqa_extended", "leaderboard_gpqa_main"]
    subtasks["leaderboard"] = ["leaderboard_mmlu_pro", "leaderboard_bbh", "leaderboard_gpqa",
                               "leaderboard_math_hard", "leaderboard_ifeval", "leaderboard_musr"]
    # group rows: lm-eval's size-weighted means of whatever metrics their members report
    results["leaderboard_bbh"] = _entry(" - leaderboard_bbh", acc_norm=0.4581)
    results["leaderboard_musr"] = _entry(" - leaderboard_musr", acc_norm=0.3867)
    math_n = [100 + 10 * i for i in range(len(MATH))]
    math_mean = sum(0.02 * (i + 1) * n for i, n in enumerate(math_n)) / sum(math_n)
    results["leaderboard_math_hard"] = _entry(" - leaderboard_math_hard", exact_match=math_mean)
    gpqa_mean = (0.29 * 198 + 0.27 * 546 + 0.30 * 448) / (198 + 546 + 448)
    results["leaderboard_gpqa"] = _entry(" - leaderboard_gpqa", acc_norm=gpqa_mean)
    results["leaderboard"] = _entry("leaderboard", acc=0.2713, acc_norm=0.4322, exact_match=0.0204,
                                    inst_level_strict_acc=0.5072, prompt_level_strict_acc=0.3826,
                                    inst_level_loose_acc=0.5588, prompt_level_loose_acc=0.4288)
    n_shot = {task: 0 for task in results}
    return {"results": results, "n-samples": n_samples, "n-shot": n_shot, "group_subtasks": subtasks,
            "math_mean": math_mean, "gpqa_mean": gpqa_mean}


def expected_average(output) -> tuple[dict, float]:
    def norm(value, choices):
        lower = 1 / choices
        return max(0.0, (value - lower) / (1 - lower))

    benchmarks = {
        "ifeval": (0.38 + 0.50) / 2,
        "bbh": sum(norm(v, c) for v, c in BBH.values()) / len(BBH),
        "math_hard": output["math_mean"],
        "gpqa": norm(output["gpqa_mean"], 4),
        "musr": sum(norm(v, c) for v, c in MUSR.values()) / len(MUSR),
        "mmlu_pro": norm(0.2713, 10),
    }
    return benchmarks, sum(benchmarks.values()) / 6


def test_every_subtask_is_scored_by_its_own_metric():
    output = lm_eval_output()
    summary = runner.summarise(output, ["leaderboard"], config={})
    results = summary["results"]
    assert results["leaderboard_bbh_navigate"]["metric"] == "acc_norm"
    assert results["leaderboard_bbh_navigate"]["score"] == pytest.approx(0.55)
    assert results["leaderboard_gpqa_main"]["metric"] == "acc_norm"
    assert results["leaderboard_musr_team_allocation"]["score"] == pytest.approx(0.30)
    assert results["leaderboard_math_geometry_hard"]["metric"] == "exact_match"
    assert results["leaderboard_mmlu_pro"]["metric"] == "acc"
    assert results["leaderboard_ifeval"]["score"] == pytest.approx((0.38 + 0.50) / 2)
    assert results["leaderboard_ifeval"]["prompt_level_strict_acc"] == pytest.approx(0.38)
    assert results["leaderboard_math_hard"]["score"] == pytest.approx(output["math_mean"])
    # the group's number is not lm-eval's "acc" (which only MMLU-Pro reports)
    assert summary["scores"]["leaderboard"] != pytest.approx(0.2713)


def test_leaderboard_score_is_the_documented_normalised_average():
    output = lm_eval_output()
    summary = runner.summarise(output, ["leaderboard"], config={})
    benchmarks, average = expected_average(output)
    entry = summary["results"]["leaderboard"]
    assert entry["metric"] == "open_llm_leaderboard_v2_normalised_average"
    assert entry["normalised"]["benchmarks"] == pytest.approx(benchmarks)
    assert summary["scores"]["leaderboard"] == pytest.approx(average)
    # hand check of two parts: BBH geometric_shapes (11 choices) is below chance -> 0
    assert leaderboard.normalise(0.25, 1 / 11) > 0 and leaderboard.normalise(0.05, 1 / 11) == 0
    assert leaderboard.bbh_choices("leaderboard_bbh_geometric_shapes") == 11


def test_bbh_choice_counts_come_from_lm_eval_configs():
    for name, (_, choices) in BBH.items():
        assert leaderboard.bbh_choices(f"leaderboard_bbh_{name}") == choices, name


def test_a_missing_benchmark_is_an_error_not_a_shorter_average():
    output = lm_eval_output()
    del output["results"]["leaderboard_mmlu_pro"]
    with pytest.raises(ValueError, match="mmlu_pro"):
        runner.summarise(output, ["leaderboard"], config={})


def test_other_tasks_keep_their_metric():
    output = {"results": {"mmlu": _entry("mmlu", acc=0.61)}, "n-samples": {"mmlu": {"effective": 10}},
              "n-shot": {"mmlu": 5}}
    assert runner.summarise(output, ["mmlu"], config={})["scores"] == {"mmlu": pytest.approx(0.61)}
