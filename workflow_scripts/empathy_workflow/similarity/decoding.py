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

import numpy as np

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

    from empathy_workflow.similarity.decoding import _common_prefix, _expanded_cache

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


def _branches(suffixes: list[list[int]]) -> tuple[list[list[int]], list[int]]:
    """Continuations to feed after the prompt so that one forward pass yields every answer token's
    log-probability: answer[:-1] for each answer, dropping those that are a prefix of another
    ("1" is covered by "1.5"). Returns the branches and, per answer, its branch index."""
    inputs = [tuple(s[:-1]) for s in suffixes]
    branches = []
    for candidate in sorted(set(inputs), key=lambda x: (-len(x), x)):
        if not any(b[:len(candidate)] == candidate for b in branches):
            branches.append(candidate)
    owner = [next(i for i, b in enumerate(branches) if b[:len(inp)] == inp) for inp in inputs]
    return [list(b) for b in branches], owner


def scored_suffixes(suffixes: list[list[int]]) -> list[list[int]]:
    """Drop formatting that follows the end-of-turn token in every answer (e.g. the newline after
    <|im_end|>): the tokens all answers end with are kept only up to the first (the end of turn,
    which is what tells "1" from "1.5"), so the scored continuations are as short as possible."""
    common = 0
    while (all(len(s) > common + 1 for s in suffixes)
           and len({s[len(s) - 1 - common] for s in suffixes}) == 1):
        common += 1
    cut = max(common - 1, 0)
    return [s[:len(s) - cut] for s in suffixes]


def _common_prefix(prompts: list[list[int]]) -> int:
    """Length of the token prefix all prompts share (the instruction), leaving each at least one token."""
    shortest = min(len(p) for p in prompts)
    length = 0
    while length < shortest - 1 and len({p[length] for p in prompts}) == 1:
        length += 1
    return length


def _expanded_cache(model, prefix_cache, batch: int):
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    for layer_index, layer in enumerate(prefix_cache.layers):
        cache.update(layer.keys.expand(batch, -1, -1, -1).contiguous(),
                     layer.values.expand(batch, -1, -1, -1).contiguous(), layer_index)
    return cache


def _tree_mask(rest_lengths: list[int], length: int, shared: int, branches: list[list[int]], dtype):
    """Additive 4D attention mask [batch, 1, length + T, shared + length + T] for one forward pass
    over left-padded prompt remainders followed by every branch's tokens (T in all): prompt tokens
    see the shared prefix and the earlier real tokens of their own prompt; a branch token also sees
    the whole prompt and the earlier tokens of its own branch, never another branch ("tree attention").
    Every row may see itself, so no row is empty."""
    import torch

    width = sum(len(b) for b in branches)
    queries, keys = length + width, shared + length + width
    allowed = torch.zeros((len(rest_lengths), queries, keys), dtype=torch.bool)
    allowed[:, :, :shared] = True
    causal = torch.tril(torch.ones((length, length), dtype=torch.bool))
    start = 0
    block = torch.zeros((width, width), dtype=torch.bool)
    for branch in branches:
        block[start:start + len(branch), start:start + len(branch)] = torch.tril(
            torch.ones((len(branch), len(branch)), dtype=torch.bool))
        start += len(branch)
    for row, rest in enumerate(rest_lengths):
        real = torch.zeros(length, dtype=torch.bool)
        real[length - rest:] = True
        allowed[row, :length, shared:shared + length] = causal & real
        allowed[row, length:, shared:shared + length] = real
        allowed[row, length:, shared + length:] = block
    diagonal = torch.arange(queries)
    allowed[:, diagonal, shared + diagonal] = True
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def answer_logprobs(model, tokenizer, prompts: list[list[int]], suffixes: list[list[int]],
                    batch_size: int = 8, progress: bool = True, per_token: bool = False):
    """Log-probability of each answer continuation after each prompt: an (n_prompts, n_answers) array;
    with per_token=True also each token's (n_prompts, n_answers, longest answer), zero-padded, which
    similarity_protocol.guided_choice walks.

    The prefix every prompt shares (the instruction) is run once and its KV cache reused. Each
    batch then takes one forward pass over the prompts' remainders (left-padded, explicit positions)
    followed by the few branches that cover all answers (see `_branches`), with a tree-shaped
    attention mask (`_tree_mask`): each branch sees its prompt but not the other branches. No token
    is processed twice and no cache is copied per branch (repeating it made scoring 2x slower).
    """
    import torch
    from tqdm.auto import tqdm

    branches, owner = _branches(suffixes)
    branches = [b for b in branches if b]  # an empty branch: every answer is a single token
    offsets = np.cumsum([0] + [len(b) for b in branches])[:-1]
    branch_tokens = [token for branch in branches for token in branch]
    branch_positions = [k for branch in branches for k in range(len(branch))]
    width = len(branch_tokens)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    if not dtype.is_floating_point:  # quantized weights: the mask follows the compute dtype
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shared = _common_prefix(prompts) if len(prompts) > 1 else 0
    prefix_cache = None
    if shared:
        with torch.inference_mode():
            prefix_cache = model(input_ids=torch.tensor([prompts[0][:shared]], device=device), use_cache=True,
                                 logits_to_keep=1).past_key_values
    # Longest prompts first: batches of similar length waste little on padding.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    result = np.zeros((len(prompts), len(suffixes)))
    tokens = np.zeros((len(prompts), len(suffixes), max(len(s) for s in suffixes)))
    batches = range(0, len(order), batch_size)
    for start in tqdm(batches, desc="scoring answers", disable=not progress, mininterval=10):
        index = order[start:start + batch_size]
        rests = [prompts[i][shared:] for i in index]
        length = max(len(r) for r in rests)
        ids = torch.full((len(index), length + width), pad_id, dtype=torch.long)
        positions = torch.zeros((len(index), length + width), dtype=torch.long)
        for row, rest in enumerate(rests):
            ids[row, length - len(rest):length] = torch.tensor(rest, dtype=torch.long)
            ids[row, length:] = torch.tensor(branch_tokens, dtype=torch.long)
            last = shared + len(rest) - 1  # position of the prompt's last token
            positions[row, length - len(rest):length] = torch.arange(shared, last + 1)
            positions[row, length:] = last + 1 + torch.tensor(branch_positions, dtype=torch.long)
        mask = _tree_mask([len(r) for r in rests], length, shared, branches, dtype)
        with torch.inference_mode():
            cache = _expanded_cache(model, prefix_cache, len(index)) if shared else None
            out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                        past_key_values=cache, use_cache=False, logits_to_keep=width + 1)
            # logits[:, 0]: after the prompt; logits[:, 1 + offset + k]: after branch token k
            logprobs = torch.log_softmax(out.logits.float(), dim=-1).cpu()
        for j, suffix in enumerate(suffixes):
            tokens[index, j, 0] = logprobs[:, 0, suffix[0]].numpy()
            for k in range(1, len(suffix)):
                tokens[index, j, k] = logprobs[:, 1 + offsets[owner[j]] + k - 1, suffix[k]].numpy()
            result[index, j] = tokens[index, j, :len(suffix)].sum(axis=1)
    return (result, tokens) if per_token else result


def answer_distribution(logprobs: np.ndarray) -> np.ndarray:
    """Renormalise answer log-probabilities into a distribution over exactly the allowed answers."""
    shifted = logprobs - logprobs.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    return probs / probs.sum(axis=1, keepdims=True)
