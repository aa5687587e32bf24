"""Story pairs as the similarity methods read them: the text each method sees, the seeded test
subset, the split note, and scores against single annotators."""

from __future__ import annotations

import os

import pandas as pd

from empathy_workflow.core.io import InputError, read_csv, read_json, require_numeric
from empathy_workflow.similarity import protocol

SCALE = (1.0, 4.0)


ENCODER_METHODS = ("zeroshot", "contrastive")


LLM_METHODS = ("llm_zeroshot", "llm_sft")


LOSSES = ("mnrl", "cosine", "cosent", "angle", "online_contrastive")


def load_pairs(path: str | os.PathLike, text: str) -> tuple[pd.DataFrame, str]:
    """A pairs table -> (frame with pair_id, text_a, text_b, gold, used text, "summary"/"story").

    `text` is "summary" or "story". A table without summaries (the Urdu pairs) falls back to the
    stories; the returned name says which text was used, so metrics.json can report it.
    """
    if text not in ("summary", "story"):
        raise InputError(f"similarity.text: {text!r} is not 'summary' or 'story'")
    frame = read_csv(path, required=("pair_id", "story_a", "story_b", "empathy"), what="pairs table")
    used = text
    if text == "summary" and not {"summary_a", "summary_b"} <= set(frame.columns):
        used = "story"  # e.g. the Urdu pairs have no summaries
    columns = ("summary_a", "summary_b") if used == "summary" else ("story_a", "story_b")
    for column in columns:
        empty = frame[column].isna() | (frame[column].astype(str).str.strip() == "")
        if empty.any():
            row = int(empty.to_numpy().nonzero()[0][0])
            raise InputError(f"{path}: row {row + 2}, column {column!r}: empty text")
    if frame["pair_id"].duplicated().any():
        duplicate = frame["pair_id"][frame["pair_id"].duplicated()].iloc[0]
        raise InputError(f"{path}: column 'pair_id': {duplicate!r} occurs more than once")
    gold = require_numeric(frame, "empathy", path, low=SCALE[0], high=SCALE[1])
    # The authors' preprocessing of every text (newlines to spaces, ends stripped).
    result = pd.DataFrame({
        "pair_id": frame["pair_id"].astype(str),
        "text_a": frame[columns[0]].astype(str).map(protocol.normalize_text),
        "text_b": frame[columns[1]].astype(str).map(protocol.normalize_text),
        "gold": gold.astype(float),
    })
    return result, used


def sample_test_pairs(test: pd.DataFrame, max_pairs: int | None, seed: int) -> pd.DataFrame:
    """A seeded subset of the test pairs (similarity.max_test_pairs): it depends only on the table and
    the seed, so every method scores the same pairs and the methods stay comparable."""
    if not max_pairs or len(test) <= max_pairs:
        return test
    return test.sample(n=int(max_pairs), random_state=seed).sort_index()


def split_note(test_set: str, info_path: str | os.PathLike | None, scored: int | None = None,
               total: int | None = None) -> str:
    """What the reader must know about where the test pairs (and the training pairs) come from,
    including how many of them were scored when a seeded subset was taken."""
    info = read_json(info_path) if info_path else {}
    resplit = bool(info.get("resplit"))
    training = ("EmpathicStories train, re-split (seeded re-split of the shipped dev+test pairs; "
                "not the official split)" if resplit else "EmpathicStories official train split")
    subset = scored is not None and total is not None and scored < total
    if test_set == "urdu_stories":
        pairs = f"a seeded subset of {scored} of the {total} pairs" if subset else "all pairs"
        return f"Urdu story pairs (test only, {pairs}); models trained on {training}"
    if resplit:
        seed = info.get("seed")
        note = (f"re-split: EmpathicStories test part of a seeded re-split (seed {seed}) of the shipped "
                f"dev+test pairs; not comparable with the paper's official test set")
    else:
        note = "EmpathicStories official test split"
    return note + (f"; scored on a seeded subset of {scored} of its {total} pairs" if subset else "")


def per_annotator_scores(predictions: pd.DataFrame, ratings_path) -> dict:
    """Pearson/Spearman of the predictions against each annotator's empathy rating (Urdu pairs):
    sets the model beside single humans and the human ceiling of the agreement stage."""
    from empathy_workflow.similarity.metrics import similarity_metrics

    ratings = read_csv(ratings_path, required=("item_id", "annotator", "aspect", "score"), what="ratings table")
    ratings = ratings[ratings.aspect == "empathy"]
    scores = {}
    for annotator, group in ratings.groupby("annotator", sort=True):
        merged = predictions.merge(group[["item_id", "score"]], left_on="pair_id", right_on="item_id")
        merged = merged.dropna(subset=["score"])
        if len(merged) < 3:
            continue
        values = similarity_metrics(merged.score.to_numpy(), merged.predicted.to_numpy())
        scores[str(annotator)] = {"n": values["n"], "pearson": values["pearson"], "spearman": values["spearman"]}
    return scores
