"""MMLU questions for the local lm-eval task (retained ability): the release's CSVs as one table."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from empathy_workflow.core.dataset_sources import (
    DOWNLOAD_DIR,
    _extract,
    _is_archive,
    _require_text,
    fetch,
)
from empathy_workflow.core.io import InputError, read_csv

MMLU_SPLITS = ("dev", "val", "test")


MMLU_COLUMNS = ["subject", "split", "question", "A", "B", "C", "D", "answer"]


def mmlu_directory(source: str, download_dir: str | os.PathLike = DOWNLOAD_DIR) -> Path:
    """A local folder, or a URL to a tar archive of the release (hendrycks data.tar)."""
    path = fetch(source, download_dir)
    if _is_archive(path):
        found = sorted(p.parent for p in _extract(path).rglob("test") if p.is_dir())
        if not found:
            raise InputError(f"{source}: the archive holds no test/ folder")
        return found[0]
    return path


def load_mmlu(directory: str | os.PathLike) -> pd.DataFrame:
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: MMLU directory does not exist")
    tables = []
    for split in MMLU_SPLITS:
        for path in sorted((directory / split).glob(f"*_{split}.csv")):
            subject = path.name[: -len(f"_{split}.csv")]
            frame = read_csv(path, what="MMLU CSV", header=None, keep_default_na=False, dtype=str)
            if frame.shape[1] != 6:
                raise InputError(f"{path}: {frame.shape[1]} columns, expected 6 (question, A, B, C, D, answer)")
            frame.columns = MMLU_COLUMNS[2:]
            answers = frame["answer"].str.strip()
            bad = ~answers.isin(list("ABCD"))
            if bad.any():
                row = int(bad.to_numpy().nonzero()[0][0])
                raise InputError(f"{path}: row {row + 1}, column 6 (answer): {frame['answer'].iloc[row]!r} "
                                 f"is not A, B, C or D")
            _require_text(frame, "question", path, what="question")
            frame["answer"] = answers
            frame.insert(0, "split", split)
            frame.insert(0, "subject", subject)
            tables.append(frame)
    if not any((directory / "test").glob("*_test.csv")):
        raise InputError(f"{directory}: no MMLU test/*_test.csv files")
    return pd.concat(tables, ignore_index=True)[MMLU_COLUMNS]
