"""Similarity datasets: EmpathicStories (Shen et al. 2023) pairs with their official or
re-split splits, and the Roman-Urdu story pairs with per-annotator ratings."""

from __future__ import annotations

import os
from typing import Mapping

import pandas as pd

from empathy_workflow.core.dataset_sources import (
    DOWNLOAD_DIR,
    _require_text,
    as_released_or_resplit,
    fetch,
)
from empathy_workflow.core.io import InputError, read_csv, require_numeric

SCALE = (1.0, 4.0)  # similarity ratings (EmpathicStories, Urdu): 1-4 in 0.5 steps


POSITIVE_THRESHOLD = 2.5  # label 1 means "similar": score > 2.5 (the papers' binarisation)


ES_SCORES = {
    "empathy": "similarity_empathy_human_AGG",
    "event": "similarity_event_human_AGG",
    "emotion": "similarity_emotion_human_AGG",
    "moral": "similarity_moral_human_AGG",
}


ES_TEXT = {"story_a": "story_A", "story_b": "story_B", "summary_a": "story_A_summary", "summary_b": "story_B_summary"}


ES_GPT = "Empathic Similarity (gpt3.5)"


ES_COLUMNS = ["pair_id", "source_split", "story_a", "story_b", "summary_a", "summary_b",
              *ES_SCORES, "gpt_score", "label"]


def load_empathic_stories(path: str | os.PathLike, split: str) -> pd.DataFrame:
    """One split's pairs: pair_id "SPLIT-INDEX", texts, the four human scores on [1, 4], the
    GPT-3.5 score as released, label = empathy > 2.5."""
    frame = read_csv(path, required=[*ES_TEXT.values(), *ES_SCORES.values(), ES_GPT],
                     what="EmpathicStories pairs CSV", keep_default_na=False, dtype=str)
    first = frame.columns[0]
    if first == "" or first.startswith("Unnamed:"):
        index = require_numeric(frame, first, path)
        if (index != index.round()).any() or index.duplicated().any():
            row = int(((index != index.round()) | index.duplicated()).to_numpy().nonzero()[0][0])
            raise InputError(f"{path}: row {row + 2}, first (index) column: {frame[first].iloc[row]!r} "
                             f"is not a unique integer index")
        index = index.astype(int)
    else:  # no index column (e.g. another release): the row position is the id
        index = pd.Series(range(len(frame)))
    out = pd.DataFrame({"pair_id": [f"{split}-{i}" for i in index], "source_split": split})
    for name, column in ES_TEXT.items():
        out[name] = _require_text(frame, column, path).to_numpy()
    for name, column in ES_SCORES.items():
        out[name] = require_numeric(frame, column, path, low=SCALE[0], high=SCALE[1]).to_numpy()
    out["gpt_score"] = require_numeric(frame, ES_GPT, path).astype(float).to_numpy()  # as released (1-5)
    out["label"] = (out["empathy"] > POSITIVE_THRESHOLD).astype(int)
    return out[ES_COLUMNS]


def prepare_empathic_stories(sources: Mapping[str, str | None], settings: Mapping, seed: int,
                             download_dir: str | os.PathLike = DOWNLOAD_DIR) -> tuple[dict[str, pd.DataFrame], dict]:
    """The train/dev/test tables and split_info. All three sources given: used as released.
    Any of them null: the given ones are pooled and re-split with settings['resplit'] and `seed`."""
    splits = ("train", "dev", "test")
    frames = {s: load_empathic_stories(fetch(sources[s], download_dir), s) for s in splits if sources.get(s)}
    if not frames:
        raise InputError("datasets.empathic_stories: no split is given")
    pool = pd.concat(list(frames.values()), ignore_index=True)
    out, info = as_released_or_resplit(
        "empathic_stories", frames, splits, settings, seed, "pairs",
        pool_ids=lambda: pool["pair_id"],
        take=lambda parts: {s: pool[pool["pair_id"].isin(set(ids))].reset_index(drop=True)
                            for s, ids in parts.items()},
        describe=lambda pooled, fractions: (
            f"RE-SPLIT: the official EmpathicStories train split is not available, so the released {pooled} "
            f"were pooled and randomly re-split (seed {seed}, fractions {fractions}). Scores on this test "
            "split are not comparable with the paper's test set."))
    info["counts"] = {s: len(out[s]) for s in splits}
    info["positives"] = {s: int(out[s]["label"].sum()) for s in splits}
    return out, info


URDU_ASPECTS = ("event", "emotion", "empathy")


URDU_AVERAGES = {"event": "Event_AVG", "emotion": "Emo_AVG", "empathy": "Emp_AVG"}


URDU_AVERAGE_TOLERANCE = 0.05  # the released averages are exact means; allow rounding only


def load_urdu_stories(annotations: str | os.PathLike, stories: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pairs, ratings). pairs: pair_id, story_a, story_b, event/emotion/empathy (annotator
    means, missing ratings skipped), gpt_score, label. ratings: long format item_id, annotator,
    aspect, score; a missing rating is an absent row."""
    rating = read_csv(annotations, required=["gpt_score"], what="Urdu annotation CSV")
    text = read_csv(stories, required=["story_A", "story_B"], what="Urdu stories CSV",
                    keep_default_na=False, dtype=str)
    if len(rating) != len(text):
        raise InputError(f"{annotations} has {len(rating)} rows but {stories} has {len(text)}: row i of "
                         f"both files must be the same pair")
    annotators = sorted({c.split("_")[1] for c in rating.columns
                         if c.startswith("Person_") and c.endswith("_score")}, key=int)
    if not annotators:
        raise InputError(f"{annotations}: no Person_N_ASPECT_score columns found; "
                         f"found {', '.join(map(repr, rating.columns))}")
    required = [f"Person_{a}_{aspect}_score" for a in annotators for aspect in URDU_ASPECTS]
    missing = [c for c in required if c not in rating.columns]
    if missing:
        raise InputError(f"{annotations}: Urdu annotation CSV lacks column(s) {', '.join(map(repr, missing))}")
    scores = {c: require_numeric(rating, c, annotations, allow_missing=True, low=SCALE[0], high=SCALE[1])
              for c in required}
    ids = [f"urdu-{i}" for i in range(len(rating))]
    pairs = pd.DataFrame({
        "pair_id": ids,
        "story_a": _require_text(text, "story_A", stories).to_numpy(),
        "story_b": _require_text(text, "story_B", stories).to_numpy(),
    })
    for aspect in URDU_ASPECTS:
        block = pd.DataFrame({a: scores[f"Person_{a}_{aspect}_score"] for a in annotators})
        unrated = block.isna().all(axis=1)
        if unrated.any():
            row = int(unrated.to_numpy().nonzero()[0][0])
            raise InputError(f"{annotations}: row {row + 2}: no annotator rated {aspect}")
        mean = block.mean(axis=1)
        column = URDU_AVERAGES[aspect]
        if column in rating.columns:  # the released average must agree with the ratings
            given = require_numeric(rating, column, annotations, allow_missing=True)
            off = (given - mean).abs() > URDU_AVERAGE_TOLERANCE
            if off.any():
                row = int(off.to_numpy().nonzero()[0][0])
                raise InputError(f"{annotations}: row {row + 2}, column {column!r}: {given.iloc[row]} is not "
                                 f"the mean of the {aspect} ratings ({mean.iloc[row]:.4g}); columns shifted?")
        pairs[aspect] = mean.to_numpy()
    pairs["gpt_score"] = require_numeric(rating, "gpt_score", annotations).astype(float).to_numpy()
    pairs["label"] = (pairs["empathy"] > POSITIVE_THRESHOLD).astype(int)
    long = [(ids[i], f"person_{a}", aspect, float(scores[f"Person_{a}_{aspect}_score"].iloc[i]))
            for i in range(len(ids)) for a in annotators for aspect in URDU_ASPECTS
            if not pd.isna(scores[f"Person_{a}_{aspect}_score"].iloc[i])]
    ratings = pd.DataFrame(long, columns=["item_id", "annotator", "aspect", "score"])
    return pairs, ratings
