"""EmPO preference pairs: for each prompt, the chosen reply is its own conversation's listener
turn and the rejected ones come from conversations of the opposite emotion; the length filter
and statistics are the EmPO code's."""

from __future__ import annotations

import logging
import os
import zlib
from collections import Counter, defaultdict
from typing import Callable, Sequence

import numpy as np

from empathy_workflow.core.io import InputError, read_json
from empathy_workflow.empo.dialogues import (
    last_listener_index,
    prompt_messages,
    reference_reply,
)
from empathy_workflow.empo.emotions import validate_mapping

logger = logging.getLogger(__name__)


def _emotion_rng(seed: int, emotion: str) -> np.random.Generator:
    # One stream per emotion, so a pool's order does not depend on which other emotions exist.
    return np.random.default_rng([seed, zlib.crc32(emotion.encode())])


def length_threshold(lengths: Sequence[int], percentile: float) -> float:
    """Token length at the given percentile (linear interpolation, as numpy)."""
    return float(np.percentile(np.asarray(lengths, dtype=float), percentile))


def _summary(values: Sequence[float]) -> dict:
    if not len(values):
        return {"n": 0}
    array = np.asarray(values, dtype=float)
    return {"n": int(array.size), "mean": round(float(array.mean()), 3), "median": float(np.median(array)),
            "p95": round(float(np.percentile(array, 95)), 3), "min": float(array.min()), "max": float(array.max())}


def build_pairs(records: Sequence[dict], mapping: dict[str, str], *, rejected_per_prompt: int, seed: int,
                system_prompt: str | None = None, prompt_ids: Sequence[str] | None = None,
                length_percentile: float | None = None,
                token_length: Callable[[list[str]], list[int]] | None = None,
                length_measure: str = "reply",
                conversation_length: Callable[[list[list[dict]]], list[int]] | None = None,
                split: str = "", given_threshold: float | None = None,
                threshold_from: str | None = None) -> tuple[list[dict], dict]:
    """Emotion-grounded preference pairs for one split; returns (pairs, stats).

    - usable conversations: those with a listener reply to a speaker turn (trailing speaker turns
      are dropped, see the module docstring);
    - length filter (optional), `length_measure` "prompt_reply" (the EmPO DPO code's,
      src/dpo_ps.py): after pairing, the threshold is the larger of the `length_percentile`
      percentiles of prompt+chosen and prompt+rejected token lengths (`conversation_length` of
      the chat messages, system message included), and pairs whose prompt+chosen is longer are
      dropped (all three pairs of such a prompt); see filter_pairs_by_length;
    - length filter (optional), `length_measure` "reply": replies (last listener turns) longer than the `length_percentile`
      of all usable replies of the split, in tokens of `token_length` (else whitespace words), are
      removed before pairing, both as chosen and as rejected candidates, so every kept prompt still
      gets `rejected_per_prompt` rejected replies;
    - `given_threshold` (the train split's, as src/dpo_ps.py computes the threshold on the train
      split and applies it to the evaluation split too) replaces this split's own percentile in
      either measure; `threshold_from` names where it came from (recorded in the stats, beside
      this split's own percentile);
    - prompts: the usable conversations named by `prompt_ids` (the split's shared subset,
      results/empo/conversations/SPLIT.json; None: all), in file order; after a `reply` length
      filter only those it kept. Rejected candidates come from *all* usable conversations of the split, so the cap shrinks the
      number of pairs, not the variety of rejected replies;
    - rejected: for a prompt of emotion e, the next `rejected_per_prompt` conversations of emotion
      mapping[e] from a seeded, shuffled cycle over that emotion's candidates (never the prompt's own
      conversation). The cycle spreads uses evenly: counts per candidate differ by at most one.
      A prompt whose mapped emotion has fewer than `rejected_per_prompt` other conversations in the
      split is left out (counted in the stats), so every prompt has exactly that many pairs.
    """
    if rejected_per_prompt < 1:
        raise InputError(f"empo.pairs.rejected_per_prompt must be at least 1, got {rejected_per_prompt}")
    validate_mapping(mapping, "emotion mapping")
    usable, no_listener, trimmed = [], 0, 0
    for record in records:
        end = last_listener_index(record)
        if end is None:
            no_listener += 1
            continue
        trimmed += end < len(record["turns"]) - 1
        usable.append(record)
    replies = [reference_reply(record) for record in usable]
    if token_length is not None:
        lengths = list(token_length(replies))
        unit = "tokens"
    else:
        lengths = [len(reply.split()) for reply in replies]
        unit = "words"
    length_of = {record["conv_id"]: length for record, length in zip(usable, lengths)}

    if length_measure not in ("reply", "prompt_reply"):
        raise InputError(f"empo.pairs.length_measure: {length_measure!r} is not one of reply, prompt_reply")
    if length_measure == "prompt_reply" and length_percentile is not None and conversation_length is None:
        raise ValueError("length_measure prompt_reply needs conversation_length (a tokenizer)")
    threshold = own_threshold = None
    if length_percentile is not None and usable and length_measure == "reply":
        own_threshold = length_threshold(lengths, length_percentile)
        threshold = own_threshold if given_threshold is None else float(given_threshold)
        kept = [record for record in usable if length_of[record["conv_id"]] <= threshold]
        dropped_long = len(usable) - len(kept)
        usable = kept
    else:
        dropped_long = 0

    pools: dict[str, list[dict]] = defaultdict(list)
    for record in usable:
        pools[record["emotion"]].append(record)
    cycles = {}
    for emotion, pool in pools.items():
        order = _emotion_rng(seed, emotion).permutation(len(pool))
        cycles[emotion] = {"order": [pool[int(i)] for i in order], "cursor": 0,
                           "ids": {record["conv_id"] for record in pool}}

    prompts = usable if prompt_ids is None else [record for record in usable if record["conv_id"] in set(prompt_ids)]
    pairs, pair_counts, short = [], Counter(), 0
    uses: Counter = Counter()
    for record in prompts:
        target = mapping[record["emotion"]]
        cycle = cycles.get(target)
        # the prompt's own conversation is never a candidate (it cannot be in its target pool, as no
        # emotion maps to itself, but it is excluded explicitly all the same)
        available = 0 if cycle is None else len(cycle["order"]) - (record["conv_id"] in cycle["ids"])
        if available < rejected_per_prompt:
            # too few conversations of the mapped emotion in this split: every kept prompt has
            # exactly rejected_per_prompt pairs, so this one is left out (and counted)
            short += 1
            continue
        picks: list[dict] = []
        order = cycle["order"]
        while len(picks) < rejected_per_prompt:
            candidate = order[cycle["cursor"] % len(order)]
            cycle["cursor"] += 1
            if candidate["conv_id"] != record["conv_id"]:
                picks.append(candidate)
        prompt = prompt_messages(record, system_prompt)
        chosen = [{"role": "assistant", "content": reference_reply(record)}]
        for candidate in picks:
            pairs.append({
                "prompt": prompt,
                "chosen": chosen,
                "rejected": [{"role": "assistant", "content": reference_reply(candidate)}],
                "emotion": record["emotion"],
                "rejected_emotion": candidate["emotion"],
                "conv_id": record["conv_id"],
                "rejected_conv_id": candidate["conv_id"],
            })
            pair_counts[f"{record['emotion']}->{candidate['emotion']}"] += 1
            uses[candidate["conv_id"]] += 1
    if short:
        logger.warning("%s: %d prompt(s) left out: their mapped emotion has fewer than %d other conversations "
                       "in this split", split or "pairs", short, rejected_per_prompt)

    length_filter = {"percentile": length_percentile, "measure": length_measure, "threshold": threshold,
                     "unit": unit, "conversations_dropped": dropped_long,
                     "threshold_from": threshold_from if given_threshold is not None else split,
                     "split_threshold": own_threshold}
    if length_measure == "prompt_reply" and length_percentile is not None and pairs:
        pairs, length_filter = filter_pairs_by_length(pairs, length_percentile, conversation_length,
                                                      given_threshold=given_threshold)
        length_filter["threshold_from"] = threshold_from if given_threshold is not None else split
        pair_counts = Counter(f"{pair['emotion']}->{pair['rejected_emotion']}" for pair in pairs)
        uses = Counter(pair["rejected_conv_id"] for pair in pairs)
    chosen_lengths = [length_of[conv_id] for conv_id in dict.fromkeys(pair["conv_id"] for pair in pairs)]
    rejected_lengths = [length_of[pair["rejected_conv_id"]] for pair in pairs]
    use_counts = list(uses.values())
    stats = {
        "split": split,
        "conversations": len(records),
        "conversations_without_listener_reply": no_listener,
        "conversations_trimmed_trailing_speaker": int(trimmed),
        "length_filter": length_filter,
        "prompts_selected": len(prompts),
        "prompts_without_enough_rejected": short,
        "prompts": len(dict.fromkeys(pair["conv_id"] for pair in pairs)),
        "pairs": len(pairs),
        "rejected_per_prompt": rejected_per_prompt,
        "pairs_per_emotion_pair": dict(sorted(pair_counts.items())),
        "lengths": {"unit": unit, "chosen": _summary(chosen_lengths), "rejected": _summary(rejected_lengths)},
        "rejected_reuse": {"distinct_rejected": len(uses), "min_uses": min(use_counts, default=0),
                           "max_uses": max(use_counts, default=0)},
        "seed": seed,
    }
    return pairs, stats


def filter_pairs_by_length(pairs: Sequence[dict], percentile: float,
                           conversation_length: Callable[[list[list[dict]]], list[int]],
                           given_threshold: float | None = None) -> tuple[list[dict], dict]:
    """The EmPO DPO length filter (src/dpo_ps.py): threshold = max(pNN of prompt+chosen, pNN of
    prompt+rejected) in tokens of the rendered conversation (system message included); a pair is
    kept when its prompt+chosen fits. A prompt's pairs share prompt+chosen, so a prompt keeps all
    its pairs or none. `given_threshold` (the train split's) replaces this split's own, as the
    authors filter their evaluation split with the train threshold. Returns (kept pairs, filter
    stats); the stats carry `dpo_max_length` and `max_prompt_length`, the authors' DPO lengths
    (int of the percentile, rounded up to an even number) for `max_length: length_filter`."""
    chosen = conversation_length([list(pair["prompt"]) + list(pair["chosen"]) for pair in pairs])
    rejected = conversation_length([list(pair["prompt"]) + list(pair["rejected"]) for pair in pairs])
    own = max(length_threshold(chosen, percentile), length_threshold(rejected, percentile))
    threshold = own if given_threshold is None else float(given_threshold)
    kept = [pair for pair, length in zip(pairs, chosen) if length <= threshold]
    prompts = conversation_length([list(pair["prompt"]) for pair in pairs])
    return kept, {"percentile": percentile, "measure": "prompt_reply", "threshold": threshold, "unit": "tokens",
                  "split_threshold": own, "pairs_dropped": len(pairs) - len(kept),
                  "dpo_max_length": even_length(threshold), "max_prompt_length": even_length(
                      length_threshold(prompts, percentile)),
                  "prompt_chosen_p95": length_threshold(chosen, 95), "prompt_rejected_p95": length_threshold(rejected, 95)}


def even_length(threshold: float) -> int:
    """src/dpo_ps.py's DPO length from a percentile: int(), then up to the next even number."""
    return ((int(threshold) + 1) // 2) * 2


def chat_lengths(tokenizer) -> Callable[[list[list[dict]]], list[int]]:
    """Token counts of chat conversations rendered with the tokenizer's chat template (as the
    EmPO code measured prompt+reply: template text, then `tokenizer(text)` with its special tokens,
    e.g. the BOS a Llama/Mistral tokenizer adds before Zephyr's template text)."""
    def lengths(conversations: list[list[dict]]) -> list[int]:
        texts = [tokenizer.apply_chat_template(messages, tokenize=False) for messages in conversations]
        return tokenizer_lengths(tokenizer, special_tokens=True)(texts)

    return lengths


def tokenizer_lengths(tokenizer, special_tokens: bool = False) -> Callable[[list[str]], list[int]]:
    """Token counts of texts with a (fast) tokenizer, in batches; special tokens (BOS/EOS the
    tokenizer adds on its own) only with `special_tokens`."""
    def lengths(texts: list[str]) -> list[int]:
        counts: list[int] = []
        for start in range(0, len(texts), 2048):
            batch = tokenizer(list(texts[start:start + 2048]), add_special_tokens=special_tokens)["input_ids"]
            counts.extend(len(ids) for ids in batch)
        return counts

    return lengths


def check_pairs(pairs: Sequence[dict], mapping: dict[str, str], split_ids: set[str]) -> None:
    """Invariants of a pair file (used by tests and as a final self-check before writing)."""
    for number, pair in enumerate(pairs, start=1):
        if pair["rejected_emotion"] != mapping[pair["emotion"]]:
            raise AssertionError(f"pair {number}: rejected emotion {pair['rejected_emotion']} is not the "
                                 f"opposite of {pair['emotion']}")
        if pair["conv_id"] == pair["rejected_conv_id"]:
            raise AssertionError(f"pair {number}: rejected reply comes from its own conversation")
        if pair["conv_id"] not in split_ids or pair["rejected_conv_id"] not in split_ids:
            raise AssertionError(f"pair {number}: conversation from another split")
        if pair["prompt"][-1]["role"] != "user":
            raise AssertionError(f"pair {number}: prompt does not end with a user turn")


def train_threshold(train_stats: str | os.PathLike | None, settings: dict) -> tuple[float | None, str | None]:
    """(threshold, "train") from the train split's statistics, which valid and test pairs are
    filtered with (src/dpo_ps.py of the EmPO code); (None, None) for the train split itself.
    The statistics must come from the same filter (measure and percentile) as empo.pairs now."""
    if not train_stats:
        return None, None
    train_filter = read_json(train_stats)["length_filter"]
    measure, percentile = settings.get("length_measure", "reply"), settings.get("length_percentile")
    if (train_filter.get("measure"), train_filter.get("percentile")) != (measure, percentile):
        raise InputError(f"{train_stats}: its length filter ({train_filter.get('measure')}, "
                         f"p{train_filter.get('percentile')}) is not empo.pairs' ({measure}, p{percentile}); "
                         f"rerun the train split's empo_pairs")
    return train_filter.get("threshold"), "train"

