"""Greedy decoding of many prompts that share a long prefix (the similarity instruction).

eval_llama3.ipynb scores the fine-tuned model by greedy generation (do_sample=False, max_length 2048)
and parses the number. On a CPU the shared system prompt is most of each prompt, so it is run once:
its KV cache is copied into every batch, and each prompt's own tokens follow it after padding
placed *between* the prefix and them (attention mask 0 there). transformers derives position ids
from the attention mask's cumulative sum, so every real token keeps the position it would have
unpadded, and the greedy tokens equal those of generating each prompt alone
(tests/test_similarity_protocol.py checks it).
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def _eos_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = list(ids) if isinstance(ids, (list, tuple)) else ([ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def greedy_responses(model, tokenizer, prompts: list[list[int]], batch_size: int = 8,
                     max_new_tokens: int | None = None, max_length: int = 2048,
                     progress: bool = True) -> list[str]:
    """Each prompt's greedy continuation, decoded up to and including the first end-of-sequence token
    (special tokens kept, as the authors decode before splitting at '<'). At most `max_new_tokens`
    new tokens when given, else up to `max_length` tokens in all (prompt included)."""
    import torch
    from tqdm.auto import tqdm

    from .similarity import _common_prefix, _expanded_cache

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eos = _eos_ids(model, tokenizer)
    device = next(model.parameters()).device
    shared = _common_prefix(prompts) if len(prompts) > 1 else 0
    prefix_cache = None
    if shared:
        with torch.inference_mode():
            prefix_cache = model(input_ids=torch.tensor([prompts[0][:shared]], device=device),
                                 use_cache=True, logits_to_keep=1).past_key_values
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    responses: list[str] = [""] * len(prompts)
    for start in tqdm(range(0, len(order), batch_size), desc="greedy decoding", disable=not progress,
                      mininterval=10):
        index = order[start:start + batch_size]
        rests = [prompts[i][shared:] for i in index]
        length = max(len(r) for r in rests)
        ids = torch.full((len(index), shared + length), pad_id, dtype=torch.long)
        mask = torch.zeros((len(index), shared + length), dtype=torch.long)
        for row, i in enumerate(index):
            ids[row, :shared] = torch.tensor(prompts[i][:shared], dtype=torch.long)
            ids[row, shared + length - len(rests[row]):] = torch.tensor(rests[row], dtype=torch.long)
            mask[row, :shared] = 1
            mask[row, shared + length - len(rests[row]):] = 1
        new_tokens = max_new_tokens if max_new_tokens else max(1, max_length - (shared + length))
        with torch.inference_mode():
            cache = _expanded_cache(model, prefix_cache, len(index)) if shared else None
            output = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                    past_key_values=cache, max_new_tokens=new_tokens, do_sample=False,
                                    temperature=None, top_p=None, top_k=None,
                                    pad_token_id=pad_id, eos_token_id=eos)
        for row, i in enumerate(index):
            generated = output[row, shared + length:].tolist()
            ends = [k for k, token in enumerate(generated) if token in eos]
            responses[i] = tokenizer.decode(generated[:ends[0] + 1] if ends else generated,
                                            skip_special_tokens=False)
    return responses
