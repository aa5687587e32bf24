"""EmPO training: chat formatting with assistant masks, then the real rules on SmolLM2-135M in a
scratch directory: SFT and DPO are stopped part-way and resume from their checkpoints,
and both adapters load with PeftModel.from_pretrained and change the model's outputs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import TINY_CONFIG, snakemake
from empathy_workflow.core import hf, trainer_setup
from empathy_workflow.empo import dialogues, emotions, preference_pairs, training
from empo_fixtures import ed_conversations


@pytest.fixture(scope="module")
def policy(prepared_models) -> Path:
    return prepared_models / "policy"


@pytest.fixture(scope="module")
def tokenizer(policy):
    return hf.load_tokenizer(policy)


def test_pad_is_an_existing_token(policy, tokenizer):
    config = json.loads((policy / "config.json").read_text())
    assert tokenizer.pad_token is not None
    assert tokenizer.convert_tokens_to_ids(tokenizer.pad_token) < config["vocab_size"]
    assert len(tokenizer) <= config["vocab_size"]  # nothing added, nothing to resize


def test_assistant_mask_covers_exactly_the_listener_turns(tokenizer):
    record = next(r for r in ed_conversations() if len(r["turns"]) == 5)  # ends with a speaker turn
    messages = dialogues.conversation_messages(record, "Listen with care.")
    input_ids, mask = training.tokenize_with_assistant_mask(tokenizer, messages)
    assert len(input_ids) == len(mask)
    assert input_ids == tokenizer(training.render(tokenizer, messages), add_special_tokens=False)["input_ids"]
    masked = tokenizer.decode([t for t, m in zip(input_ids, mask) if m])
    listener = [t["text"] for t in record["turns"][:4] if t["role"] == "listener"]
    speaker = [t["text"] for t in record["turns"] if t["role"] == "speaker"]
    end = tokenizer.eos_token  # SmolLM2: <|im_end|> ends every turn
    assert masked == "".join(f"{text}{end}\n" for text in listener)
    assert not any(text in masked for text in speaker) and "Listen with care." not in masked
    assert record["turns"][4]["text"] not in tokenizer.decode(input_ids)  # trailing speaker turn dropped


def test_fit_messages_drops_the_earliest_exchanges(tokenizer):
    messages = [{"role": "system", "content": "S"}]
    for i in range(6):
        messages += [{"role": "user", "content": f"question {i} " * 20},
                     {"role": "assistant", "content": f"answer {i} " * 20}]
    full = training.n_tokens(tokenizer, training.render(tokenizer, messages))
    fitted = training.fit_messages(tokenizer, messages, max_length=full // 2)
    assert fitted[0] == messages[0] and fitted[-2:] == messages[-2:]
    assert fitted[1]["role"] == "user" and len(fitted) < len(messages)
    assert training.n_tokens(tokenizer, training.render(tokenizer, fitted)) <= full // 2
    prompt = messages[:-1]
    reserve = 100
    fitted = training.fit_messages(tokenizer, prompt, max_length=full // 2, reserve=reserve)
    assert fitted[-1] == prompt[-1]
    assert training.n_tokens(tokenizer, training.render(tokenizer, fitted)) + reserve <= full // 2


def test_four_bit_needs_cuda():
    if hf.cuda_available():
        pytest.skip("a GPU is present")
    with pytest.raises(training.InputError, match=r"empo.sft.quantization: 4bit .* needs a CUDA GPU"):
        hf.quantization_config({"quantization": "4bit"})


# ---------------------------------------------------------------------------- the rules

# Small enough for CI, large enough that SFT has checkpoints to resume from.
TRAINING_CONFIG = """
empo:
  pairs:
    max_conversations: {train: 24, valid: 6, test: 6}
  sft:
    max_length: 160
    max_steps: 4
    batch_size: 2
    save_steps: 1
    max_eval_examples: 2
  preference:
    runs:
      dpo:
        max_steps: 2
        batch_size: 2
        max_length: 160
        save_steps: 1
        max_eval_examples: 2
      ipo:
        loss_type: ipo
        beta: 0.1
        learning_rate: 5.0e-5
        max_steps: 1
        batch_size: 2
        max_length: 160
        max_eval_examples: 0
"""


STOP_AT = {"sft": 2, "dpo": 1}  # $EMPATHY_STOP_AFTER_STEP of the stopped runs (checkpoints every step)
LOG = {"sft": "sft.log", "dpo": "preference_dpo.log"}  # rules/empo_training.smk


def stop_after(step: int) -> dict:
    return {trainer_setup.STOP_AFTER_STEP: str(step)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, prepared_models):
    """Pairs; SFT stopped right after its step-2 checkpoint (as a scheduler's time limit would stop
    it, but at a known step: no race with a fast machine), then resumed; DPO stopped after step 1
    and resumed; an IPO run."""
    workdir = tmp_path_factory.mktemp("empo")
    shutil.copytree(prepared_models, workdir / "results" / "models")
    extra = workdir / "training.yaml"
    extra.write_text(TRAINING_CONFIG)
    configs = [TINY_CONFIG, extra]
    logs = workdir / "results" / "logs" / "empo"
    result = {"dir": workdir, "stopped_at": {}, "log": {}}
    for run, targets in (("sft", ["results/empo/models/sft"]), ("dpo", ["results/empo/models/dpo"])):
        checkpoints = workdir / "results" / "checkpoints" / "empo" / run
        stopped = snakemake(workdir, "--cores", "2", *targets, configfiles=configs, check=False,
                            extra_env=stop_after(STOP_AT[run]))
        assert stopped.returncode != 0 and "StoppedAtStepBudget" in stopped.stderr + stopped.stdout
        result["stopped_at"][run] = sorted(int(p.parent.name.split("-")[1])
                                           for p in checkpoints.glob("checkpoint-*/trainer_state.json"))
        result[f"{run}_adapter_after_stop"] = (workdir / "results/empo/models" / run / "adapter_config.json").exists()
        snakemake(workdir, "--cores", "2", *targets, configfiles=configs)
        result["log"][run] = (logs / LOG[run]).read_text()
    # the runs' figures are drawn by their own rule from the curves
    snakemake(workdir, "--cores", "2", "results/empo/models/ipo", "results/empo/curves/dpo.png",
              "results/empo/curves/ipo.png", configfiles=configs)
    return result


@pytest.mark.parametrize("run, max_steps", [("sft", 4), ("dpo", 2)])
def test_training_resumes_with_the_remaining_steps_only(trained, run, max_steps):
    """The resumed Trainer starts at the checkpoint's step with its optimizer moments and scheduler
    position loaded, and runs only the steps after it. (A restart from step 0 logs the same losses,
    so the curves alone cannot tell.)"""
    last = STOP_AT[run]
    assert trained["stopped_at"][run][-1] == last and not trained[f"{run}_adapter_after_stop"]
    log = trained["log"][run]
    assert f"resuming from checkpoint {Path('results/checkpoints/empo') / run / f'checkpoint-{last}'}" in log
    begin = re.search(r"trainer starts at step (\d+) of (\d+) \(optimizer moments for (\d+) parameter tensors, "
                      r"learning-rate scheduler at step (\d+)\)", log)
    assert begin, log[-3000:]
    start, total, moments, scheduler_step = map(int, begin.groups())
    assert (start, total, scheduler_step) == (last, max_steps, last)
    assert moments > 0  # a fresh optimizer has none before its first step
    assert f"trainer ran steps {last + 1} to {max_steps}" in log
    info = json.loads((trained["dir"] / f"results/empo/models/{run}/empo_adapter.json").read_text())
    assert info["global_step"] == max_steps
    curves = pd.read_csv(trained["dir"] / f"results/empo/curves/{run}.csv")
    # the curve covers the steps before the stop (restored from the checkpoint) and after it
    assert list(curves.dropna(subset=["loss"])["step"]) == list(range(1, max_steps + 1))
    assert not (trained["dir"] / "results/checkpoints/empo" / run).exists()  # removed once finished


def test_pair_files_follow_the_interface(trained):
    mapping = dict(pd.read_csv(trained["dir"] / "results/empo/emotion_mapping.csv")[["emotion", "opposite"]].values)
    for split in ("train", "valid"):
        pairs = [json.loads(line) for line in
                 (trained["dir"] / f"results/empo/pairs/{split}.jsonl").read_text().splitlines()]
        stats = json.loads((trained["dir"] / f"results/empo/pairs/{split}_stats.json").read_text())
        assert len(pairs) == 3 * stats["prompts"] and stats["lengths"]["unit"] == "tokens"
        assert all(pair["rejected_emotion"] == mapping[pair["emotion"]] for pair in pairs)


def test_dpo_curves_have_rewards(trained):
    for run in ("dpo", "ipo"):
        curves = pd.read_csv(trained["dir"] / f"results/empo/curves/{run}.csv")
        assert {"loss", "rewards/margins", "rewards/accuracies"} <= set(curves.columns)
        assert (trained["dir"] / f"results/empo/curves/{run}.png").stat().st_size > 1000
    info = json.loads((trained["dir"] / "results/empo/models/ipo/empo_adapter.json").read_text())
    assert info["settings"]["loss_type"] == "ipo" and info["continues"].endswith("sft")


def test_adapters_are_lora_only_and_change_the_outputs(trained, policy, tokenizer, monkeypatch):
    import torch
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    models = trained["dir"] / "results" / "empo" / "models"
    for name in ("sft", "dpo"):
        with safe_open(str(models / name / "adapter_model.safetensors"), "pt") as weights:
            keys = list(weights.keys())
        assert keys and all("lora_" in key for key in keys), keys[:5]
        assert (models / name / "adapter_model.safetensors").stat().st_size < 20e6

    record = ed_conversations()[0]
    text = training.render(tokenizer, dialogues.prompt_messages(record), add_generation_prompt=True)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)

    def logits(model):
        with torch.no_grad():
            return model(**inputs).logits[0, -1]

    base = AutoModelForCausalLM.from_pretrained(policy)
    base_logits = logits(base)
    for name in ("sft", "dpo"):
        fresh = AutoModelForCausalLM.from_pretrained(policy)
        peft_logits = logits(PeftModel.from_pretrained(fresh, str(models / name)))
        assert not torch.allclose(peft_logits, base_logits, atol=1e-4), name

    # load_policy: base, sft, and the dpo run (the continued SFT adapter, complete over the base)
    outputs = {}
    for name, adapter in (("base", None), ("sft", models / "sft"), ("dpo", models / "dpo")):
        model, _ = training.load_policy(policy, adapter)
        outputs[name] = logits(model)
    assert torch.allclose(outputs["base"], base_logits, atol=1e-5)
    assert not torch.allclose(outputs["sft"], outputs["base"], atol=1e-4)
    assert not torch.allclose(outputs["dpo"], outputs["sft"], atol=1e-4)
    from peft import AutoPeftModelForCausalLM

    # the adapter names its base as the workflow wrote it, relative to the working directory (a
    # relocatable results/ tree): stock loading runs where the workflow ran
    monkeypatch.chdir(trained["dir"])
    assert torch.allclose(logits(AutoPeftModelForCausalLM.from_pretrained(str(models / "dpo"))), outputs["dpo"],
                          atol=1e-4)


def test_preference_loss_type_reaches_the_trainer(policy, tokenizer, tmp_path):
    """trl's DPOTrainer as preference_trainer builds it, on the same two pairs, with the policy
    equal to its reference (the frozen "ref" copy of the SFT adapter, so every log-ratio margin
    is 0): sigmoid gives -log sigmoid(0) = ln 2 for any beta, IPO (1/(2 beta))^2 = 25 at beta 0.1
    and 1 at beta 0.5. A trainer that ignored loss_type (or beta) gives other losses."""
    import math

    from peft import LoraConfig, get_peft_model

    records = ed_conversations()
    pairs, _ = preference_pairs.build_pairs(records, emotions.read_mapping(emotions.named_mapping_path("plutchik")),
                                      rejected_per_prompt=1, seed=0,
                                            prompt_ids=dialogues.conversation_subset(records, 2, 0, "pairs:")["conv_ids"])
    examples = training.preference_examples(pairs[:2], tokenizer, 160)
    losses = {}
    for loss_type, beta in (("sigmoid", 0.1), ("ipo", 0.1), ("ipo", 0.5)):
        model = get_peft_model(hf.load_base_model(policy),
                               LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                                          init_lora_weights=False, task_type="CAUSAL_LM"))
        model.config.pad_token_id = tokenizer.pad_token_id
        settings = {"loss_type": loss_type, "beta": beta, "max_length": 160, "batch_size": 2, "learning_rate": 1e-5,
                    "max_steps": 1}
        trainer = training.preference_trainer(model, tokenizer, settings, examples, examples,
                                              str(tmp_path / f"{loss_type}-{beta}"), seed=0)
        metrics = trainer.evaluate()
        assert metrics["eval_rewards/margins"] == pytest.approx(0.0, abs=1e-5)
        losses[loss_type, beta] = metrics["eval_loss"]
    assert losses["sigmoid", 0.1] == pytest.approx(math.log(2), abs=1e-5)
    assert losses["ipo", 0.1] == pytest.approx(25.0, abs=1e-3)
    assert losses["ipo", 0.5] == pytest.approx(1.0, abs=1e-4)
