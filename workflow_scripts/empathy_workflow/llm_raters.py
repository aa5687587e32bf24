"""Raters behind an OpenAI-compatible endpoint (llm_client.py): the similarity paper's zero-shot
prompt (similarity method `llm_api`) and an LLM judge of EmPO replies on the human-evaluation
dimensions.

Prompt and answer handling of `llm_api` follow the authors' zero-shot LLM rating,
yuxiaw/Empathic-Similarity, Notebooks/llm_rate.ipynb at commit
6ea161a0f2330a2bd1bf0b4a24c9c0ba835cc43b ("LLaMA 3 using its original prompt"): their system
prompt, their `empathic_similarity_prompt` on the summaries, free generation, then (parse_with_llm)
their second request `parse_prompt` that asks the same model to extract the score from its own
analysis, and the first number 1-4 of that answer as the score. Two deliberate differences, both
recorded in metrics.json: a number counts only when it stands alone and lies on the scale (the
notebook's `re.findall(r'[1-4]')` also takes the "1" of "10"), and an answer without one is counted
and logged as unparsable instead of failing the notebook's `score[0]`; and each pair is asked in
both story orders and the two parsed scores are averaged (the notebook asks A-B only), as the
fine-tuned LLM here is trained and scored in both orders.
"""

from __future__ import annotations

import logging
import re
from typing import Sequence

import numpy as np
import pandas as pd

from .io import InputError, read_csv
from .llm_client import ChatClient

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = "You are a helpful assistant, can conduct great emotional analysis"
SIMILARITY_PROMPT = (
    'Rate the extent to which you agree with the statement "the narrators of the two stories would '
    'empathize with each other." We define empathy as feeling, understanding, and relating to what '
    "another person is experiencing. Note that it is possible to have empathy even without sharing the "
    "exact same experience or circumstance. Importantly, for two stories to be empathetically similar, "
    "both narrators should be able to empathize with each other (if narrator A\u2019s story was shared "
    "in response to narrator B\u2019s story, narrator B would empathize with narrator A and vice versa). "
    "Give your answer on a scale from 1-4 (1-not at all, 2-not so much, 3-very much, 4-extremely)\n\n"
    "Narrative A: {story_a}\n\nNarrative B: {story_b}\n\nRate in a scale of 1-4.\nAnswer:"
)
PARSE_PROMPT = (
    "This is a rater's analysis, please output the score this rater give (1-not at all, 2-not so much, "
    "3-very much, 4-extremely). \n\nAnalysis: {response}\n\nONLY OUTPUT THE SCORE."
)
JUDGE_SYSTEM_PROMPT = "You are an expert judge of empathetic conversations."
JUDGE_PROMPT = (
    "Below is what a person wrote and the reply of a conversational assistant.\n\n"
    "Person: {prompt}\n\nReply: {reply}\n\n"
    "Rate the reply on {label}, on a scale from {low:g} (lowest) to {high:g} (highest). "
    "Answer with the number only.\nAnswer:"
)
NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w]|\.\d)")


def parse_score(answer: str, low: float, high: float) -> float | None:
    """The first stand-alone number of `answer` that lies on [low, high]; None when there is none."""
    for match in NUMBER.finditer(answer or ""):
        value = float(match.group(1))
        if low <= value <= high:
            return value
    return None


def request_params(settings: dict) -> dict:
    """Sampling parameters sent with every request (part of the cache key)."""
    params = {"temperature": float(settings.get("temperature", 0.0)), "max_tokens": int(settings.get("max_tokens", 512))}
    if settings.get("seed") is not None:
        params["seed"] = int(settings["seed"])
    return params


def ask_scores(client: ChatClient, conversations: Sequence[list[dict]], low: float, high: float,
               settings: dict) -> tuple[list[float | None], list[str]]:
    """Scores (None = unparsable) and the raw answers; with parse_with_llm each answer goes through
    the authors' second, score-extracting request first."""
    params = request_params(settings)
    answers = client.complete_many(conversations, params)
    texts = answers
    if settings.get("parse_with_llm", False):
        parse_requests = [[{"role": "system", "content": SYSTEM_PROMPT},
                           {"role": "user", "content": PARSE_PROMPT.format(response=answer)}] for answer in answers]
        texts = client.complete_many(parse_requests, params)
    return [parse_score(text, low, high) for text in texts], list(texts)


def log_unparsable(what: str, answers: Sequence[str], scores: Sequence[float | None], limit: int = 5) -> int:
    """Count unparsable answers and log a few of them (never a silent zero)."""
    bad = [answer for answer, score in zip(answers, scores) if score is None]
    if bad:
        logger.warning("%s: %d of %d answers hold no score on the scale; left out. Examples: %s", what,
                       len(bad), len(answers), [answer[:120] for answer in bad[:limit]])
    return len(bad)


def similarity_messages(text_a: str, text_b: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": SIMILARITY_PROMPT.format(story_a=text_a.strip(), story_b=text_b.strip())}]


def api_similarity_predictions(test: pd.DataFrame, settings: dict) -> tuple[pd.DataFrame, dict]:
    """Similarity method llm_api: both story orders per pair, the parsed scores averaged."""
    client = ChatClient.from_settings(settings, "similarity.llm_api")
    both_orders = bool(settings.get("both_orders", True))
    conversations = [similarity_messages(a, b) for a, b in zip(test.text_a, test.text_b)]
    if both_orders:
        conversations += [similarity_messages(b, a) for a, b in zip(test.text_a, test.text_b)]
    logger.info("asking %s for %d answers (%d pairs, %s)", client.endpoint.describe(), len(conversations),
                len(test), "both story orders" if both_orders else "A-B order only")
    scores, answers = ask_scores(client, conversations, 1.0, 4.0, settings)
    unparsable = log_unparsable(f"similarity.llm_api ({client.endpoint.model})", answers, scores)
    n = len(test)
    frame = pd.DataFrame({"pair_id": test.pair_id.to_numpy(), "gold": test.gold.to_numpy()})
    frame["score_ab"] = np.array([np.nan if s is None else s for s in scores[:n]], dtype=float)
    frame["answer_ab"] = answers[:n]
    if both_orders:
        frame["score_ba"] = np.array([np.nan if s is None else s for s in scores[n:]], dtype=float)
        frame["answer_ba"] = answers[n:]
    order_columns = ["score_ab", "score_ba"] if both_orders else ["score_ab"]
    frame["predicted"] = frame[order_columns].mean(axis=1, skipna=True)  # NaN only when no order parsed
    unscored = int(frame.predicted.isna().sum())
    if unscored == n:
        raise InputError(f"similarity.llm_api: none of the {len(answers)} answers of {client.endpoint.describe()} "
                         f"holds a score from 1 to 4 (e.g. {answers[0][:200]!r}); see the job log")
    details = {
        "scoring": "the authors' zero-shot prompt (yuxiaw/Empathic-Similarity Notebooks/llm_rate.ipynb @ 6ea161a0); "
                   "first stand-alone number 1-4 of the answer" + (" after the authors' parse request"
                                                                   if settings.get("parse_with_llm") else "")
                   + ("; both story orders averaged" if both_orders else "; story order A-B only"),
        "endpoint": {"base_url": client.endpoint.base_url, "model": client.endpoint.model,
                     "api_key_env": client.endpoint.api_key_env},
        "answers": len(answers),
        "unparsable_answers": unparsable,
        "pairs_without_score": unscored,
        "requests": dict(client.stats),
    }
    logger.info("llm_api: %d answers, %d unparsable, %d pairs without a score; requests %s",
                len(answers), unparsable, unscored, client.stats)
    return frame, details


# ---------------------------------------------------------------------------------------------
# LLM judge of EmPO replies


def load_items(path) -> pd.DataFrame:
    items = read_csv(path, required=("item_id", "conv_id", "prompt", "reply"), what="human-evaluation items")
    if items.item_id.duplicated().any():
        raise InputError(f"{path}: column 'item_id': {items.item_id[items.item_id.duplicated()].iloc[0]!r} "
                         "occurs more than once")
    for column in ("prompt", "reply"):
        if items[column].isna().any():
            raise InputError(f"{path}: row {int(items[column].isna().to_numpy().nonzero()[0][0]) + 2}, "
                             f"column {column!r}: empty")
    return items


def check_dimensions(dimensions: dict) -> None:
    if not dimensions:
        raise InputError("empo.human_eval.dimensions: no rating dimension")
    for name, spec in dimensions.items():
        if not spec.get("min", 0) < spec.get("max", 0):
            raise InputError(f"empo.human_eval.dimensions.{name}: min must be below max")


def judge_ratings(items: pd.DataFrame, dimensions: dict, settings: dict,
                  annotator: str = "llm_judge") -> tuple[pd.DataFrame, dict]:
    """One request per item and dimension -> long ratings (item_id, annotator, dimension, score);
    unparsable answers are counted per dimension, logged and left out."""
    check_dimensions(dimensions)
    client = ChatClient.from_settings(settings, "empo.human_eval.llm_judge")
    rows, unparsable = [], {}
    for name, spec in dimensions.items():
        low, high = float(spec["min"]), float(spec["max"])
        conversations = [
            [{"role": "system", "content": JUDGE_SYSTEM_PROMPT},
             {"role": "user", "content": JUDGE_PROMPT.format(prompt=str(p).strip(), reply=str(r).strip(),
                                                             label=spec.get("label", name), low=low, high=high)}]
            for p, r in zip(items.prompt, items.reply)
        ]
        scores, answers = ask_scores(client, conversations, low, high, settings)
        unparsable[name] = log_unparsable(f"llm judge, dimension {name}", answers, scores)
        rows += [(item, annotator, name, score) for item, score in zip(items.item_id, scores) if score is not None]
    ratings = pd.DataFrame(rows, columns=["item_id", "annotator", "dimension", "score"])
    details = {
        "endpoint": {"base_url": client.endpoint.base_url, "model": client.endpoint.model,
                     "api_key_env": client.endpoint.api_key_env},
        "items": len(items),
        "dimensions": list(dimensions),
        "ratings": len(ratings),
        "unparsable_answers": unparsable,
        "requests": dict(client.stats),
    }
    logger.info("llm judge: %d ratings of %d items; unparsable per dimension %s; requests %s",
                len(ratings), len(items), unparsable, client.stats)
    return ratings, details
