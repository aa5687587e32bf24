"""Text metrics of EmPO replies: tokenization, diversity (distinct-n, entropy, NIDF
specificity) and emotion (VAD and intensity) differences from the references."""

from __future__ import annotations

import logging
import math
import os
import re
from collections import Counter
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from empathy_workflow.core.io import InputError, read_jsonl

logger = logging.getLogger(__name__)


VAD_DIMENSIONS = ("valence", "arousal", "dominance")


EMOTION_KEYS = ("v", "a", "d", "intensity")


_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens ("I'm sad." -> ["i'm", "sad", "."])."""
    return _TOKEN.findall(str(text).lower())


def read_generations(path: str | os.PathLike) -> pd.DataFrame:
    """One row per generation: conv_id, item (occurrence of that conv_id), context (the last
    seeker turn), reference, generation. Raises InputError naming the line on a bad record."""
    records = read_jsonl(path)
    if not records:
        raise InputError(f"{path}: no generations")
    rows = []
    seen: Counter = Counter()
    for number, record in enumerate(records, start=1):
        where = f"{path}: line {number}"
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected a JSON object")
        missing = [key for key in ("conv_id", "prompt", "reference", "generation") if key not in record]
        if missing:
            raise InputError(f"{where}: missing key(s) {', '.join(missing)}")
        prompt = record["prompt"]
        if not isinstance(prompt, list) or not prompt or not all(
                isinstance(m, dict) and "role" in m and "content" in m for m in prompt):
            raise InputError(f"{where}: 'prompt' must be a non-empty list of {{role, content}} messages")
        if prompt[-1]["role"] != "user":
            raise InputError(f"{where}: the prompt's last message has role {prompt[-1]['role']!r}, "
                             f"expected 'user' (the seeker turn)")
        for key in ("reference", "generation"):
            if not isinstance(record[key], str):
                raise InputError(f"{where}: {key!r} must be a string, got {type(record[key]).__name__}")
        conv_id = str(record["conv_id"])
        rows.append({"conv_id": conv_id, "item": seen[conv_id], "context": str(prompt[-1]["content"]),
                     "reference": record["reference"], "generation": record["generation"]})
        seen[conv_id] += 1
    return pd.DataFrame(rows)


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(token_lists: Iterable[Sequence[str]], n: int) -> float:
    """Distinct n-grams over all n-grams in the corpus (0 when there is none)."""
    counts = Counter(g for tokens in token_lists for g in ngrams(tokens, n))
    total = sum(counts.values())
    return len(counts) / total if total else 0.0


def ngram_entropy(token_lists: Iterable[Sequence[str]], n: int) -> float:
    """Shannon entropy (bits) of the corpus' n-gram frequency distribution."""
    counts = Counter(g for tokens in token_lists for g in ngrams(tokens, n))
    total = sum(counts.values())
    if not total:
        return 0.0
    p = np.array(list(counts.values()), dtype=float) / total
    return float(-(p * np.log2(p)).sum())


def document_frequencies(texts: Iterable[str]) -> Counter:
    """In how many texts each token occurs (once per text)."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(set(tokenize(text)))
    return counts


def nidf_table(word_counts: Mapping[str, int]) -> dict[str, float]:
    """NIDF(w) = (log max_c - log c_w) / (log max_c - log min_c): 0 for the commonest word, 1 for
    the rarest."""
    if not word_counts:
        raise ValueError("no word counts to build NIDF from")
    if min(word_counts.values()) <= 0:
        raise ValueError("word counts must be positive")
    low, high = math.log(min(word_counts.values())), math.log(max(word_counts.values()))
    span = high - low
    if span == 0:
        return {w: 0.0 for w in word_counts}
    return {w: (high - math.log(c)) / span for w, c in word_counts.items()}


def specificity(tokens: Sequence[str], table: Mapping[str, float]) -> float:
    """Mean NIDF of a response's distinct tokens; unseen tokens count 1; an empty response 0."""
    distinct = set(tokens)
    if not distinct:
        return 0.0
    return float(np.mean([table.get(t, 1.0) for t in sorted(distinct)]))


def diversity(texts: Sequence[str], table: Mapping[str, float]) -> tuple[dict, pd.DataFrame]:
    """Corpus-level diversity and per-item length and specificity."""
    token_lists = [tokenize(t) for t in texts]
    first = [tokens[0] for tokens in token_lists if tokens]
    summary = {f"distinct_{n}": distinct_n(token_lists, n) for n in (1, 2, 3)}
    summary.update({f"entropy_{n}": ngram_entropy(token_lists, n) for n in (1, 2, 3)})
    lengths = np.array([len(tokens) for tokens in token_lists], dtype=float)
    nidf = np.array([specificity(tokens, table) for tokens in token_lists])
    summary.update({
        "mean_length": float(lengths.mean()),
        "unique_first_words": len(set(first)),
        "unique_first_words_ratio": len(set(first)) / len(texts) if texts else 0.0,
        "nidf": float(nidf.mean()),
        "empty_responses": int((lengths == 0).sum()),
    })
    per_item = pd.DataFrame({"length": lengths, "nidf": nidf})
    return summary, per_item


def emotion_maxima(tokens: Sequence[str], vad: Mapping[str, Sequence[float]],
                   intensity: Mapping[str, float]) -> dict[str, float]:
    """Maximum V, A, D and intensity over the tokens; a token not in a lexicon counts 0."""
    values = [vad[t] for t in tokens if t in vad]
    maxima = {key: max([0.0] + [float(v[i]) for v in values]) for i, key in enumerate(("v", "a", "d"))}
    maxima["intensity"] = max([0.0] + [float(intensity[t]) for t in tokens if t in intensity])
    return maxima


def emotion_differences(contexts: Sequence[str], responses: Sequence[str], vad, intensity
                        ) -> tuple[dict, pd.DataFrame]:
    """Per item: max over the context minus max over the response, for V, A, D and intensity.
    Summary: the signed mean (EmPO's `diff_max_*`), and the mean and std of the absolute value."""
    rows = []
    for context, response in zip(contexts, responses, strict=True):
        c = emotion_maxima(tokenize(context), vad, intensity)
        r = emotion_maxima(tokenize(response), vad, intensity)
        rows.append({f"diff_max_{k}": c[k] - r[k] for k in EMOTION_KEYS})
    per_item = pd.DataFrame(rows, columns=[f"diff_max_{k}" for k in EMOTION_KEYS])
    summary = {}
    for key in EMOTION_KEYS:
        diff = per_item[f"diff_max_{key}"].to_numpy(dtype=float)
        summary[f"diff_max_{key}"] = float(diff.mean())
        summary[f"abs_diff_max_{key}"] = float(np.abs(diff).mean())
        summary[f"abs_diff_max_{key}_std"] = float(np.abs(diff).std(ddof=1)) if len(diff) > 1 else 0.0
    per_item = per_item.assign(**{f"abs_diff_max_{k}": per_item[f"diff_max_{k}"].abs() for k in EMOTION_KEYS})
    return summary, per_item
