"""Scores from an LLM behind an OpenAI-compatible endpoint: ask, parse the number in the answer
(with a second parse prompt when needed) and log what could not be parsed. Used by the
similarity llm_api method and EmPO's LLM judge."""

from __future__ import annotations

import logging
import re
from typing import Sequence

from empathy_workflow.core.llm_client import ChatClient

logger = logging.getLogger(__name__)


SYSTEM_PROMPT = "You are a helpful assistant, can conduct great emotional analysis"


PARSE_PROMPT = (
    "This is a rater's analysis, please output the score this rater give (1-not at all, 2-not so much, "
    "3-very much, 4-extremely). \n\nAnalysis: {response}\n\nONLY OUTPUT THE SCORE."
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
