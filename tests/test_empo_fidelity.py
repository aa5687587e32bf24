"""EmPO as the authors ran it (docs/fidelity.md, `## EmPO`): the paper config's resolved values,
preference runs as defaults + differences + grids, the system message of each stage, the
prompt+reply length filter, lm-eval's few-shot setting, and DPO that keeps training the SFT
adapter against the SFT model (trl's reference adapter), saved so that stock
AutoPeftModelForCausalLM.from_pretrained gives base + SFT + the run."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO, merge_config, snakemake
from empathy_workflow.core import grids, hf
from empathy_workflow.empo import dialogues, emotions, preference_pairs, training
from empathy_workflow.core.config import ConfigError, validate_config
from empo_fixtures import ed_splits

SCHEMA = REPO / "schemas" / "config.schema.yaml"
LAPTOP = yaml.safe_load((REPO / "config.yaml").read_text())
PAPER = merge_config(copy.deepcopy(LAPTOP), yaml.safe_load((REPO / "configs" / "empo_zephyr.yaml").read_text()))
SEVEN = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# src/dpo_ps.py @ 60fcd07 and the generation prompts of data/he_data.csv @ 196437e (justtherightsize/empo)
DPO_SYSTEM = ("You are a friendly assistant, who provides empathetic responses to the user. The responses can be "
              "long and elaborate.The input contains previous turn of the dialog, where the each utterance is "
              "prefaced with tags <|user|>, or <|assistant|>. Be empathetic and precise. Make sure to give responses "
              "that make dialogue flow. Avoid repeating the prompt. Give longer responses if they are more empathetic.")
GENERATION_SYSTEM = ("You are a friendly assistant, who provides empathetic responses to the user. The input contains "
                     "previous turn of the dialog, where each utterance is prefaced with tags <|user|>, or "
                     "<|assistant|>. Be empathetic and precise. Make sure to give responses that make dialogue flow. "
                     "Avoid repeating the prompt.")


# ------------------------------------------------------------------------------------------ configs


def test_paper_config_has_the_authors_sft_and_dpo_settings():
    sft = PAPER["empo"]["sft"]
    assert sft["lora"] == {"r": 1024, "alpha": 64, "dropout": 0.1, "target_modules": SEVEN}
    assert (sft["learning_rate"], sft["warmup_ratio"], sft["max_grad_norm"], sft["optim"]) == \
        (1e-5, 0.0, 0.3, "paged_adamw_32bit")
    assert sft["batch_size"] * sft["gradient_accumulation_steps"] == 64 and sft["max_length"] == 256
    dpo = grids.resolve_runs(PAPER["empo"]["preference"])["dpo"]
    assert (dpo["beta"], dpo["learning_rate"], dpo["max_grad_norm"], dpo["optim"], dpo["warmup_ratio"]) == \
        (0.052, 1e-6, 0.3, "adamw_torch_fused", 0.1)
    assert "lora" not in dpo  # the SFT adapter is trained further
    generation = PAPER["empo"]["generation"]
    assert generation["max_new_tokens"] == 1000 and generation["do_sample"] is False
    short = generation["variants"]["base_short"]
    assert short["model"] == "base" and short["max_new_tokens"] == 30
    assert short["system_prompt"].endswith("Avoid repeating the prompt and giving unsolicited advice. "
                                           "Make the responses short.")
    assert PAPER["empo"]["pairs"]["length_percentile"] == 95
    assert PAPER["empo"]["pairs"]["length_measure"] == "prompt_reply"


@pytest.mark.parametrize("config", [LAPTOP, PAPER], ids=["laptop", "paper"])
def test_both_configs_use_the_authors_system_messages_and_procedure(config):
    """The laptop differs in sizes, steps and caps only: same prompts, filter, loss parameters."""
    assert config["empo"]["system_prompts"] == {"sft": None, "preference": DPO_SYSTEM,
                                                "generation": GENERATION_SYSTEM}
    assert config["empo"]["pairs"]["length_measure"] == "prompt_reply"
    dpo = grids.resolve_runs(config["empo"]["preference"])["dpo"]
    assert (dpo["loss_type"], dpo["beta"], dpo["max_grad_norm"], dpo["lr_scheduler_type"]) == \
        ("sigmoid", 0.052, 0.3, "cosine")
    assert config["empo"]["sft"]["lora"]["target_modules"] == SEVEN
    assert config["empo"]["sft"]["max_grad_norm"] == 0.3 and config["empo"]["sft"]["warmup_ratio"] == 0.0
    assert config["empo"]["evaluation"]["lm_eval"]["num_fewshot"] == 5


# ------------------------------------------------------------------------------------------ runs and grids


def test_runs_state_only_what_differs_and_grids_expand_to_named_runs():
    preference_config = {"defaults": {"loss_type": "sigmoid", "beta": 0.1, "learning_rate": 1e-6},
                         "runs": {"dpo": {}, "fast": {"learning_rate": 5e-5},
                                  "d27": {"beta": {"grid": [0.052, 0.051]}, "loss_type": {"grid": ["sigmoid", "ipo"]}},
                                  "multi": {"loss_type": ["sigmoid", "bco_pair"]}}}
    runs = grids.resolve_runs(preference_config)
    assert list(runs) == ["dpo", "fast", "d27_beta0.052_loss_typesigmoid", "d27_beta0.052_loss_typeipo",
                          "d27_beta0.051_loss_typesigmoid", "d27_beta0.051_loss_typeipo", "multi"]
    assert runs["dpo"] == preference_config["defaults"]
    assert runs["fast"] == {"loss_type": "sigmoid", "beta": 0.1, "learning_rate": 5e-5}
    assert runs["d27_beta0.051_loss_typeipo"] == {"loss_type": "ipo", "beta": 0.051, "learning_rate": 1e-6}
    assert runs["multi"]["loss_type"] == ["sigmoid", "bco_pair"]  # a list value is not a grid


def _validate(extra: dict) -> None:
    validate_config(merge_config(copy.deepcopy(LAPTOP), extra), SCHEMA, REPO)


def test_config_errors_name_the_resolved_run_and_key():
    with pytest.raises(ConfigError, match=r"empo\.preference\.runs\.sweep_beta-1\.beta: -1 is less than or equal"):
        _validate({"empo": {"preference": {"runs": {"sweep": {"beta": {"grid": [0.1, -1]}}}}}})
    with pytest.raises(ConfigError, match=r"empo\.preference\.runs\.old\.lora: a preference run continues"):
        _validate({"empo": {"preference": {"runs": {"old": {"lora": {"r": 8, "alpha": 16, "dropout": 0.0,
                                                                      "target_modules": ["q_proj"]}}}}}})
    with pytest.raises(ConfigError, match=r"runs\.dpo\.quantization: '4bit' differs from empo\.sft\.quantization"):
        _validate({"empo": {"preference": {"runs": {"dpo": {"quantization": "4bit"}}}}})
    with pytest.raises(ConfigError, match=r"empo\.generation\.variants\.short\.model: 'dpo2' is not"):
        _validate({"empo": {"generation": {"variants": {"short": {"model": "dpo2"}}}}})


def test_a_grid_plans_one_preference_job_per_point(tmp_path):
    extra = tmp_path / "grid.yaml"
    extra.write_text(yaml.safe_dump({"empo": {"preference": {"runs": {"d27": {"beta": {"grid": [0.052, 0.051]}}}}}}))
    result = snakemake(tmp_path, "-n", "results/empo/models/d27_beta0.051",
                       "results/empo/generations/d27_beta0.052.jsonl", "--quiet", "rules",
                       configfiles=[REPO / "config.yaml", extra])
    assert "empo_preference                     2" in result.stdout, result.stdout


# ------------------------------------------------------------------------------------------ prompts and pairs


def test_each_stage_builds_its_prompts_with_its_system_message(tmp_path):
    records = ed_splits()["valid"]
    mapping = emotions.read_mapping(emotions.named_mapping_path("plutchik"))
    pairs, _ = preference_pairs.build_pairs(records, mapping, rejected_per_prompt=3, seed=0, system_prompt=DPO_SYSTEM,
                                      split="valid")
    assert all(pair["prompt"][0] == {"role": "system", "content": DPO_SYSTEM} for pair in pairs)
    assert all(message["role"] != "system" for message in dialogues.conversation_messages(records[0], None))
    # generation: the rule's params (rules/common.smk) give base the generation message and the
    # length-controlled variant its own
    from empathy_workflow.empo.generation import load_test_prompts

    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    prompts = load_test_prompts(path, GENERATION_SYSTEM, dialogues.conversation_subset(records, 3, 0, "pairs:test"))
    assert len(prompts) == 3
    assert all(example["prompt"][0]["content"] == GENERATION_SYSTEM for example in prompts)


def test_length_filter_over_prompt_and_reply(prepared_models):
    tokenizer = hf.load_tokenizer(prepared_models / "policy")
    records = ed_splits()["valid"]
    mapping = emotions.read_mapping(emotions.named_mapping_path("plutchik"))
    lengths = preference_pairs.chat_lengths(tokenizer)
    unfiltered, _ = preference_pairs.build_pairs(records, mapping, rejected_per_prompt=3, seed=0, system_prompt=DPO_SYSTEM,
                                           split="valid")
    pairs, stats = preference_pairs.build_pairs(records, mapping, rejected_per_prompt=3, seed=0, system_prompt=DPO_SYSTEM,
                                          length_percentile=95, length_measure="prompt_reply",
                                          conversation_length=lengths, split="valid")
    import numpy as np

    chosen = lengths([p["prompt"] + p["chosen"] for p in unfiltered])
    rejected = lengths([p["prompt"] + p["rejected"] for p in unfiltered])
    threshold = max(np.percentile(chosen, 95), np.percentile(rejected, 95))
    assert stats["length_filter"]["threshold"] == pytest.approx(threshold)
    # the system message counts: the threshold is longer than without it
    assert threshold > max(np.percentile(lengths([p["prompt"][1:] + p["chosen"] for p in unfiltered]), 95),
                           np.percentile(lengths([p["prompt"][1:] + p["rejected"] for p in unfiltered]), 95))
    kept = [pair for pair, length in zip(unfiltered, chosen) if length <= threshold]
    assert pairs == kept and 0 < len(unfiltered) - len(pairs) == stats["length_filter"]["pairs_dropped"]
    assert len(pairs) == 3 * stats["prompts"]


def test_valid_and_test_pairs_use_the_train_threshold(prepared_models):
    """src/dpo_ps.py computes the threshold on the train split and filters the evaluation split
    with it; the stats keep this split's own percentile beside it, and the authors' DPO lengths."""
    import numpy as np

    tokenizer = hf.load_tokenizer(prepared_models / "policy")
    lengths = preference_pairs.chat_lengths(tokenizer)
    mapping = emotions.read_mapping(emotions.named_mapping_path("plutchik"))
    common = dict(rejected_per_prompt=3, seed=0, system_prompt=DPO_SYSTEM, length_percentile=95,
                  length_measure="prompt_reply", conversation_length=lengths)
    _, train_stats = preference_pairs.build_pairs(ed_splits()["train"], mapping, split="train", **common)
    given = train_stats["length_filter"]["threshold"]
    assert train_stats["length_filter"]["threshold_from"] == "train"
    records = ed_splits()["valid"]
    unfiltered, _ = preference_pairs.build_pairs(records, mapping, rejected_per_prompt=3, seed=0,
                                           system_prompt=DPO_SYSTEM, split="valid")
    own, own_stats = preference_pairs.build_pairs(records, mapping, split="valid", **common)
    pairs, stats = preference_pairs.build_pairs(records, mapping, split="valid", given_threshold=given,
                                          threshold_from="train", **common)
    chosen = lengths([p["prompt"] + p["chosen"] for p in unfiltered])
    own_threshold = max(np.percentile(chosen, 95), np.percentile(lengths([p["prompt"] + p["rejected"]
                                                                          for p in unfiltered]), 95))
    assert own_stats["length_filter"]["threshold"] == pytest.approx(own_threshold)
    assert own_threshold != pytest.approx(given)  # the two thresholds differ on this data
    lf = stats["length_filter"]
    assert (lf["threshold"], lf["threshold_from"]) == (given, "train")
    assert lf["split_threshold"] == pytest.approx(own_threshold)
    assert pairs == [pair for pair, length in zip(unfiltered, chosen) if length <= given] != own
    # the authors' DPO lengths: int of the percentile, up to the next even number
    assert lf["dpo_max_length"] == ((int(given) + 1) // 2) * 2
    prompt_p95 = np.percentile(lengths([p["prompt"] for p in unfiltered]), 95)
    assert lf["max_prompt_length"] == ((int(prompt_p95) + 1) // 2) * 2
    assert preference_pairs.even_length(245.1) == 246 and preference_pairs.even_length(246.9) == 246


def test_valid_and_test_pairs_depend_on_the_train_split(tmp_path):
    result = snakemake(tmp_path, "-n", "results/empo/pairs/test_stats.json", "--quiet", "rules",
                       configfiles=[REPO / "config.yaml"])
    assert re.search(r"empo_pairs\s+2\b", result.stdout), result.stdout  # test and train


def test_dpo_max_length_from_the_length_filter():
    assert PAPER["empo"]["preference"]["defaults"]["max_length"] == "length_filter"
    _validate({"empo": {"preference": {"defaults": {"max_length": "length_filter"}}}})  # laptop filter: on
    with pytest.raises(ConfigError, match=r"runs\.dpo\.max_length: length_filter takes the DPO length"):
        _validate({"empo": {"pairs": {"length_measure": "reply"},
                            "preference": {"defaults": {"max_length": "length_filter"}}}})
    with pytest.raises(ConfigError, match=r"runs\.dpo\.max_length"):
        _validate({"empo": {"preference": {"runs": {"dpo": {"max_length": "p95"}}}}})


def test_lm_eval_uses_the_few_shot_setting_for_every_task():
    from empathy_workflow.empo.lm_eval_tasks import runner

    calls = runner.evaluate_calls({"tasks": ["mmlu", "leaderboard"], "num_fewshot": 5}, ["mmlu", "leaderboard"], 1)
    assert [(call["tasks"], call["num_fewshot"]) for call in calls] == [(["mmlu", "leaderboard"], 5)]


# ------------------------------------------------------------------------------------------ DPO on the SFT adapter

SFT_SETTINGS = {"max_length": 96, "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
                "learning_rate": 5e-3, "epochs": 1, "max_steps": 2, "batch_size": 2, "save_steps": 100,
                "max_eval_examples": 0, "max_grad_norm": 0.3, "optim": "adamw_torch"}
DPO_SETTINGS = {"loss_type": "sigmoid", "beta": 0.1, "learning_rate": 5e-3, "epochs": 1, "max_steps": 2,
                "batch_size": 2, "max_length": 200, "save_steps": 100, "max_eval_examples": 0,
                "max_grad_norm": 0.3, "optim": "adamw_torch_fused"}


@pytest.fixture(scope="module")
def continued(prepared_models, tmp_path_factory):
    """A tiny SFT, then DPO in process: the trainer (training-time policy) and the saved folders."""
    import torch
    from datasets import Dataset  # noqa: F401  (trl needs it; fail here, not inside the trainer)

    torch.manual_seed(0)
    work = tmp_path_factory.mktemp("continued")
    policy = str(prepared_models / "policy")
    records = ed_splits()["train"][:8]
    training.train_sft(model_dir=policy, train_records=records, valid_records=[], settings=SFT_SETTINGS,
                       system_prompt=None, seed=0, adapter_dir=str(work / "sft"), curves_csv=str(work / "sft.csv"),
                       checkpoints=str(work / "ck_sft"))
    mapping = emotions.read_mapping(emotions.named_mapping_path("plutchik"))
    pairs, _ = preference_pairs.build_pairs(ed_splits()["train"], mapping, rejected_per_prompt=3, seed=0,
                                      system_prompt=DPO_SYSTEM, split="train",
                                            prompt_ids=dialogues.conversation_subset(
                                                ed_splits()["train"], 2, 0, "pairs:train")["conv_ids"])
    tokenizer = hf.load_tokenizer(policy)
    model = training.load_sft_for_preference(policy, work / "sft", DPO_SETTINGS)
    model.config.pad_token_id = tokenizer.pad_token_id
    trainer = training.preference_trainer(model, tokenizer, DPO_SETTINGS,
                                          training.preference_examples(pairs, tokenizer, 200), None,
                                          str(work / "ck_dpo"), 0)
    trainer.train()
    training.save_adapter(trainer.model, work / "dpo", {"stage": "preference"})
    text = training.render(tokenizer, pairs[0]["prompt"], add_generation_prompt=True)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    return {"work": work, "trainer": trainer, "inputs": inputs, "policy": policy}


def _logits(model, inputs):
    import torch

    model.eval()
    with torch.no_grad():
        return model(**inputs).logits[0, -8:].float()


def test_autopeft_loads_base_plus_sft_plus_run(continued):
    import torch
    from peft import AutoPeftModelForCausalLM

    work, inputs = continued["work"], continued["inputs"]
    config = json.loads((work / "dpo" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == continued["policy"]
    assert not (work / "dpo" / "ref").exists()  # trl's frozen copy is not saved
    trained = _logits(continued["trainer"].model, inputs)
    stock = _logits(AutoPeftModelForCausalLM.from_pretrained(str(work / "dpo")), inputs)
    assert torch.allclose(stock, trained, atol=1e-4)
    sft = _logits(AutoPeftModelForCausalLM.from_pretrained(str(work / "sft")), inputs)
    assert not torch.allclose(stock, sft, atol=1e-3)  # DPO moved the SFT adapter
    # the workflow's loader (generation, merged for speed) gives the same model
    model, _ = training.load_policy(continued["policy"], work / "dpo")
    assert torch.allclose(_logits(model, inputs), trained, atol=1e-4)


def test_dpo_reference_is_the_sft_model(continued):
    import torch
    from peft import AutoPeftModelForCausalLM
    from trl.trainer.dpo_trainer import use_adapter

    model = continued["trainer"].model
    assert set(model.peft_config) == {"default", "ref"}
    with use_adapter(model, adapter_name="ref"):
        reference = _logits(model, continued["inputs"])
    sft = _logits(AutoPeftModelForCausalLM.from_pretrained(str(continued["work"] / "sft")), continued["inputs"])
    assert torch.allclose(reference, sft, atol=1e-5)
    assert not any(p.requires_grad for name, p in model.named_parameters() if ".ref." in name)
