"""Emotion mappings for EmPO's rejected replies: the opposite emotion of each of the 32 ED
emotions (Plutchik, as the EmPO code, or by valence from the NRC VAD lexicon)."""

from __future__ import annotations

import os
import re
from collections import defaultdict
from typing import Sequence

import numpy as np
import pandas as pd

from empathy_workflow.core.io import InputError, read_csv
from empathy_workflow.empo.dialogues import ED_EMOTIONS

MAPPINGS_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "resources", "emotion_mappings")


def validate_mapping(mapping: dict[str, str], source: str) -> dict[str, str]:
    """Every ED emotion maps to a different, known ED emotion; otherwise an InputError."""
    unknown = sorted(set(mapping) - set(ED_EMOTIONS))
    if unknown:
        raise InputError(f"{source}: unknown emotion(s) {', '.join(unknown)}; expected the 32 ED emotions")
    missing = [emotion for emotion in ED_EMOTIONS if emotion not in mapping]
    if missing:
        raise InputError(f"{source}: no opposite given for {', '.join(missing)}")
    for emotion, opposite in mapping.items():
        if opposite not in ED_EMOTIONS:
            raise InputError(f"{source}: {emotion} maps to {opposite!r}, which is not an ED emotion")
        if opposite == emotion:
            raise InputError(f"{source}: {emotion} maps to itself")
    return {emotion: mapping[emotion] for emotion in ED_EMOTIONS}


def read_mapping(path: str | os.PathLike) -> dict[str, str]:
    """Read an `emotion,opposite` CSV (extra columns are ignored) and validate it."""
    frame = read_csv(path, required=("emotion", "opposite"), what="emotion mapping", dtype=str,
                     keep_default_na=False)
    frame["emotion"] = frame["emotion"].str.strip()
    frame["opposite"] = frame["opposite"].str.strip()
    duplicated = frame["emotion"][frame["emotion"].duplicated()]
    if len(duplicated):
        row = int(duplicated.index[0])
        raise InputError(f"{path}: row {row + 2}: emotion {duplicated.iloc[0]!r} is listed twice")
    return validate_mapping(dict(zip(frame["emotion"], frame["opposite"])), str(path))


def named_mapping_path(name: str) -> str:
    """`plutchik` names the shipped file; anything else is taken as a path."""
    if name == "plutchik":
        return os.path.normpath(os.path.join(MAPPINGS_DIR, "plutchik.csv"))
    return name


_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def dialogue_valence(text: str, valence: dict[str, float]) -> float | None:
    """Mean NRC valence of the lexicon words in `text` (None if it has none)."""
    scores = [valence[word] for word in _WORD.findall(text.lower().replace("_comma_", ",")) if word in valence]
    return float(np.mean(scores)) if scores else None


def valence_mapping(records: Sequence[dict], vad: pd.DataFrame) -> pd.DataFrame:
    """Data-driven mapping: each emotion's opposite is the emotion whose dialogues are farthest
    in mean NRC valence (mean over dialogues of each dialogue's mean word valence over all turns).
    Ties go to the alphabetically first emotion. Every ED emotion must occur in `records`."""
    table = dict(zip(vad["word"].astype(str).str.lower(), vad["valence"].astype(float)))
    per_emotion: dict[str, list[float]] = defaultdict(list)
    for record in records:
        score = dialogue_valence(" ".join(turn["text"] for turn in record["turns"]), table)
        if score is not None:
            per_emotion[record["emotion"]].append(score)
    missing = [emotion for emotion in ED_EMOTIONS if not per_emotion.get(emotion)]
    if missing:
        raise InputError(f"valence mapping: no training dialogue with lexicon words for {', '.join(missing)}; "
                         f"cannot place it on the valence scale")
    means = {emotion: float(np.mean(per_emotion[emotion])) for emotion in ED_EMOTIONS}
    rows = []
    for emotion in ED_EMOTIONS:
        # farthest in mean valence; on a tie the first in name order wins (strict >)
        opposite, distance = None, -1.0
        for other in ED_EMOTIONS:
            if other != emotion and abs(means[other] - means[emotion]) > distance:
                opposite, distance = other, abs(means[other] - means[emotion])
        rows.append({"emotion": emotion, "opposite": opposite, "valence": round(means[emotion], 6),
                     "opposite_valence": round(means[opposite], 6), "n_dialogues": len(per_emotion[emotion])})
    frame = pd.DataFrame(rows)
    validate_mapping(dict(zip(frame["emotion"], frame["opposite"])), "valence mapping")
    return frame
