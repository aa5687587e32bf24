"""NRC lexicons for EmPO: the VAD and emotion-intensity releases prepared into tables, and their
one reader."""

from __future__ import annotations

import os

import pandas as pd

from empathy_workflow.core.io import InputError, check_file, read_csv, require_numeric
from empathy_workflow.empo.text_metrics import VAD_DIMENSIONS

VAD_COLUMNS = ["word", "valence", "arousal", "dominance"]


INTENSITY_COLUMNS = ["word", "emotion", "intensity"]


NRC_EMOTIONS = frozenset("anger anticipation disgust fear joy sadness surprise trust".split())


def _read_tsv(path, columns: list[str], numeric: list[str], what: str) -> pd.DataFrame:
    path = check_file(path, what)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text: {error}") from error
    rows, numbers = [], []
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != len(columns):
            raise InputError(f"{path}: line {number}: {len(parts)} tab-separated fields, expected "
                             f"{len(columns)} ({', '.join(columns)})")
        if not rows and number == 1:
            try:
                float(parts[columns.index(numeric[0])])
            except ValueError:  # a header line
                continue
        rows.append(parts)
        numbers.append(number)
    if not rows:
        raise InputError(f"{path}: {what} has no entries")
    frame = pd.DataFrame(rows, columns=columns)
    for column in numeric:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() | (values < 0) | (values > 1)
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise InputError(f"{path}: line {numbers[row]}, column {column!r}: {frame[column].iloc[row]!r} "
                             f"is not a number in [0, 1]")
        frame[column] = values
    empty = frame["word"].str.strip() == ""
    if empty.any():
        raise InputError(f"{path}: line {numbers[int(empty.to_numpy().nonzero()[0][0])]}: empty word")
    frame["_line"] = numbers  # for the callers' error messages; dropped before returning
    return frame


def load_vad(path: str | os.PathLike) -> pd.DataFrame:
    frame = _read_tsv(path, VAD_COLUMNS, ["valence", "arousal", "dominance"], "NRC VAD lexicon")
    duplicated = frame["word"].duplicated()
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise InputError(f"{path}: line {row['_line']}: word {row['word']!r} is listed twice")
    return frame.drop(columns="_line")


def load_intensity(path: str | os.PathLike) -> pd.DataFrame:
    frame = _read_tsv(path, INTENSITY_COLUMNS, ["intensity"], "NRC emotion intensity lexicon")
    bad = ~frame["emotion"].isin(NRC_EMOTIONS)
    if bad.any():
        row = frame[bad].iloc[0]
        raise InputError(f"{path}: line {row['_line']}, column 'emotion': unknown emotion {row['emotion']!r} "
                         f"(expected one of {', '.join(sorted(NRC_EMOTIONS))})")
    return frame.drop(columns="_line")


def read_vad(path: str | os.PathLike) -> pd.DataFrame:
    """The prepared NRC VAD lexicon (results/data/lexicons/vad.csv): word, valence, arousal,
    dominance, each checked to be a number (valence on its 0-1 scale). The one reader of it."""
    frame = read_csv(path, required=("word",) + VAD_DIMENSIONS, what="VAD lexicon", keep_default_na=False)
    for column in VAD_DIMENSIONS:
        frame[column] = require_numeric(frame, column, path, **({"low": 0.0, "high": 1.0} if column == "valence" else {}))
    return frame


def vad_by_word(frame: pd.DataFrame) -> dict[str, tuple[float, float, float]]:
    """word (lower case) -> (valence, arousal, dominance), for scoring replies."""
    words = frame["word"].astype(str).str.lower()
    return {w: (v, a, d) for w, v, a, d in zip(words, frame["valence"], frame["arousal"], frame["dominance"])}


def read_intensity_lexicon(path: str | os.PathLike) -> dict[str, float]:
    """word -> intensity; a word listed under several emotions keeps its highest intensity (the
    EmPO code kept whichever line came last, an accident of the file's order)."""
    frame = read_csv(path, required=("word", "emotion", "intensity"), what="intensity lexicon",
                     keep_default_na=False, na_values=[""])
    values = pd.to_numeric(frame["intensity"], errors="coerce")
    if values.isna().any():
        row = int(values.isna().to_numpy().nonzero()[0][0])
        raise InputError(f"{path}: row {row + 2}, column 'intensity': {frame['intensity'].iloc[row]!r} "
                         f"is not a number")
    frame = frame.assign(word=frame["word"].astype(str).str.lower(), intensity=values)
    return frame.groupby("word")["intensity"].max().to_dict()
