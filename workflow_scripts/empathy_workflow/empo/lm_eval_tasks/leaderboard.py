"""The Open LLM Leaderboard v2 (lm-eval's `leaderboard` group): each subtask's own metric and the
leaderboard's normalised average.

lm-eval reports, for the `leaderboard` group, a size-weighted mean of every metric any member
has (acc from MMLU-Pro only, acc_norm from BBH/GPQA/MuSR, exact_match from MATH, the IFEval
accuracies): none of them is the leaderboard's score. The leaderboard normalises each benchmark
between its random baseline and the maximum, then averages the six benchmarks, as documented in
https://huggingface.co/docs/leaderboards/open_llm_leaderboard/normalization :
  normalize_within_range(value, lower, higher) = (value - lower) / (higher - lower), 0 below the
  random baseline (lower = 1 / number of choices), higher = 1;
  - without subtasks: GPQA (acc_norm, 4 choices), MMLU-Pro (acc, 10 choices): the task's score;
  - with subtasks: BBH and MuSR (acc_norm): each subtask with its own baseline, then their mean;
  - generative: IFEval = mean of inst_level_strict_acc and prompt_level_strict_acc, MATH Lvl 5 =
    exact_match (lower bound 0).
Scores here are fractions (0-1); the leaderboard shows them x100.
"""

from __future__ import annotations

from pathlib import Path

import yaml

GROUP = "leaderboard"

# Leaf-task prefix -> the metric that task is scored by on the leaderboard (lm-eval task configs).
OWN_METRIC = (
    ("leaderboard_bbh_", "acc_norm"),
    ("leaderboard_gpqa_", "acc_norm"),
    ("leaderboard_musr_", "acc_norm"),
    ("leaderboard_math_", "exact_match"),
    ("leaderboard_mmlu_pro", "acc"),
    ("leaderboard_ifeval", "ifeval_strict_mean"),
)
IFEVAL_METRICS = ("inst_level_strict_acc", "prompt_level_strict_acc")

# Choices of the MuSR subtasks (their choices come from each document, so not from a config):
# the numbers the leaderboard's normalisation page gives.
MUSR_CHOICES = {"leaderboard_musr_murder_mysteries": 2, "leaderboard_musr_object_placements": 5,
                "leaderboard_musr_team_allocation": 3}
GPQA_CHOICES = 4
MMLU_PRO_CHOICES = 10
BENCHMARKS = ("ifeval", "bbh", "math_hard", "gpqa", "musr", "mmlu_pro")


def own_metric(task: str) -> str | None:
    """The leaderboard metric of a leaderboard task or group, or None for other tasks."""
    for prefix, metric in OWN_METRIC:
        if task.startswith(prefix) or task == prefix.rstrip("_"):
            return metric
    return None


def task_score(task: str, metrics: dict) -> tuple[str, float | None]:
    """(metric name, value) of a leaderboard task from its parsed metrics ({"acc_norm": .., ...})."""
    metric = own_metric(task)
    if metric == "ifeval_strict_mean":
        values = [metrics.get(name) for name in IFEVAL_METRICS]
        return metric, None if None in values else sum(values) / len(values)
    return metric, metrics.get(metric)


def bbh_choices(task: str) -> int:
    """Number of answer choices of a BBH subtask, read from lm-eval's own task config."""
    import lm_eval.tasks

    name = task.removeprefix("leaderboard_bbh_")
    path = Path(lm_eval.tasks.__file__).parent / "leaderboard" / "bbh_mc" / f"{name}.yaml"
    if not path.exists():
        raise ValueError(f"{task}: no lm-eval task config at {path}, so its random baseline is unknown")
    config = yaml.load(path.read_text(), Loader=_IgnoreTags)
    choices = config.get("doc_to_choice")
    if not isinstance(choices, list) or len(choices) < 2:
        raise ValueError(f"{path}: doc_to_choice is not a list of choices")
    return len(choices)


class _IgnoreTags(yaml.SafeLoader):
    """lm-eval's task configs carry `!function` tags; the choice lists are plain YAML."""


_IgnoreTags.add_multi_constructor("!", lambda loader, suffix, node: None)


def normalise(value: float, lower: float, higher: float = 1.0) -> float:
    """The leaderboard's normalize_within_range, 0 for scores below the random baseline."""
    if value < lower:
        return 0.0
    return (value - lower) / (higher - lower)


def normalised_average(scores: dict[str, float | None]) -> dict | None:
    """{"benchmarks": {BENCHMARK: normalised score}, "average": mean of the six} from the leaf tasks'
    own scores ({TASK: value}); None when the results hold no leaderboard task. A benchmark with no
    subtask scored is an error: an average over fewer benchmarks is not the leaderboard's."""
    leaves = {task: value for task, value in scores.items() if own_metric(task) and value is not None}
    if not leaves:
        return None
    bbh = [normalise(v, 1 / bbh_choices(t)) for t, v in leaves.items() if t.startswith("leaderboard_bbh_")]
    musr = [normalise(v, 1 / MUSR_CHOICES[t]) for t, v in leaves.items() if t in MUSR_CHOICES]
    benchmarks = {
        "ifeval": leaves.get("leaderboard_ifeval"),
        "bbh": sum(bbh) / len(bbh) if bbh else None,
        "math_hard": scores.get("leaderboard_math_hard"),
        "gpqa": _maybe(scores.get("leaderboard_gpqa"), 1 / GPQA_CHOICES),
        "musr": sum(musr) / len(musr) if musr else None,
        "mmlu_pro": _maybe(leaves.get("leaderboard_mmlu_pro"), 1 / MMLU_PRO_CHOICES),
    }
    missing = [name for name, value in benchmarks.items() if value is None]
    if missing:
        raise ValueError(f"lm-eval results hold leaderboard tasks but no score for {', '.join(missing)}: "
                         f"the normalised average needs all of {', '.join(BENCHMARKS)}")
    return {"benchmarks": benchmarks, "average": sum(benchmarks.values()) / len(benchmarks),
            "scale": "fraction (the leaderboard shows x100)",
            "method": "https://huggingface.co/docs/leaderboards/open_llm_leaderboard/normalization"}


def _maybe(value: float | None, lower: float) -> float | None:
    return None if value is None else normalise(value, lower)
