"""The authors' procedure for empathic similarity (Manzoor et al. 2024), written once.

Everything here follows the authors' public code; docs/fidelity.md cites file and commit for each
item and says where the workflow deviates:
- yuxiaw/Empathic-Similarity @ 6ea161a (Notebooks/triplet_loss_exps.ipynb, paired_loss_exps.ipynb,
  eval_llama3.ipynb, scripts/) and @ 62a21af (src/sft_llama3.py, src/llm_eval_openllm.py).

- Text: newlines replaced by spaces, ends stripped (`normalize_text`), for every model.
- Encoders: the raw cosine is the score; on the 1-4 scale it is 3*cos+1 (the notebooks'
  "01_continue" recovery), so a pair is positive when 3*cos+1 > 2.5 (`cosine_to_scale`).
- Contrastive losses with the notebooks' parameters (`LOSS_PARAMETERS`); MNRL triplets built as
  `triplet_loss_exps.ipynb` builds them (`build_triplets`).
- LLMs: the "optimized" system prompt and the `### Narrative A / B / ### Similarity Score` user
  message, verbatim (`SYSTEM_PROMPT`, `USER_TEMPLATE`, `prompt_messages`). Zero-shot: a guided
  choice over `ZEROSHOT_ANSWERS` at temperature 0, in both story orders, averaged
  (`guided_choice`, `both_orders_mean`). Fine-tuned: trained on str(float(gold)) completions
  (`sft_completion`), scored by greedy decoding and parsing the number (`parse_score`).
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd

from empathy_workflow.core.io import InputError

# src/llm_eval_openllm.py and src/sft_llama3.py (`optimized_similarity_system_prompt`), verbatim,
# curly apostrophes included. The llm_api method should use this constant too.
SYSTEM_PROMPT = (
    "Rate the extent to which you agree with the statement \"the narrators of the two stories would "
    "empathize with each other.\" We define empathy as feeling, understanding, and relating to what "
    "another person is experiencing. Note that it is possible to have empathy even without sharing the "
    "exact same experience or circumstance. Importantly, for two stories to be empathetically similar, "
    "both narrators should be able to empathize with each other (if narrator A\u2019s story was shared in "
    "response to narrator B\u2019s story, narrator B would empathize with narrator A and vice versa). Give "
    "your answer on a scale from 1-4 (1-not at all, 2-not so much, 3-very much, 4-extremely), with 0.5 "
    "increments in each level between 1-4 are allowed. Please only return the score without any "
    "explanation."
)


# `optimized_similarity_user_prompt`, verbatim; the message is the formatted text stripped (as
# sft_llama3.py does; Llama-3's chat template trims message content anyway).
USER_TEMPLATE = "\n### Narrative A:\n{story_a}\n\n### Narrative B:\n{story_b}\n\n### Similarity Score:\n"


# llm_eval_openllm.py, prompt "optimized": vLLM guided_choice over these strings, temperature 0.
ZEROSHOT_ANSWERS = ("1", "1.5", "2", "2.5", "3", "3.5", "4")


# sft_llama3.py trains on str(score) of the gold mean (multiples of 0.5 in EmpathicStories): "3.0".
SFT_ANSWERS = ("1.0", "1.5", "2.0", "2.5", "3.0", "3.5", "4.0")


POSITIVE_ABOVE = 2.5  # every notebook: positive class is score > 2.5 on the 1-4 scale


# Generation in eval_llama3.ipynb: GenerationConfig(max_length=2048, do_sample=False), prompt included.
AUTHORS_GENERATION_MAX_LENGTH = 2048


# The notebooks' loss objects: MultipleNegativesRankingLoss(model, scale=1.0) (triplet notebook);
# CosineSimilarityLoss(model), CoSENTLoss(model, scale=1.0), AnglELoss(model, scale=1.0),
# OnlineContrastiveLoss(model, margin=0.8) (paired notebook). `scale` and `margin` come from
# similarity.contrastive.{scale,margin}; this says which loss takes which.
LOSS_PARAMETERS = {"mnrl": ("scale",), "cosine": (), "cosent": ("scale",), "angle": ("scale",),
                   "online_contrastive": ("margin",)}


def normalize_text(text: str) -> str:
    """`text_preprocess = lambda x: x.strip().replace('\\n', ' ')`, as in every notebook and script."""
    return str(text).strip().replace("\n", " ")


def cosine_to_scale(cosine) -> np.ndarray:
    """The notebooks' score recovery (x * 3) + 1: cosine (trained towards (gold-1)/3) -> 1-4 scale.
    Not clipped, as in the notebooks; the classification threshold 2.5 is cosine 0.5."""
    return np.asarray(cosine, dtype=float) * 3.0 + 1.0


def loss_arguments(loss: str, settings: dict) -> dict:
    """Keyword arguments of the loss object: the notebooks' scale / margin where the loss takes one."""
    if loss not in LOSS_PARAMETERS:
        raise InputError(f"similarity.contrastive.loss: {loss!r} is not one of {', '.join(LOSS_PARAMETERS)}")
    arguments = {}
    for name in LOSS_PARAMETERS[loss]:
        if settings.get(name) is None:
            raise InputError(f"similarity.contrastive.{name}: required for loss {loss!r}")
        arguments[name] = float(settings[name])
    return arguments


def build_triplets(texts_a: Sequence[str], texts_b: Sequence[str], gold: Sequence[float],
                   seed: int) -> tuple[pd.DataFrame, dict]:
    """(anchor, positive, negative) triplets as `triplet_loss_exps.ipynb` builds them.

    Threshold: the median training score. Every story gets the sets of its partners in pairs above
    the median ("positive") and at or below it ("negative"). Then, per training pair (s1, s2):
    - above the median: a hard negative drawn from the negative partners of s1 or s2 (all stories
      when neither has one); triplets (s1, s2, neg) and (s2, s1, neg);
    - at or below: a positive partner of s1 drawn at random; triplets (s1, pos, s2) and
      (pos, s1, s2); when s1 has none, the single triplet (s1, s1, s2).
    The notebook draws with an unseeded `random.choice`; here a seeded generator over sorted sets.
    """
    gold = np.asarray(gold, dtype=float)
    threshold = float(np.median(gold))
    base: dict[str, dict[str, set]] = {}
    for a, b, score in zip(texts_a, texts_b, gold):
        for story in (a, b):
            base.setdefault(story, {"positive": set(), "negative": set()})
        side = "positive" if score > threshold else "negative"
        base[a][side].add(b)
        base[b][side].add(a)
    rng = np.random.default_rng(seed)

    def draw(candidates) -> str:
        ordered = sorted(candidates)
        return ordered[int(rng.integers(len(ordered)))]

    rows, counts = [], {"above_median_pairs": 0, "below_median_pairs": 0, "random_negatives": 0,
                        "self_positives": 0}
    for a, b, score in zip(texts_a, texts_b, gold):
        if score > threshold:
            counts["above_median_pairs"] += 1
            hard = base[a]["negative"] | base[b]["negative"]
            if not hard:
                counts["random_negatives"] += 1
                hard = set(base)
            negative = draw(hard)
            rows += [(a, b, negative), (b, a, negative)]
        else:
            counts["below_median_pairs"] += 1
            positives = base[a]["positive"]
            if positives:
                positive = draw(positives)
                rows += [(a, positive, b), (positive, a, b)]
            else:
                counts["self_positives"] += 1
                rows.append((a, a, b))
    if not rows:
        raise InputError("training split: no pairs to build triplets from")
    frame = pd.DataFrame(rows, columns=["anchor", "positive", "negative"])
    return frame, {"median": threshold, "triplets": len(frame), **counts}


def user_message(text_a: str, text_b: str) -> str:
    return USER_TEMPLATE.format(story_a=text_a, story_b=text_b).strip()


def prompt_messages(text_a: str, text_b: str) -> list[dict]:
    """System + user messages of the authors' "optimized" prompt (zero-shot and fine-tuning alike)."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user_message(text_a, text_b)}]


def sft_completion(gold: float) -> str:
    """The assistant turn the authors train on: str(float) of the gold mean, e.g. "3.0", "2.5".
    Gold means off the 0.5 grid (none in EmpathicStories) go to the nearest allowed answer."""
    values = np.array([float(answer) for answer in SFT_ANSWERS])
    index = int(np.argmin(np.abs(values - float(gold)) - 1e-9 * values))  # ties round up
    return SFT_ANSWERS[index]


_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def parse_score(response: str) -> tuple[float | None, str]:
    """The number in a generated answer, and how it was found.

    eval_llama3.ipynb takes `decoded.split('\\n')[-1].split('<')[0].split()` and float()s it ("authors").
    That raises on anything else; here a response the rule cannot read falls back to the first
    number anywhere in it ("first_number"), and to None when there is none ("unparsed")."""
    last_line = response.split("\n")[-1].split("<")[0].split()
    if last_line:
        try:
            return float(last_line[0]), "authors"
        except ValueError:
            pass
    match = _NUMBER.search(response.split("<")[0]) or _NUMBER.search(response)
    if match:
        return float(match.group()), "first_number"
    return None, "unparsed"


def guided_choice(token_logprobs: np.ndarray, suffixes: Sequence[Sequence[int]]) -> np.ndarray:
    """Index of the answer a guided-choice decoder picks at temperature 0, per prompt.

    `suffixes[j]` is answer j's token ids (ending in end-of-turn, so none is a prefix of another);
    `token_logprobs[i, j, k]` is the model's log-probability of suffixes[j][k] after prompt i and
    suffixes[j][:k]. Like vLLM's guided decoding, it walks the answers' token tree greedily: at each
    step it takes the allowed next token with the highest log-probability (ties: the first answer).
    """
    chosen = np.zeros(token_logprobs.shape[0], dtype=int)
    for i in range(token_logprobs.shape[0]):
        candidates = list(range(len(suffixes)))
        step = 0
        while len(candidates) > 1:
            best: dict[int, float] = {}
            for j in candidates:
                token = suffixes[j][step]
                if token not in best or token_logprobs[i, j, step] > best[token]:
                    best[token] = token_logprobs[i, j, step]
            winner = max(best, key=lambda token: best[token])
            candidates = [j for j in candidates if suffixes[j][step] == winner]
            step += 1
        chosen[i] = candidates[0]
    return chosen


def both_orders_mean(forward, reverse) -> np.ndarray:
    """llm_eval_openllm.py's "mean" score: (score(A, B) + score(B, A)) / 2 per pair."""
    forward, reverse = np.asarray(forward, dtype=float), np.asarray(reverse, dtype=float)
    if forward.shape != reverse.shape:
        raise ValueError(f"the two story orders scored different numbers of pairs: {forward.shape} vs {reverse.shape}")
    return (forward + reverse) / 2.0
