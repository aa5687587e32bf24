"""The llm_api similarity method: a model behind an OpenAI-compatible endpoint prompted zero-shot
with the paper's prompt, its answers parsed to scores."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from empathy_workflow.core.io import InputError
from empathy_workflow.core.llm_client import ChatClient
from empathy_workflow.core.llm_scoring import SYSTEM_PROMPT, ask_scores, log_unparsable

logger = logging.getLogger(__name__)


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
