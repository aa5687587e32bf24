"""lm-eval as a library (empathy_workflow.lm_eval_tasks.runner): the local MMLU task over the
shipped CSVs (prompt format, accuracy against an independent log-likelihood computation, n),
adapters through `peft=` (a preference run on base+SFT merged), the stock-task calls (dry), and
config errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from empathy_workflow.core.io import InputError
from empathy_workflow.empo.lm_eval_tasks import runner

REPO = Path(__file__).resolve().parents[1]
MMLU = REPO / "resources" / "data" / "mmlu"
SOCIOLOGY_DEV_1 = ("Which of the following did the post-war welfare state of 1948 not aim to provide:\n"
                   "A. free health care and education for all\nB. a minimum wage\nC. full employment\n"
                   "D. universal welfare\nAnswer: B")


@pytest.fixture(scope="module")
def questions(tmp_path_factory) -> Path:
    """results/data/mmlu/questions.csv as the data stage writes it, for three shipped subjects."""
    frames = []
    for subject in ("sociology", "human_sexuality", "high_school_psychology"):
        for split in ("test", "dev"):
            frame = pd.read_csv(MMLU / split / f"{subject}_{split}.csv", header=None, dtype=str,
                                keep_default_na=False, names=["question", "A", "B", "C", "D", "answer"])
            frames.append(frame.assign(subject=subject, split=split))
    path = tmp_path_factory.mktemp("mmlu") / "questions.csv"
    pd.concat(frames)[list(runner.QUESTION_COLUMNS)].to_csv(path, index=False)
    return path


def settings(**overrides) -> dict:
    return dict({"tasks": ["mmlu_local"], "num_fewshot": 1, "subjects": ["sociology"], "limit": 3,
                 "batch_size": 4}, **overrides)


def test_prompt_format_is_stock_mmlu(questions, tmp_path):
    """The built requests: the stock MMLU description, k dev examples with their answers, the
    question with lettered choices and "Answer:", then each letter as a continuation."""
    with runner.prepared(settings(num_fewshot=1), questions, "unused-model-dir", None, seed=1) as plan:
        task = plan["task_manager"].load(["mmlu_local"])["tasks"]["mmlu_local_sociology"]
        task.set_config(key="num_fewshot", value=1)
        task.set_fewshot_seed(seed=1)
        task.build_all_requests(limit=1)
        requests = [instance.args for instance in task.instances]
    test = pd.read_csv(MMLU / "test" / "sociology_test.csv", header=None, dtype=str, nrows=1).iloc[0]
    context = ("The following are multiple choice questions (with answers) about sociology.\n\n"
               f"{SOCIOLOGY_DEV_1}\n\n{test[0]}\nA. {test[1]}\nB. {test[2]}\nC. {test[3]}\nD. {test[4]}\nAnswer:")
    assert requests == [(context, " A"), (context, " B"), (context, " C"), (context, " D")]
    assert task.instances[0].doc["answer"] == "ABCD".index(test[5])


def own_accuracy(model, tokenizer, contexts_and_answers) -> tuple[float, list[bool]]:
    """Accuracy by hand: the letter with the highest log-likelihood after the context."""
    correct = [own_answer(model, tokenizer, context)[1] == gold for context, gold in contexts_and_answers]
    return sum(correct) / len(correct), correct


def contexts(questions_path, n, shots=1):
    with runner.prepared(settings(num_fewshot=shots, limit=n), questions_path, "unused", None, seed=1) as plan:
        task = plan["task_manager"].load(["mmlu_local"])["tasks"]["mmlu_local_sociology"]
        task.set_config(key="num_fewshot", value=shots)
        task.set_fewshot_seed(seed=1)
        task.build_all_requests(limit=n)
        return [(instance.args[0], instance.doc["answer"]) for instance in task.instances[::4]]


def hand_built(n: int) -> list[tuple[str, int]]:
    """The first n sociology test questions as 1-shot MMLU prompts built here from the shipped
    CSVs (lm-eval's description, the first dev question with its answer, then the question), with
    their gold letter's index: independent of the runner's task files."""
    test = pd.read_csv(MMLU / "test" / "sociology_test.csv", header=None, dtype=str, keep_default_na=False)
    built = []
    for row in test.head(n).itertuples(index=False):
        context = ("The following are multiple choice questions (with answers) about sociology.\n\n"
                   f"{SOCIOLOGY_DEV_1}\n\n{row[0]}\nA. {row[1]}\nB. {row[2]}\nC. {row[3]}\nD. {row[4]}\nAnswer:")
        built.append((context, "ABCD".index(row[5])))
    return built


QUESTIONS = 10


def test_local_task_answers_question_by_question(prepared_models, questions):
    """lm-eval on the runner's task, 10 questions: each question's log-likelihoods and chosen
    letter equal an own computation on prompts built from the CSVs, and the runner's accuracy and
    n are those answers' (an accuracy alone can agree by chance over a few questions)."""
    import lm_eval
    from lm_eval.api.registry import get_model

    from empathy_workflow.empo.training import load_policy

    policy = prepared_models / "policy"
    summary = runner.run(settings(limit=QUESTIONS), questions, policy, None, seed=3)
    assert set(summary) == {"scores", "results", "config"}
    assert list(summary["scores"]) == ["mmlu_local"]
    score = summary["scores"]["mmlu_local"]
    for task in ("mmlu_local", "mmlu_local_sociology"):
        entry = summary["results"][task]
        assert entry["n"] == QUESTIONS and entry["metric"] == "acc" and entry["num_fewshot"] == 1
        assert entry["acc"] == entry["score"] == score
        assert entry["acc_stderr"] is not None
    assert summary["config"]["subjects"] == ["sociology"] and summary["config"]["peft"] is None
    json.dumps(summary)  # plain JSON

    # the same task with lm-eval's per-question log (the runner's call, log_samples on)
    with runner.prepared(settings(limit=QUESTIONS), questions, policy, None, seed=3) as plan:
        lm = get_model(plan["model"]).create_from_arg_obj(plan["model_args"])
        [call] = plan["calls"]
        output = lm_eval.simple_evaluate(model=lm, task_manager=plan["task_manager"], **dict(call, log_samples=True))
    samples = sorted(output["samples"]["mmlu_local_sociology"], key=lambda sample: sample["doc_id"])
    model, tokenizer = load_policy(policy)
    expected = hand_built(QUESTIONS)
    assert [sample["doc_id"] for sample in samples] == list(range(QUESTIONS))
    answers = []
    for sample, (context, gold) in zip(samples, expected):
        assert [argument[0] for argument in sample["arguments"]] == [context] * 4
        assert sample["target"] == gold
        theirs = [float(response[0]) for response in sample["filtered_resps"]]
        ours, chosen = own_answer(model, tokenizer, context)
        assert theirs == pytest.approx(ours, abs=1e-3), sample["doc_id"]
        assert max(range(4), key=theirs.__getitem__) == chosen, sample["doc_id"]
        assert sample["acc"] == float(chosen == gold)
        answers.append(chosen)
    assert len(set(answers)) > 1  # not one letter for everything
    assert score == pytest.approx(np.mean([a == gold for a, (_, gold) in zip(answers, expected)]))


def own_answer(model, tokenizer, context: str) -> tuple[list[float], int]:
    """The log-likelihood of " A" .. " D" after the context, by hand, and the chosen letter."""
    import torch

    scores = []
    context_ids = tokenizer.encode(context)
    for letter in "ABCD":
        whole = tokenizer.encode(context + " " + letter)
        assert whole[:len(context_ids)] == context_ids
        with torch.inference_mode():
            logits = model(torch.tensor([whole])).logits[0].log_softmax(-1)
        scores.append(sum(float(logits[position - 1, whole[position]])
                          for position in range(len(context_ids), len(whole))))
    return scores, max(range(4), key=scores.__getitem__)


def make_adapters(policy: Path, tmp_path: Path) -> tuple[Path, Path]:
    """An SFT adapter and a preference run's adapter (the SFT adapter trained further: here its
    weights moved at random), saved the way training.py saves them."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    from empathy_workflow.core.hf import load_base_model
    from empathy_workflow.empo.training import save_adapter

    torch.manual_seed(0)
    lora = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                task_type="CAUSAL_LM")
    sft_dir, dpo_dir = tmp_path / "sft", tmp_path / "dpo"
    get_peft_model(load_base_model(policy), LoraConfig(**lora)).save_pretrained(str(sft_dir))
    continued = PeftModel.from_pretrained(load_base_model(policy), str(sft_dir), is_trainable=True)
    with torch.no_grad():
        for name, parameter in continued.named_parameters():
            if "lora_B" in name:
                parameter.add_(0.05 * torch.randn_like(parameter))
    save_adapter(continued, dpo_dir, {"stage": "test"})
    return sft_dir, dpo_dir


def test_preference_adapter_goes_through_peft(prepared_models, questions, tmp_path):
    from empathy_workflow.empo.training import load_policy

    policy = prepared_models / "policy"
    sft_dir, dpo_dir = make_adapters(policy, tmp_path)
    with runner.prepared(settings(), questions, policy, sft_dir, seed=3) as plan:
        assert plan["model"] == "hf"
        assert plan["model_args"]["pretrained"] == str(policy) and plan["model_args"]["peft"] == str(sft_dir)
    with runner.prepared(settings(), questions, policy, dpo_dir, seed=3, scratch=tmp_path / "scratch") as plan:
        # the preference adapter is complete over the base, as the authors ran lm-eval
        assert plan["model_args"]["peft"] == str(dpo_dir)
        assert plan["model_args"]["pretrained"] == str(policy)
    summary = runner.run(settings(limit=3), questions, policy, dpo_dir, seed=3)
    model, tokenizer = load_policy(policy, dpo_dir)
    expected, _ = own_accuracy(model, tokenizer, contexts(questions, 3))
    assert summary["scores"]["mmlu_local"] == pytest.approx(expected)
    assert summary["config"]["peft"] == str(dpo_dir)


def test_stock_tasks_build_the_right_calls(questions):
    """Full-scale config (dry): every task gets num_fewshot (the authors' --num_fewshot 5);
    TaskManager knows both names; no local files are needed."""
    stock = {"tasks": ["mmlu", "leaderboard"], "num_fewshot": 5, "subjects": None, "limit": None,
             "batch_size": 16}
    with runner.prepared(stock, None, "results/models/policy", None, seed=42) as plan:
        assert plan["model_args"] == {"pretrained": "results/models/policy", "dtype": "float32",
                                      "device": "cpu", "batch_size": 16}
        assert [(call["tasks"], call["num_fewshot"], call["limit"]) for call in plan["calls"]] == [
            (["mmlu", "leaderboard"], 5, None)]
        assert all(call["random_seed"] == call["fewshot_random_seed"] == 42 for call in plan["calls"])


def test_unknown_subject_names_the_config_key(questions):
    with pytest.raises(InputError, match=r"empo\.evaluation\.lm_eval\.subjects.*'astrology'"):
        with runner.prepared(settings(subjects=["sociology", "astrology"]), questions, "m", None, seed=1):
            pass


def test_unknown_task_and_too_many_shots(questions):
    with pytest.raises(InputError, match=r"empo\.evaluation\.lm_eval\.tasks.*'mmlu_nonsense'"):
        with runner.prepared(settings(tasks=["mmlu_local", "mmlu_nonsense"]), questions, "m", None, seed=1):
            pass
    with pytest.raises(InputError, match=r"empo\.evaluation\.lm_eval\.num_fewshot.*only 5 dev"):
        with runner.prepared(settings(num_fewshot=6), questions, "m", None, seed=1):
            pass


def test_bad_questions_file(tmp_path):
    path = tmp_path / "questions.csv"
    path.write_text("subject,split,question,A,B,C,D,answer\nsociology,test,q?,a,b,c,d,E\n")
    with pytest.raises(InputError, match=r"questions.csv: row 2, column 'answer'"):
        runner.read_questions(path)
