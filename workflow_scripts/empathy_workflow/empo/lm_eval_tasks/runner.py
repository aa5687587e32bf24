"""MMLU (and other lm-eval tasks) for base, SFT and preference-run models, through lm-eval's API.

Default config: `mmlu_local`, a task group written per job into a scratch directory, one task
`mmlu_local_SUBJECT` per configured subject. Each task `include`s lm-eval's own MMLU template
(tasks/mmlu/default/_default_template_yaml: same prompt, "The following are multiple choice
questions (with answers) about SUBJECT." description, "Answer:" suffix, A-D choices scored by
log-likelihood, first-n few-shot examples from the dev split) and swaps only the dataset for
local JSON lines written from results/data/mmlu/questions.csv. So the local score is the stock
`mmlu_SUBJECT` score on the same questions, without a download.

Full-scale configs name lm-eval's stock tasks (`mmlu`, `leaderboard`); they are passed through.

Adapters go through lm-eval's HF model `peft=` argument, as the EmPO authors ran it
(`pretrained=BASE,peft=ADAPTER`): every adapter folder is complete over the base (a preference
run continues the SFT adapter, training.py), so `pretrained` is always the base model.

Few-shot: `num_fewshot` applies to every task, as the authors ran lm-eval (mmlu and leaderboard
with --num_fewshot 5; README.md of justtherightsize/empo).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import pandas as pd
import yaml

from empathy_workflow.core.io import InputError, read_csv, write_jsonl
from empathy_workflow.empo.lm_eval_tasks import leaderboard

logger = logging.getLogger(__name__)

KEY = "empo.evaluation.lm_eval"
LOCAL_GROUP = "mmlu_local"
LETTERS = ("A", "B", "C", "D")
QUESTION_COLUMNS = ("subject", "split", "question", "A", "B", "C", "D", "answer")
# The first of these a task reports is its score in "scores", unless the task is one of the
# Open LLM Leaderboard's: those are scored by their own metric (leaderboard.py).
PRIMARY_METRICS = ("acc", "acc_norm", "exact_match", "prompt_level_strict_acc", "inst_level_strict_acc")


def local_task_name(subject: str) -> str:
    return f"{LOCAL_GROUP}_{subject}"


# --------------------------------------------------------------------------------------------
# Questions


def read_questions(path: str | os.PathLike) -> pd.DataFrame:
    """results/data/mmlu/questions.csv: subject, split (test|dev), question, A-D, answer (A-D)."""
    frame = read_csv(path, required=QUESTION_COLUMNS, what="MMLU questions CSV",
                     dtype=str, keep_default_na=False)
    bad_split = ~frame["split"].isin(["test", "dev"])
    if bad_split.any():
        row = int(bad_split.to_numpy().nonzero()[0][0])
        raise InputError(f"{path}: row {row + 2}, column 'split': {frame['split'].iloc[row]!r} is not test or dev")
    answers = frame["answer"].str.strip().str.upper()
    bad_answer = ~answers.isin(LETTERS)
    if bad_answer.any():
        row = int(bad_answer.to_numpy().nonzero()[0][0])
        raise InputError(f"{path}: row {row + 2}, column 'answer': {frame['answer'].iloc[row]!r} is not one of A-D")
    frame["answer"] = answers
    return frame


def choose_subjects(questions: pd.DataFrame, subjects: Sequence[str] | None, num_fewshot: int,
                    path: str | os.PathLike) -> list[str]:
    """The configured subjects (null: every subject of the file), each with test questions and
    enough dev questions for the few-shot examples; errors name the config key."""
    available = sorted(set(questions.loc[questions["split"] == "test", "subject"]))
    if subjects is None:
        subjects = available
    if not subjects:
        raise InputError(f"config key {KEY}.subjects: empty list; name at least one subject or use null for all")
    unknown = [subject for subject in subjects if subject not in available]
    if unknown:
        raise InputError(f"config key {KEY}.subjects: unknown subject(s) {', '.join(map(repr, unknown))}: "
                         f"no test questions in {path}; available: {', '.join(available)}")
    if len(set(subjects)) != len(subjects):
        raise InputError(f"config key {KEY}.subjects: a subject is listed twice")
    dev_counts = questions[questions["split"] == "dev"].groupby("subject").size()
    for subject in subjects:
        if int(dev_counts.get(subject, 0)) < num_fewshot:
            raise InputError(f"config key {KEY}.num_fewshot: {num_fewshot} few-shot examples asked for, but "
                             f"{path} has only {int(dev_counts.get(subject, 0))} dev question(s) for {subject!r}")
    return list(subjects)


def _docs(frame: pd.DataFrame) -> list[dict]:
    """Rows in the cais/mmlu schema the stock template reads: question, subject, choices, answer."""
    return [{"question": row.question, "subject": row.subject, "choices": [row.A, row.B, row.C, row.D],
             "answer": LETTERS.index(row.answer)} for row in frame.itertuples(index=False)]


def stock_mmlu_template() -> Path:
    import lm_eval.tasks

    path = Path(lm_eval.tasks.__file__).parent / "mmlu" / "default" / "_default_template_yaml"
    if not path.exists():
        raise InputError(f"{path}: lm-eval's MMLU template is missing (lm_eval {_lm_eval_version()})")
    return path


def write_local_tasks(questions: pd.DataFrame, subjects: Sequence[str], task_dir: str | os.PathLike) -> list[str]:
    """Data files, one task YAML per subject and the `mmlu_local` group YAML into `task_dir`
    (the include path handed to lm-eval's TaskManager). Returns the task names."""
    task_dir = Path(task_dir)
    data_dir = task_dir / "data"
    template = stock_mmlu_template()
    names = []
    for subject in subjects:
        files = {}
        for split in ("test", "dev"):
            rows = questions[(questions["subject"] == subject) & (questions["split"] == split)]
            files[split] = str(data_dir / f"{subject}_{split}.jsonl")
            write_jsonl(files[split], _docs(rows))
        name = local_task_name(subject)
        config = {
            "include": str(template),
            "task": name,
            "task_alias": subject,
            "tag": f"{LOCAL_GROUP}_tasks",
            "dataset_path": "json",
            "dataset_name": None,
            # a private datasets cache: no clash with other jobs, nothing left in ~/.cache
            "dataset_kwargs": {"data_files": files, "cache_dir": str(task_dir / "hf_cache")},
            "description": f"The following are multiple choice questions (with answers) about "
                           f"{subject.replace('_', ' ')}.\n\n",
        }
        (task_dir / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=True), encoding="utf-8")
        names.append(name)
    group = {"group": LOCAL_GROUP, "task": names,
             "aggregate_metric_list": [{"metric": "acc", "aggregation": "mean", "weight_by_size": True}],
             "metadata": {"version": 1.0}}
    (task_dir / f"_{LOCAL_GROUP}.yaml").write_text(yaml.safe_dump(group, sort_keys=True), encoding="utf-8")
    return names


# --------------------------------------------------------------------------------------------
# The model and the simple_evaluate calls


def model_arguments(pretrained: str, adapter_dir: str | os.PathLike | None, settings: dict) -> dict:
    """Arguments of lm-eval's HF model ("hf"): fp32 on CPU, bf16 on a GPU; the adapter as `peft`."""
    import torch

    args = {"pretrained": str(pretrained), "dtype": "float32", "device": "cpu",
            "batch_size": int(settings.get("batch_size", 8))}
    if torch.cuda.is_available():
        args.update(dtype="bfloat16", device="cuda")
    if adapter_dir is not None:
        args["peft"] = str(adapter_dir)
    return args


def evaluate_calls(settings: dict, task_names: Sequence[str], seed: int) -> list[dict]:
    """Keyword arguments of the simple_evaluate call: every task with `num_fewshot` shots (the
    authors' `--num_fewshot 5` for mmlu and leaderboard alike)."""
    return [{"tasks": list(task_names), "num_fewshot": int(settings.get("num_fewshot", 5)),
             "limit": settings.get("limit"), "log_samples": False,
             "bootstrap_iters": 1000, "random_seed": seed, "numpy_random_seed": seed,
             "torch_random_seed": seed, "fewshot_random_seed": seed}]


@contextlib.contextmanager
def prepared(settings: dict, questions_path: str | os.PathLike | None, model_dir: str | os.PathLike,
             adapter_dir: str | os.PathLike | None, seed: int, scratch: str | os.PathLike | None = None) -> Iterator[dict]:
    """Everything lm-eval needs, built in a scratch directory that lives as long as the block:
    {"task_manager": TaskManager, "model": "hf", "model_args": {...}, "calls": [...], "config": {...}}.
    Cheap: no weights are loaded."""
    from lm_eval.tasks import TaskManager

    requested = list(settings.get("tasks") or [])
    if not requested:
        raise InputError(f"config key {KEY}.tasks: no task given")
    if len(set(requested)) != len(requested):
        raise InputError(f"config key {KEY}.tasks: a task is listed twice")
    num_fewshot = int(settings.get("num_fewshot", 5))
    if num_fewshot < 0:
        raise InputError(f"config key {KEY}.num_fewshot: must be >= 0, got {num_fewshot}")
    if adapter_dir is not None and not (Path(adapter_dir) / "adapter_config.json").exists():
        raise InputError(f"{adapter_dir}: not a PEFT adapter folder (no adapter_config.json)")
    with contextlib.ExitStack() as stack:
        if scratch is None:
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="lm_eval_"))
        scratch = Path(scratch)
        subjects: list[str] = []
        include_path = None
        if LOCAL_GROUP in requested:
            if questions_path is None:
                raise InputError(f"config key {KEY}.tasks: {LOCAL_GROUP} needs the MMLU questions CSV")
            questions = read_questions(questions_path)
            subjects = choose_subjects(questions, settings.get("subjects"), num_fewshot, questions_path)
            include_path = scratch / "tasks"
            include_path.mkdir(parents=True, exist_ok=True)
            write_local_tasks(questions, subjects, include_path)
        stock = [task for task in requested if task != LOCAL_GROUP]
        # Scanning lm-eval's ~10k stock task files takes seconds: only when a stock task is asked for.
        manager = TaskManager(include_path=str(include_path) if include_path else None,
                              include_defaults=bool(stock))
        unknown = [task for task in requested if task not in manager.all_tasks]
        if unknown:
            raise InputError(f"config key {KEY}.tasks: unknown lm-eval task(s) {', '.join(map(repr, unknown))} "
                             f"(use {LOCAL_GROUP!r} for the shipped MMLU CSVs, or a stock task such as 'mmlu')")
        yield {
            "task_manager": manager,
            "model": "hf",
            "model_args": model_arguments(str(model_dir), adapter_dir, settings),
            "calls": evaluate_calls(settings, requested, seed),
            "requested": requested,
            # what the result file records (no scratch paths: same inputs, same bytes)
            "config": {"tasks": requested, "num_fewshot": num_fewshot, "limit": settings.get("limit"),
                       "subjects": subjects or None, "batch_size": int(settings.get("batch_size", 8)),
                       "model": str(model_dir), "peft": str(adapter_dir) if adapter_dir else None,
                       "seed": seed,
                       "lm_eval_version": _lm_eval_version()},
        }


def run(settings: dict, questions_path: str | os.PathLike | None, model_dir: str | os.PathLike,
        adapter_dir: str | os.PathLike | None, seed: int) -> dict:
    """Evaluate; return the content of results/empo/eval/MODEL/lm_eval.json (see `summarise`)."""
    import lm_eval
    from lm_eval.api.registry import get_model

    with prepared(settings, questions_path, model_dir, adapter_dir, seed) as plan:
        logger.info("lm-eval model %s %s", plan["model"], plan["model_args"])
        lm = get_model(plan["model"]).create_from_arg_obj(plan["model_args"])
        merged: dict = {"results": {}, "n-samples": {}, "n-shot": {}, "group_subtasks": {}}
        for call in plan["calls"]:
            logger.info("lm-eval tasks %s, %s-shot, limit %s", call["tasks"], call["num_fewshot"], call["limit"])
            output = lm_eval.simple_evaluate(model=lm, task_manager=plan["task_manager"], **call)
            if output is None:
                raise RuntimeError("lm_eval.simple_evaluate returned nothing")
            for key in merged:
                merged[key].update(output.get(key) or {})
        return summarise(merged, plan["requested"], plan["config"])


# --------------------------------------------------------------------------------------------
# Results


def _number(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return None if math.isnan(value) else float(value)
    return None


def task_metrics(entry: dict) -> dict:
    """lm-eval's {"acc,none": .., "acc_stderr,none": .., "alias": ..} as {"acc": .., "acc_stderr": ..}
    (the default filter only; "N/A" stderr becomes null)."""
    metrics = {}
    for key, value in entry.items():
        if "," not in key:
            continue
        name, filter_name = key.split(",", 1)
        if filter_name == "none":
            metrics[name] = _number(value)
    return metrics


def summarise(output: dict, requested: Sequence[str], config: dict) -> dict:
    """{"scores": {TASK: primary metric} for every requested task,
        "results": {TASK or SUBTASK: {"metric", "score", "stderr", "n", "num_fewshot", <all metrics>}},
        "config": {...}}."""
    results = {}
    for task, entry in sorted(output["results"].items()):
        metrics = task_metrics(entry)
        if task != leaderboard.GROUP and leaderboard.own_metric(task):
            primary, score = leaderboard.task_score(task, metrics)
        else:
            primary = next((name for name in PRIMARY_METRICS if metrics.get(name) is not None), None)
            score = metrics.get(primary) if primary else None
        samples = output.get("n-samples", {}).get(task)
        n = samples.get("effective") if samples else None
        if n is None:  # a group: the sum over its leaf tasks
            n = _group_size(task, output)
        results[task] = dict(metrics, metric=primary, score=score,
                             stderr=metrics.get(f"{primary}_stderr") if primary else None, n=n,
                             num_fewshot=output.get("n-shot", {}).get(task))
    # The leaderboard group's own number is no metric lm-eval reports: its normalised average.
    normalised = leaderboard.normalised_average({task: entry["score"] for task, entry in results.items()})
    if leaderboard.GROUP in results and normalised is not None:
        results[leaderboard.GROUP].update(metric="open_llm_leaderboard_v2_normalised_average",
                                          score=normalised["average"], stderr=None,
                                          normalised=normalised)
    missing = [task for task in requested if task not in results or results[task]["score"] is None]
    if missing:
        raise RuntimeError(f"lm-eval gave no score for {', '.join(missing)}")
    return {"scores": {task: results[task]["score"] for task in requested}, "results": results, "config": config}


def _group_size(group: str, output: dict) -> int | None:
    members = output.get("group_subtasks", {}).get(group)
    if not members:
        return None
    sizes = [(output["n-samples"].get(task) or {}).get("effective") or _group_size(task, output)
             for task in members]
    return int(sum(size for size in sizes if size)) or None


def _lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")
