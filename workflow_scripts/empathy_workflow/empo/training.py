"""EmPO training with LoRA: SFT on ED conversations (loss on listener turns only), then
preference optimisation with trl, keeping the SFT adapter trained against the SFT model as
reference; adapters saved so that stock PEFT loads base + SFT + run."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Sequence

from empathy_workflow.core.hf import (
    load_base_model,
    load_tokenizer,
    lora_config,
    quantization_config,
    sort_target_modules,
)
from empathy_workflow.core.io import InputError, atomic_dir, read_json, write_csv
from empathy_workflow.core.trainer_setup import (
    common_arguments,
    curves_frame,
    fingerprint,
    prepare_checkpoints,
    resume_callback,
)
from empathy_workflow.empo.dialogues import conversation_messages

logger = logging.getLogger(__name__)


ADAPTER_INFO = "empo_adapter.json"



def load_policy(model_dir: str | os.PathLike, adapter_dir: str | os.PathLike | None = None, *,
                settings: dict | None = None, merge: bool = True):
    """(model, tokenizer) for base (adapter_dir None), SFT or a preference run, in eval mode.

    Every adapter folder is a complete adapter over the base (a preference run continues the SFT
    adapter), so this is what AutoPeftModelForCausalLM.from_pretrained(adapter_dir) builds, on the
    base weights `settings` ask for (quantization: 4bit as in training). With `merge` (default)
    the LoRA is merged for faster generation, except into 4-bit weights (merging there rounds)."""
    from peft import PeftModel

    tokenizer = load_tokenizer(model_dir)
    model = load_base_model(model_dir, settings, for_training=False)
    if adapter_dir is not None:
        adapter_dir = Path(adapter_dir)
        if not (adapter_dir / "adapter_config.json").exists():
            raise InputError(f"{adapter_dir}: not a PEFT adapter folder (no adapter_config.json)")
        model = PeftModel.from_pretrained(model, str(adapter_dir))
        if merge and quantization_config(settings or {}) is None:
            model = model.merge_and_unload()
    model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def tokenize_with_assistant_mask(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation and a 0/1 mask of the assistant messages' tokens
    (content and end-of-turn marker). Raises ValueError if the template is not prefix-preserving."""
    text = render(tokenizer, messages)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start_text = render(tokenizer, messages[:index], add_generation_prompt=True) if index else ""
        end_text = render(tokenizer, messages[: index + 1])
        if not (end_text.startswith(start_text) and text.startswith(end_text)):
            raise ValueError("the chat template is not prefix-preserving; cannot locate assistant turns")
        spans.append((len(start_text), len(end_text)))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(any(start <= offset[0] < end for start, end in spans)) for offset in encoded["offset_mapping"]]
    return list(encoded["input_ids"]), mask


def fit_messages(tokenizer, messages: list[dict], max_length: int, reserve: int = 0) -> list[dict]:
    """Drop the earliest user/assistant exchanges (keeping a system message and the last user turn,
    plus the final assistant turn if present) until the rendering plus `reserve` tokens fits."""
    system = [m for m in messages[:1] if m["role"] == "system"]
    body = messages[len(system):]
    while len(body) > 2 and n_tokens(tokenizer, render(tokenizer, system + body)) + reserve > max_length:
        body = body[2:]  # one user turn and the assistant turn after it
    return system + body


def sft_examples(records: Sequence[dict], tokenizer, system_prompt: str | None, max_length: int) -> list[dict]:
    """Tokenised conversations with assistant masks, ready for trl's SFTTrainer."""
    examples = []
    for record in records:
        messages = fit_messages(tokenizer, conversation_messages(record, system_prompt), max_length)
        input_ids, mask = tokenize_with_assistant_mask(tokenizer, messages)
        if sum(mask):
            examples.append({"input_ids": input_ids, "assistant_masks": mask})
    if not examples:
        raise InputError("SFT: no conversation has an assistant (listener) turn to train on")
    return examples


def preference_examples(pairs: Sequence[dict], tokenizer, max_length: int) -> list[dict]:
    """Conversational prompt/chosen/rejected rows for trl's DPOTrainer; long prompts lose their
    earliest exchanges so both replies still fit in max_length."""
    rows = []
    for pair in pairs:
        reply = max(n_tokens(tokenizer, render(tokenizer, [{"role": "user", "content": ""}, side[0]]))
                    for side in (pair["chosen"], pair["rejected"]))
        rows.append({"prompt": fit_messages(tokenizer, pair["prompt"], max_length, reserve=reply),
                     "chosen": pair["chosen"], "rejected": pair["rejected"]})
    return rows


def _finish(trainer, adapter_dir, curves_csv, checkpoints, info):
    # the curves' figure is drawn by its own rule (empo/figures.py) from this table
    write_csv(curves_csv, curves_frame(trainer.state.log_history))
    save_adapter(trainer.model, adapter_dir, info)
    shutil.rmtree(checkpoints, ignore_errors=True)  # done: a later run must not resume a finished one


def train_sft(*, model_dir: str, train_records: Sequence[dict], valid_records: Sequence[dict], settings: dict,
              system_prompt: str | None, seed: int, adapter_dir: str, curves_csv: str,
              checkpoints: str) -> dict:
    """LoRA SFT on the conversations (loss on listener turns); returns a summary dict."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tokenizer = load_tokenizer(model_dir)
    max_length = int(settings["max_length"])
    train = sft_examples(train_records, tokenizer, system_prompt, max_length)
    valid_records = _eval_subset(valid_records, settings)
    valid = sft_examples(valid_records, tokenizer, system_prompt, max_length) if valid_records else None
    logger.info("SFT: %d training and %d validation conversations, %d assistant tokens in training",
                len(train), len(valid or []), sum(sum(example["assistant_masks"]) for example in train))
    run_fingerprint = fingerprint("sft", settings, system_prompt, seed, [e["input_ids"] for e in train],
                                  _model_stamp(model_dir))
    resume = prepare_checkpoints(checkpoints, run_fingerprint)
    model = load_base_model(model_dir, settings, for_training=True)
    model.config.pad_token_id = tokenizer.pad_token_id
    args = SFTConfig(**common_arguments(settings, checkpoints, seed), max_length=max_length,
                     packing=False, assistant_only_loss=False, completion_only_loss=False,
                     eval_strategy="no", dataset_num_proc=None)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(train),
                         eval_dataset=Dataset.from_list(valid) if valid else None,
                         processing_class=tokenizer, peft_config=lora_config(settings["lora"]),
                         callbacks=[resume_callback()])
    trainer.train(resume_from_checkpoint=resume)
    summary = {"global_step": trainer.state.global_step, "resumed_from": resume,
               "train_conversations": len(train)}
    if valid:
        metrics = trainer.evaluate()
        summary["eval_loss"] = metrics.get("eval_loss")
        logger.info("SFT validation loss %.4f", summary["eval_loss"])
    info = {"stage": "sft", "base_model": str(model_dir), "settings": settings, "system_prompt": system_prompt,
            "seed": seed, "global_step": trainer.state.global_step}
    _finish(trainer, adapter_dir, curves_csv, checkpoints, info)
    return summary


def load_sft_for_preference(model_dir: str | os.PathLike, sft_adapter: str | os.PathLike, settings: dict,
                             quantization: str = "none", key: str = "empo.preference"):
    """Base (the SFT's weights: 4-bit or not) with the SFT adapter loaded trainable as "default"."""
    from peft import PeftModel

    base_settings = dict(settings, quantization=quantization)
    model = load_base_model(model_dir, base_settings, for_training=True, key=key)
    return PeftModel.from_pretrained(model, str(sft_adapter), is_trainable=True)


def preference_trainer(model, tokenizer, settings: dict, train: list[dict], valid: list[dict] | None,
                       output_dir: str, seed: int):
    """trl's DPOTrainer on a PeftModel without peft_config: it keeps training the loaded adapter
    and makes the frozen reference adapter "ref" from a copy of it."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    loss_type = settings["loss_type"]
    args = DPOConfig(**common_arguments(settings, output_dir, seed), max_length=int(settings["max_length"]),
                     loss_type=loss_type if isinstance(loss_type, list) else [loss_type],
                     beta=float(settings["beta"]), label_smoothing=float(settings.get("label_smoothing", 0.0)),
                     eval_strategy="no", dataset_num_proc=None)
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(train),
                         eval_dataset=Dataset.from_list(valid) if valid else None, processing_class=tokenizer,
                         callbacks=[resume_callback()])
    if "ref" not in trainer.model.peft_config:
        raise RuntimeError("trl did not create the reference adapter 'ref'; the reference would be the base model")
    return trainer


def train_preference(*, model_dir: str, sft_adapter: str, train_pairs: Sequence[dict],
                     valid_pairs: Sequence[dict], settings: dict, seed: int, run: str, adapter_dir: str,
                     curves_csv: str, checkpoints: str, quantization: str = "none") -> dict:
    """The SFT adapter trained further with trl's DPOTrainer against the SFT model (reference
    adapter); returns a summary. The saved adapter is base + SFT + this run."""
    tokenizer = load_tokenizer(model_dir)
    max_length = int(settings["max_length"])
    train = preference_examples(train_pairs, tokenizer, max_length)
    valid_pairs = _eval_subset(valid_pairs, settings)
    valid = preference_examples(valid_pairs, tokenizer, max_length) if valid_pairs else None
    logger.info("preference run %s (%s, beta %s): %d training and %d validation pairs", run,
                settings["loss_type"], settings["beta"], len(train), len(valid or []))
    run_fingerprint = fingerprint("preference", run, settings, quantization, seed, train, _model_stamp(model_dir),
                                  _model_stamp(sft_adapter))
    resume = prepare_checkpoints(checkpoints, run_fingerprint)
    model = load_sft_for_preference(model_dir, sft_adapter, settings, quantization,
                                    key=f"empo.preference.runs.{run}")
    model.config.pad_token_id = tokenizer.pad_token_id
    trainer = preference_trainer(model, tokenizer, settings, train, valid, checkpoints, seed)
    trainer.train(resume_from_checkpoint=resume)
    summary = {"global_step": trainer.state.global_step, "resumed_from": resume, "train_pairs": len(train)}
    if valid:
        metrics = trainer.evaluate()
        summary.update({key.removeprefix("eval_"): value for key, value in metrics.items()
                        if key in ("eval_loss", "eval_rewards/margins", "eval_rewards/accuracies")})
        logger.info("validation: %s", summary)
    info = {"stage": "preference", "run": run, "base_model": str(model_dir), "settings": settings, "seed": seed,
            "quantization": quantization, "continues": str(sft_adapter), "reference": "the SFT adapter (frozen copy)",
            "global_step": trainer.state.global_step}
    _finish(trainer, adapter_dir, curves_csv, checkpoints, info)
    return summary


def _eval_subset(items: Sequence, settings: dict) -> list:
    """The first `max_eval_examples` validation items (null: all; 0: no evaluation). The items are
    already a seeded selection, so the first ones are a fair sample."""
    limit = settings.get("max_eval_examples")
    return list(items) if limit is None else list(items)[: int(limit)]


def _model_stamp(path: str | os.PathLike) -> list:
    """Names, sizes and modification times of a model/adapter folder's files (cheap change check)."""
    path = Path(path)
    if not path.is_dir():
        return [str(path)]
    return sorted((str(p.relative_to(path)), p.stat().st_size, int(p.stat().st_mtime))
                  for p in path.rglob("*") if p.is_file())


def save_adapter(model, adapter_dir: str | os.PathLike, info: dict) -> None:
    """Write the trained PEFT adapter ("default"; not trl's frozen "ref" copy, no embeddings or
    lm_head) to a temporary folder, then move it into place."""
    with atomic_dir(adapter_dir) as tmp:
        model.save_pretrained(str(tmp), save_embedding_layers=False, selected_adapters=["default"])
        sort_target_modules(tmp / "adapter_config.json")
        (tmp / ADAPTER_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def with_dpo_max_length(settings: dict, train_stats: str | os.PathLike) -> dict:
    """`max_length: length_filter` resolved as the authors do: the train split's length-filter
    threshold, int, up to an even number (src/dpo_ps.py); recorded in empo_adapter.json with the
    settings. Other values are kept."""
    if settings["max_length"] != "length_filter":
        return settings
    length_filter = read_json(train_stats)["length_filter"]
    if length_filter.get("dpo_max_length") is None:
        raise InputError(f"{train_stats}: length_filter has no dpo_max_length (max_length: length_filter needs "
                         f"empo.pairs.length_measure prompt_reply); rerun empo_pairs")
    settings = dict(settings, max_length=int(length_filter["dpo_max_length"]))
    logger.info("max_length %d from the train split's length filter (threshold %.1f tokens)",
                settings["max_length"], length_filter["threshold"])
    return settings

