"""Batched response generation for the EmPO models on the EmpatheticDialogues test split.

The EmPO code answered one prompt at a time through a text-generation pipeline. Here prompts are
sorted by token length, cut into batches, left-padded (so every row's last prompt token sits at
the right edge, where generation continues) and generated with the KV cache; answers are written
back in input order. Greedy by default; sampling is seeded per batch, so the same config and seed
give the same bytes.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable, Sequence

from empathy_workflow.core.io import InputError
from empathy_workflow.empo import dialogues

logger = logging.getLogger(__name__)


Messages = list[dict]


def load_test_prompts(path: str | os.PathLike, system_prompt: str | None = None,
                      subset: dict | None = None) -> list[dict]:
    """[{conv_id, prompt, reference}] for the test conversations, in file order.

    The prompts are built exactly as for the preference pairs (dialogues.prompt_messages: the
    conversation up to its last listener turn; that turn is the reference); `subset` is the
    generation subset file (results/empo/conversations/generation.json; None: all)."""
    records = dialogues.usable_conversations(dialogues.read_dialogues(path))
    if not records:
        raise InputError(f"{path}: no conversation has a listener reply to a speaker turn; nothing to answer")
    chosen = records if subset is None else dialogues.in_subset(records, subset)
    return [{"conv_id": record["conv_id"], "prompt": dialogues.prompt_messages(record, system_prompt),
             "reference": dialogues.reference_reply(record)} for record in chosen]


def load_model(model_dir: str | os.PathLike, adapter_dir: str | os.PathLike | None = None,
               quantization: str = "none"):
    """The policy with the adapter when given, in eval mode, on the base weights training used
    (4-bit when quantization says so; else fp32 on CPU, bf16/fp16 on a GPU)."""
    import torch

    from empathy_workflow.empo.training import load_policy

    # base, SFT or a preference run: each adapter folder is complete over the base (what
    # AutoPeftModelForCausalLM.from_pretrained builds); merged for speed unless 4-bit.
    model, tokenizer = load_policy(model_dir, adapter_dir, settings={"quantization": quantization})
    if torch.cuda.is_available() and next(model.parameters()).device.type != "cuda":
        model = model.to("cuda")
    model.eval()
    return model, tokenizer


def _generation_kwargs(model, tokenizer, settings: dict) -> dict:
    """Generation settings from config; only the sampling knobs that apply (no warnings)."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)
    kwargs = {
        "max_new_tokens": int(settings["max_new_tokens"]),
        "do_sample": bool(settings.get("do_sample", False)),
        "use_cache": True,
        "eos_token_id": eos,
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0],
    }
    if kwargs["do_sample"]:
        kwargs["temperature"] = float(settings.get("temperature", 1.0))
        kwargs["top_p"] = float(settings.get("top_p", 1.0))
    else:
        # The checkpoint's generation_config may carry sampling defaults; greedy means greedy.
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs


def render_prompts(tokenizer, prompts: Sequence[Messages]) -> list[str]:
    """The chat template with the generation prompt (the assistant header the model continues)."""
    if not getattr(tokenizer, "chat_template", None):
        raise InputError("the policy tokenizer has no chat template (tokenizer_config.json / "
                         "chat_template.jinja); generation needs one")
    return [tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
            for messages in prompts]


def length_order(lengths: Sequence[int]) -> list[int]:
    """Indices by decreasing token length (ties: input order): similar lengths share a batch, so
    little padding; the longest batch first, so memory trouble shows at once."""
    return sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))


def generate(model, tokenizer, prompts: Sequence[Messages], settings: dict, seed: int = 0,
             batch_size: int | None = None, progress: bool = True,
             on_batch: Callable[[int, int], None] | None = None) -> list[str]:
    """Answer every prompt (a list of chat messages); return the texts in input order."""
    import torch
    from tqdm.auto import tqdm

    batch_size = int(batch_size or settings.get("batch_size", 8))
    texts = render_prompts(tokenizer, prompts)
    # The template already holds the special tokens it needs (e.g. <|im_start|>).
    encoded = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    order = length_order([len(ids) for ids in encoded])
    kwargs = _generation_kwargs(model, tokenizer, settings)
    device = next(model.parameters()).device
    outputs: list[str | None] = [None] * len(prompts)
    saved_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
        for number, batch in enumerate(tqdm(batches, desc="generate", unit="batch", disable=not progress)):
            inputs = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, padding=True,
                                   return_tensors="pt", return_attention_mask=True)
            assert tokenizer.padding_side == "left"
            inputs = {key: value.to(device) for key, value in inputs.items()}
            if kwargs["do_sample"]:
                # One seed per batch: the same batches draw the same tokens on a rerun.
                torch.manual_seed(seed * 1_000_003 + number)
            with torch.inference_mode():
                generated = model.generate(**inputs, **kwargs)
            width = inputs["input_ids"].shape[1]
            for row, index in enumerate(batch):
                outputs[index] = tokenizer.decode(generated[row, width:], skip_special_tokens=True).strip()
            if on_batch is not None:
                on_batch(number, len(batches))
    finally:
        tokenizer.padding_side = saved_side
    return outputs  # type: ignore[return-value]


def generate_one_at_a_time(model, tokenizer, prompts: Sequence[Messages], settings: dict,
                           seed: int = 0) -> list[str]:
    """The baseline: each prompt alone, no padding (what a per-prompt pipeline call does)."""
    return [generate(model, tokenizer, [prompt], settings, seed=seed + i, batch_size=1, progress=False)[0]
            for i, prompt in enumerate(prompts)]


def run(test_path: str | os.PathLike, model_dir: str | os.PathLike, adapter_dir: str | os.PathLike | None,
        settings: dict, system_prompt: str | None, seed: int, quantization: str = "none",
        subset: dict | None = None) -> list[dict]:
    """Records for results/empo/generations/MODEL.jsonl: conv_id, prompt, reference, generation."""
    examples = load_test_prompts(test_path, system_prompt, subset)
    if adapter_dir is not None and not Path(adapter_dir).is_dir():
        raise InputError(f"{adapter_dir}: adapter directory does not exist")
    model, tokenizer = load_model(model_dir, adapter_dir, quantization)
    started = time.perf_counter()
    generations = generate(model, tokenizer, [example["prompt"] for example in examples], settings, seed=seed)
    elapsed = time.perf_counter() - started
    logger.info("generated %d answers in %.1f s (batch size %s, %s new tokens at most)", len(examples),
                elapsed, settings.get("batch_size"), settings["max_new_tokens"])
    return [dict(example, generation=text) for example, text in zip(examples, generations)]
