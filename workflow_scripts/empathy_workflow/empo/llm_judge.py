"""An LLM judge of EmPO replies, on the human evaluation's dimensions and scales, through any
OpenAI-compatible endpoint."""

from __future__ import annotations

import logging

import pandas as pd

from empathy_workflow.core.io import InputError, read_csv
from empathy_workflow.core.llm_client import ChatClient
from empathy_workflow.core.llm_scoring import ask_scores, log_unparsable

logger = logging.getLogger(__name__)


JUDGE_SYSTEM_PROMPT = "You are an expert judge of empathetic conversations."


JUDGE_PROMPT = (
    "Below is what a person wrote and the reply of a conversational assistant.\n\n"
    "Person: {prompt}\n\nReply: {reply}\n\n"
    "Rate the reply on {label}, on a scale from {low:g} (lowest) to {high:g} (highest). "
    "Answer with the number only.\nAnswer:"
)


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
