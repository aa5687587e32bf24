"""Human evaluation of EmPO replies, part 2: reading completed sheets back, with clear errors.

Two layouts are accepted, both as the sheets hand them out:
- long: item_id, annotator, dimension, score (the HTML page's download; the LLM judge's file);
- wide: the CSV sheet filled in, item_id, annotator and one column per dimension.
An empty score is a missing rating (counted). Everything else that is wrong stops the run with the
file, the row and the problem: a missing column, a missing annotator id or item id, an unknown
item, annotator or dimension, an item not on that annotator's sheet, a score that is not a number
or off the dimension's scale, and a rating given twice (across files too).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from empathy_workflow.core.io import InputError, read_csv
from empathy_workflow.empo.human_eval import on_scale

LOGGER = logging.getLogger(__name__)


LONG = ("item_id", "annotator", "dimension", "score")


def rating_files(path: str | Path) -> list[Path]:
    """A completed-sheets path: one CSV, or a folder whose *.csv files are all read."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.csv") if p.is_file())
        if not files:
            raise InputError(f"{path}: the ratings folder holds no .csv file")
        return files
    if not path.exists():
        raise InputError(f"{path}: ratings file or folder does not exist")
    return [path]


def read_sheet(path: str | Path, dimensions: Iterable[str]) -> pd.DataFrame:
    """One file as long rows: item_id, annotator, dimension, score (text as written), source, row."""
    dimensions = list(dimensions)
    frame = read_csv(path, what="ratings CSV", dtype=str, keep_default_na=False)
    frame.columns = [str(column).strip() for column in frame.columns]
    frame["row"] = frame.index + 2  # the header is line 1
    if {"dimension", "score"} <= set(frame.columns):
        missing = [column for column in LONG if column not in frame.columns]
        if missing:
            raise InputError(f"{path}: ratings CSV lacks column(s) {', '.join(map(repr, missing))} "
                             f"(long format: {', '.join(LONG)})")
        long = frame[list(LONG) + ["row"]].copy()
    else:
        present = [name for name in dimensions if name in frame.columns]
        missing = [column for column in ("item_id", "annotator") if column not in frame.columns]
        if missing or not present:
            raise InputError(
                f"{path}: not a ratings sheet: expected the long format ({', '.join(LONG)}) or a filled CSV "
                f"sheet (item_id, annotator and dimension columns {', '.join(dimensions)}); found columns "
                f"{', '.join(map(repr, frame.columns[:-1]))}")
        long = frame.melt(id_vars=["item_id", "annotator", "row"], value_vars=present,
                          var_name="dimension", value_name="score")
    long["source"] = str(path)
    for column in LONG:
        long[column] = long[column].astype(str).str.strip()
    return long.sort_values(["row", "dimension"], kind="stable").reset_index(drop=True)


def _where(row) -> str:
    return f"{row.source}: row {row.row}"


def validate(long: pd.DataFrame, dimensions: Mapping[str, Mapping], items: Iterable[str],
             assignments: pd.DataFrame | None = None, annotator: str | None = None,
             logger: logging.Logger | None = None) -> tuple[pd.DataFrame, dict]:
    """Check rows read by read_sheet; return (item_id, annotator, dimension, score as float; missing
    ratings dropped) and counts. `assignments` (item_id, annotator) restricts each annotator to the
    items on their sheet; `annotator` fixes the one annotator id a file may use (the LLM judge)."""
    logger = logger or LOGGER
    known_items = set(items)
    sheets = None
    if assignments is not None:
        sheets = {name: set(part["item_id"]) for name, part in assignments.groupby("annotator")}
    scores = []
    for row in long.itertuples():
        if not row.annotator:
            raise InputError(f"{_where(row)}: missing annotator id")
        if not row.item_id:
            raise InputError(f"{_where(row)}: missing item_id")
        if row.item_id not in known_items:
            raise InputError(f"{_where(row)}: unknown item {row.item_id!r} (not in the evaluation set's items.csv)")
        if row.dimension not in dimensions:
            raise InputError(f"{_where(row)}: unknown dimension {row.dimension!r} "
                             f"(the configured dimensions: {', '.join(dimensions)})")
        if annotator is not None and row.annotator != annotator:
            raise InputError(f"{_where(row)}: annotator {row.annotator!r}; this file holds {annotator!r}'s ratings")
        if sheets is not None:
            if row.annotator not in sheets:
                raise InputError(f"{_where(row)}: unknown annotator {row.annotator!r} (the configured annotators: "
                                 f"{', '.join(sorted(sheets))})")
            if row.item_id not in sheets[row.annotator]:
                raise InputError(f"{_where(row)}: item {row.item_id!r} is not on the sheet of annotator {row.annotator!r}")
        if row.score == "":
            scores.append(float("nan"))
            continue
        try:
            score = float(row.score)
        except ValueError:
            raise InputError(f"{_where(row)}: score {row.score!r} for dimension {row.dimension!r} is not a number") from None
        scale = dimensions[row.dimension]
        if not on_scale(score, scale):
            raise InputError(f"{_where(row)}: score {row.score} for dimension {row.dimension!r} is off the scale "
                             f"({scale['min']:g} to {scale['max']:g} in steps of {scale['step']:g})")
        scores.append(score)
    clean = long.assign(score=scores)
    missing = int(clean["score"].isna().sum())
    if missing:
        logger.info("%d empty score(s): missing ratings", missing)
    clean = clean[clean["score"].notna()]
    duplicated = clean.duplicated(["item_id", "annotator", "dimension"], keep=False)
    if duplicated.any():
        first = clean[duplicated].iloc[0]
        twins = clean[duplicated & (clean["item_id"] == first["item_id"]) & (clean["annotator"] == first["annotator"])
                      & (clean["dimension"] == first["dimension"])]
        places = "; ".join(f"{r.source}: row {r.row}" for r in twins.itertuples())
        raise InputError(f"duplicate rating: annotator {first['annotator']!r} rated item {first['item_id']!r} on "
                         f"{first['dimension']!r} more than once ({places}); keep one")
    counts = {"ratings": int(len(clean)), "empty_scores": missing,
              "files": sorted(set(long["source"])), "annotators": sorted(set(clean["annotator"]))}
    return clean[["item_id", "annotator", "dimension", "score"]].reset_index(drop=True), counts


def read_ratings(paths: Iterable[str | Path], dimensions: Mapping[str, Mapping], items: Iterable[str],
                 assignments: pd.DataFrame | None = None, annotator: str | None = None,
                 logger: logging.Logger | None = None) -> tuple[pd.DataFrame, dict]:
    """Every file read and validated together (so a rating given in two files is a duplicate)."""
    frames = [read_sheet(path, dimensions) for path in paths]
    return validate(pd.concat(frames, ignore_index=True), dimensions, items, assignments, annotator, logger)


def completion(ratings: pd.DataFrame, assignments: pd.DataFrame, dimensions: Iterable[str]) -> dict:
    """Assigned ratings given vs expected, per annotator (a partly filled sheet is allowed)."""
    dimensions = list(dimensions)
    expected = assignments.groupby("annotator").size() * len(dimensions)
    given = ratings.groupby("annotator").size().reindex(expected.index, fill_value=0)
    return {name: {"given": int(given[name]), "expected": int(expected[name])} for name in expected.index}
