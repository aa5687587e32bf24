"""EmPO training with LoRA: SFT on ED conversations (loss on listener turns only), then preference
optimisation (trl DPOTrainer, any of its losses) on the emotion-grounded pairs.

Design choices (see also benchmarks/empo.md):
- Pad token: an existing token (the tokenizer's own pad, else unk, else eos). No token is added and
  no embedding is resized, so the adapters hold only LoRA matrices (the EmPO adapters were 12 GB
  because a new pad token forced saving the embeddings); saved with save_embedding_layers=False.
- Assistant-only SFT loss: SmolLM2's chat template has no {% generation %} markers, and trl can
  patch only the templates it knows. We render the chat template ourselves, find each assistant
  message's character span by rendering growing prefixes (the template must be prefix-preserving:
  checked), and mark the tokens starting inside those spans, end-of-turn token included (so the
  model learns to stop). The trainer gets `input_ids` + `assistant_masks` and builds the labels.
- Preference stage on top of SFT, as the EmPO code did it (src/dpo_ps.py): the SFT adapter is
  loaded trainable on the base and trained further, against the SFT model as the frozen
  reference. trl 1.16 makes the reference adapter itself: given a PeftModel and no peft_config,
  DPOTrainer copies the "default" adapter (here: SFT) into a frozen adapter "ref" and computes
  the reference log-probs with it. Policy and reference share the same base weights (4-bit when
  empo.sft.quantization says so). Only the trained adapter is saved, so a run's folder is a
  complete PEFT adapter over the base model: AutoPeftModelForCausalLM.from_pretrained(folder)
  gives base + SFT + the run.
- Too-long conversations lose their *earliest* turns (never the reply being trained on), so
  `max_length` truncation in trl never cuts a chosen/rejected reply or the final listener turn.
- Resumable: checkpoints go to a directory outside the rule's outputs (params.checkpoints); a
  rerun with the same settings and data resumes from the last one; different settings or data
  (fingerprint mismatch) start afresh. The directory is removed after a successful run.
- 4-bit QLoRA only when CUDA and bitsandbytes are present (quantization: 4bit); else fp32 on CPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Sequence

import pandas as pd

from . import plots
from .io import InputError, write_csv
from .preference import conversation_messages

logger = logging.getLogger(__name__)

ADAPTER_INFO = "empo_adapter.json"
FINGERPRINT = "run_fingerprint.json"


# ------------------------------------------------------------------------------------------
# Models and tokenizers


def load_tokenizer(model_dir: str | os.PathLike):
    """The model's tokenizer with a pad token that already exists in its vocabulary."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        # reuse a token: adding one would resize (and save) the embeddings
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    if tokenizer.pad_token is None:
        raise InputError(f"{model_dir}: tokenizer has no pad, unk or eos token to pad with")
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(f"{model_dir}: tokenizer has no chat template; EmPO formats ED conversations as chats")
    return tokenizer


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def quantization_config(settings: dict, key: str = "empo.sft"):
    """BitsAndBytes 4-bit (QLoRA) config when asked for; a clear error where it cannot work."""
    mode = settings.get("quantization", "none") or "none"
    if mode == "none":
        return None
    if mode != "4bit":
        raise InputError(f"config key {key}.quantization: {mode!r} is not one of none, 4bit")
    if not cuda_available():
        raise InputError(f"config key {key}.quantization: 4bit (QLoRA) needs a CUDA GPU; this machine has none "
                         f"(use quantization: none on CPU)")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as error:
        raise InputError(f"config key {key}.quantization: 4bit needs the bitsandbytes package") from error
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=_half_dtype())


def cpu_has_bf16_units() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AMX or AVX512-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def _half_dtype():
    import torch

    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def precision_flags(cpu_precision: str = "float32") -> dict:
    """Mixed precision on GPUs. On CPU plain fp32 (trl defaults to bf16, which most CPUs emulate
    slowly), unless cpu_precision is "auto" and the CPU has bf16 matrix units (AMX, AVX512-BF16):
    there bf16 autocast makes a LoRA step about twice as fast (benchmarks/similarity.md)."""
    if not cuda_available():
        bf16 = cpu_precision == "auto" and cpu_has_bf16_units()
        return {"bf16": bf16, "fp16": False, "use_cpu": True}
    import torch

    bf16 = torch.cuda.is_bf16_supported()
    return {"bf16": bf16, "fp16": not bf16}


def load_base_model(model_dir: str | os.PathLike, settings: dict | None = None, *, for_training: bool = False,
                    key: str = "empo.sft"):
    """The causal LM: fp32 on CPU, bf16/fp16 on GPU, 4-bit if settings say quantization: 4bit."""
    import torch
    from transformers import AutoModelForCausalLM

    settings = settings or {}
    quantization = quantization_config(settings, key)
    kwargs: dict = {}
    if quantization is not None:
        kwargs.update(quantization_config=quantization, device_map={"": 0}, dtype=_half_dtype())
    elif cuda_available():
        # Training keeps fp32 weights under autocast unless the config names a dtype (the similarity
        # authors trained LoRA on bf16 weights: --torch_dtype bfloat16).
        train_dtype = getattr(torch, settings["torch_dtype"]) if settings.get("torch_dtype") else torch.float32
        kwargs.update(dtype=_half_dtype() if not for_training else train_dtype, device_map={"": 0})
    else:
        kwargs.update(dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    if quantization is not None and for_training:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=bool(settings.get("gradient_checkpointing", False)))
    return model


def lora_config(lora: dict):
    from peft import LoraConfig

    targets = lora["target_modules"]
    # None: PEFT's default modules for the architecture (q_proj, v_proj for Llama), as trl's --use_peft
    return LoraConfig(r=int(lora["r"]), lora_alpha=float(lora["alpha"]), lora_dropout=float(lora["dropout"]),
                      target_modules=targets if targets in ("all-linear", None) else list(targets),
                      bias="none", task_type="CAUSAL_LM")


def adapter_info(adapter_dir: str | os.PathLike) -> dict:
    path = Path(adapter_dir) / ADAPTER_INFO
    return json.loads(path.read_text()) if path.exists() else {}


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


# ------------------------------------------------------------------------------------------
# Chat formatting and assistant masks


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


# ------------------------------------------------------------------------------------------
# Trainer arguments, checkpoints, curves


def common_arguments(settings: dict, output_dir: str, seed: int) -> dict:
    """TrainingArguments shared by SFT and preference runs, from a config sub-dict."""
    max_steps = int(settings.get("max_steps", -1))
    return dict(
        output_dir=output_dir,
        per_device_train_batch_size=int(settings["batch_size"]),
        per_device_eval_batch_size=int(settings["batch_size"]),
        gradient_accumulation_steps=int(settings.get("gradient_accumulation_steps", 1)),
        learning_rate=float(settings["learning_rate"]),
        num_train_epochs=float(settings.get("epochs", 1)),
        max_steps=max_steps,
        warmup_steps=float(settings.get("warmup_ratio", 0.0)),  # a float in [0, 1) is a ratio
        lr_scheduler_type=settings.get("lr_scheduler_type", "linear"),
        max_grad_norm=float(settings.get("max_grad_norm", 1.0)),  # transformers' default: 1.0
        optim=settings.get("optim", "adamw_torch"),
        save_strategy="steps",
        save_steps=int(settings.get("save_steps", 500)),
        save_total_limit=2,
        logging_steps=1,
        logging_first_step=True,
        report_to=[],
        seed=seed,
        data_seed=seed,
        # transformers 5 name of gradient checkpointing (trl would default it to on: slower, and
        # only worth it when memory is short, e.g. a 7B model)
        activation_checkpointing=bool(settings.get("gradient_checkpointing", False)),
        dataloader_num_workers=0,
        disable_tqdm=False,
        **precision_flags(settings.get("cpu_precision", "float32")),
    )


def fingerprint(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:20]


def prepare_checkpoints(checkpoints: str | os.PathLike, run_fingerprint: str) -> str | None:
    """The last checkpoint to resume from, or None. Checkpoints of different settings/data are removed."""
    from transformers.trainer_utils import get_last_checkpoint

    checkpoints = Path(checkpoints)
    stamp = checkpoints / FINGERPRINT
    if checkpoints.exists():
        previous = json.loads(stamp.read_text()).get("fingerprint") if stamp.exists() else None
        if previous != run_fingerprint:
            logger.info("checkpoints in %s are from other settings or data: starting afresh", checkpoints)
            shutil.rmtree(checkpoints)
    checkpoints.mkdir(parents=True, exist_ok=True)
    for partial in checkpoints.glob("checkpoint-*"):
        # a job stopped while writing a checkpoint leaves it without its trainer state
        if partial.is_dir() and not (partial / "trainer_state.json").exists():
            logger.info("removing incomplete checkpoint %s", partial)
            shutil.rmtree(partial)
    stamp.write_text(json.dumps({"fingerprint": run_fingerprint}) + "\n")
    last = get_last_checkpoint(str(checkpoints))
    if last:
        logger.info("resuming from checkpoint %s", last)
    else:
        logger.info("no checkpoint in %s: training from the start", checkpoints)
    return last


STOP_AFTER_STEP = "EMPATHY_STOP_AFTER_STEP"


class StoppedAtStepBudget(RuntimeError):
    """Training stopped on purpose right after a checkpoint (see resume_callback)."""


def resume_callback():
    """A TrainerCallback that logs what the Trainer itself restored and ran: the step it starts
    from (a resumed run: its checkpoint's), how many parameters' optimizer moments and which
    learning-rate scheduler step it loaded, and the first and last step it executed. A restart
    from step 0 gives the same steps and losses as a resume (same seed), so only this tells them
    apart. With $EMPATHY_STOP_AFTER_STEP=N set, the job fails right after saving the checkpoint of
    step N or later, as a scheduler's time limit would stop it, but at a known step (resume tests)."""
    from transformers import TrainerCallback

    class ResumeRecord(TrainerCallback):
        def __init__(self):
            self.started_at_step = self.first_step_run = self.last_step_run = None

        def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
            self.started_at_step = state.global_step
            logger.info("trainer starts at step %d of %d (optimizer moments for %d parameter tensors, "
                        "learning-rate scheduler at step %s)", state.global_step, state.max_steps,
                        len(getattr(optimizer, "state", None) or {}), getattr(lr_scheduler, "last_epoch", None))

        def on_step_end(self, args, state, control, **kwargs):
            if self.first_step_run is None:
                self.first_step_run = state.global_step
            self.last_step_run = state.global_step

        def on_save(self, args, state, control, **kwargs):
            budget = os.environ.get(STOP_AFTER_STEP)
            if budget and state.global_step >= int(budget):
                raise StoppedAtStepBudget(f"stopped after the checkpoint of step {state.global_step} "
                                          f"(${STOP_AFTER_STEP}={budget})")

        def on_train_end(self, args, state, control, **kwargs):
            logger.info("trainer ran steps %s to %s", self.first_step_run, self.last_step_run)

    return ResumeRecord()


CURVE_COLUMNS = ["step", "epoch", "loss", "learning_rate", "grad_norm", "rewards/chosen", "rewards/rejected",
                 "rewards/margins", "rewards/accuracies", "eval_loss"]


def curves_frame(log_history: list[dict]) -> pd.DataFrame:
    """One row per logged training step (and per evaluation), known metric columns only."""
    rows = []
    for entry in log_history:
        if "loss" not in entry and "eval_loss" not in entry:
            continue  # the final summary row (train_runtime, ...)
        rows.append({column: entry.get(column) for column in CURVE_COLUMNS})
    frame = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    return frame.dropna(axis=1, how="all")


def plot_curves(frame: pd.DataFrame, path: str | os.PathLike, title: str) -> None:
    panels = [column for column in ("loss", "rewards/margins", "rewards/accuracies") if column in frame]
    figure, axes = plots.plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for axis, column in zip(axes[0], panels):
        data = frame.dropna(subset=[column])
        axis.plot(data["step"], data[column], marker=".", label="train")
        if column == "loss" and "eval_loss" in frame:
            evaluation = frame.dropna(subset=["eval_loss"])
            axis.plot(evaluation["step"], evaluation["eval_loss"], "o", label="valid")
            axis.legend()
        axis.set_xlabel("step")
        axis.set_ylabel(column)
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    plots.save_figure(figure, path)


def _sort_target_modules(config_path: Path) -> None:
    """PEFT writes target_modules from a set, in hash order: sort it so equal runs give equal bytes."""
    if not config_path.exists():
        return
    config = json.loads(config_path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def save_adapter(model, adapter_dir: str | os.PathLike, info: dict) -> None:
    """Write the trained PEFT adapter ("default"; not trl's frozen "ref" copy, no embeddings or
    lm_head) to a temporary folder, then move it into place."""
    adapter_dir = Path(adapter_dir)
    tmp = adapter_dir.parent / f".{adapter_dir.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(str(tmp), save_embedding_layers=False, selected_adapters=["default"])
    _sort_target_modules(tmp / "adapter_config.json")
    (tmp / ADAPTER_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    if adapter_dir.exists():
        shutil.rmtree(adapter_dir)
    os.replace(tmp, adapter_dir)


def _finish(trainer, adapter_dir, curves_csv, curves_png, checkpoints, info, title):
    frame = curves_frame(trainer.state.log_history)
    write_csv(curves_csv, frame)
    plot_curves(frame, curves_png, title)
    save_adapter(trainer.model, adapter_dir, info)
    shutil.rmtree(checkpoints, ignore_errors=True)  # done: a later run must not resume a finished one


# ------------------------------------------------------------------------------------------
# The two stages


def train_sft(*, model_dir: str, train_records: Sequence[dict], valid_records: Sequence[dict], settings: dict,
              system_prompt: str | None, seed: int, adapter_dir: str, curves_csv: str, curves_png: str,
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
    _finish(trainer, adapter_dir, curves_csv, curves_png, checkpoints, info, "SFT")
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
                     curves_csv: str, curves_png: str, checkpoints: str, quantization: str = "none") -> dict:
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
    _finish(trainer, adapter_dir, curves_csv, curves_png, checkpoints, info, f"preference: {run}")
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
