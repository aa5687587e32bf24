"""EPITOME data (Sharma et al. 2020): the release's three mechanism files as one table, and the
seeded held-out split the classifiers are scored on."""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
import pandas as pd

from empathy_workflow.core.dataset_sources import _require_text
from empathy_workflow.core.io import InputError, read_csv

# the three communication mechanisms of EPITOME (Sharma et al. 2020), in the papers' order: the one list
MECHANISMS = ("er", "ip", "ex")
# the release's file of each mechanism (datasets.epitome keys)
SOURCE_MECHANISMS = dict(zip(("emotional_reactions", "interpretations", "explorations"), MECHANISMS))


EPITOME_COLUMNS = ["sp_id", "rp_id", "seeker_post", "response_post", "level"]


def load_epitome(paths: Mapping[str, str | os.PathLike]) -> pd.DataFrame:
    """{emotional_reactions|interpretations|explorations: path} -> mechanism (er|ip|ex), sp_id,
    rp_id, seeker_post, response_post, level, rationales (empty where the CSV has none)."""
    tables = []
    for key, mechanism in SOURCE_MECHANISMS.items():
        if key not in paths:
            raise InputError(f"datasets.epitome.{key}: not given")
        path = paths[key]
        frame = read_csv(path, required=EPITOME_COLUMNS, what=f"EPITOME {key} CSV", keep_default_na=False, dtype=str)
        levels = frame["level"].str.strip()
        bad = ~levels.isin(["0", "1", "2"])
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise InputError(f"{path}: row {row + 2}, column 'level': {frame['level'].iloc[row]!r} is not "
                             f"an EPITOME level (0, 1 or 2)")
        out = pd.DataFrame({"mechanism": [mechanism] * len(frame)})
        for column in ("sp_id", "rp_id", "seeker_post", "response_post"):
            out[column] = _require_text(frame, column, path).to_numpy()
        out["level"] = levels.astype(int).to_numpy()
        # The annotators' rationales (response spans, '|'-separated): the bi-encoder's second task.
        out["rationales"] = frame["rationales"].to_numpy() if "rationales" in frame.columns else ""
        tables.append(out)
    return pd.concat(tables, ignore_index=True)




LEVELS = (0, 1, 2)


def read_epitome(path: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """The prepared EPITOME table as one row per (sp_id, rp_id) pair: seeker_post, response_post,
    level_er, level_ip, level_ex, rationales_er/ip/ex (EPITOME annotates the same pairs for the
    three mechanisms).
    A pair listed twice keeps its first level; the counts of such repeats are returned."""
    frame = read_csv(path, required=("mechanism", "sp_id", "rp_id", "seeker_post", "response_post", "level"),
                     what="EPITOME table", keep_default_na=False, dtype=str)
    levels = pd.to_numeric(frame["level"].str.strip(), errors="coerce")
    bad = ~levels.isin(LEVELS)
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise InputError(f"{path}: row {row + 2}, column 'level': {frame['level'].iloc[row]!r} is not 0, 1 or 2")
    unknown = ~frame["mechanism"].isin(MECHANISMS)
    if unknown.any():
        row = int(unknown.to_numpy().nonzero()[0][0])
        raise InputError(f"{path}: row {row + 2}, column 'mechanism': {frame['mechanism'].iloc[row]!r} is not "
                         f"one of {', '.join(MECHANISMS)}")
    frame = frame.assign(level=levels.astype(int))
    info = {"rows": int(len(frame))}
    pairs = None
    for mechanism in MECHANISMS:
        part = frame[frame["mechanism"] == mechanism]
        if part.empty:
            raise InputError(f"{path}: no rows with mechanism {mechanism!r}")
        conflicting = part.groupby(["sp_id", "rp_id"])["level"].nunique()
        info[f"{mechanism}_repeated_pairs_with_conflicting_levels"] = int((conflicting > 1).sum())
        part = part.drop_duplicates(["sp_id", "rp_id"], keep="first")
        part = part.assign(rationales=part["rationales"] if "rationales" in part.columns else "")
        part = part[["sp_id", "rp_id", "seeker_post", "response_post", "level", "rationales"]].rename(
            columns={"level": f"level_{mechanism}", "rationales": f"rationales_{mechanism}"})
        if pairs is None:
            pairs = part
        else:
            pairs = pairs.merge(part[["sp_id", "rp_id", f"level_{mechanism}", f"rationales_{mechanism}"]],
                                on=["sp_id", "rp_id"], how="inner")
    if pairs.empty:
        raise InputError(f"{path}: no (sp_id, rp_id) pair is annotated for all three mechanisms")
    info["pairs"] = int(len(pairs))
    return pairs.reset_index(drop=True), info


def epitome_split(pairs: pd.DataFrame, held_out: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of the pairs, stratified by the (er, ip, ex) level combination (combinations
    seen fewer than twice pooled): (train indices, held-out indices). The same split serves a
    trained classifier and given weights, so their held-out scores compare."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(pairs))
    combo = sum(pairs[f"level_{m}"].to_numpy() * 3 ** i for i, m in enumerate(MECHANISMS))
    counts = pd.Series(combo).value_counts()
    combo = np.where(pd.Series(combo).map(counts).to_numpy() >= 2, combo, -1)
    n_test = int(round(held_out * len(pairs))) if held_out < 1 else int(held_out)
    strata = pd.Series(combo).value_counts()
    stratify = combo if (strata >= 2).all() and n_test >= len(strata) and len(pairs) - n_test >= len(strata) else None
    train, test = train_test_split(index, test_size=held_out, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(test)


def scored_held_out(test_index: np.ndarray, settings: Mapping, seed: int) -> np.ndarray:
    """The held-out pairs that are scored: all of them, or a seeded subsample of
    `max_held_out_examples` (a size cap, e.g. for the CPU rehearsal; null: all). Trained and
    given classifiers get the same subsample."""
    limit = settings.get("max_held_out_examples")
    if limit and len(test_index) > limit:
        rng = np.random.default_rng([seed, 1])
        return np.sort(rng.choice(test_index, size=int(limit), replace=False))
    return test_index


def trained_and_scored(pairs: pd.DataFrame, settings: Mapping, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, scored held-out indices) of the seeded split: at most
    `max_train_examples` of the training part (a seeded subsample keeps CPU training within the
    stage's time budget) and `scored_held_out` of the held-out part. Every trained classifier
    uses these."""
    train_index, test_index = epitome_split(pairs, settings["held_out"], seed)
    limit = settings.get("max_train_examples")
    if limit and len(train_index) > limit:
        train_index = np.sort(np.random.default_rng(seed).choice(train_index, size=int(limit), replace=False))
    return train_index, scored_held_out(test_index, settings, seed)

