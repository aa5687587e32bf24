"""Long-format rating tables (item_id, annotator, aspect, score): validation with clear errors,
naming the file, row and problem; exclusions are counted, not hidden."""

from __future__ import annotations

import logging

import pandas as pd

from empathy_workflow.core.io import InputError, require_numeric

LOGGER = logging.getLogger(__name__)


COLUMNS = ("item_id", "annotator", "aspect", "score")


MAX_DISTINCT_VALUES = 101


def validate_ratings(frame: pd.DataFrame, scale: dict, source: str = "ratings",
                     logger: logging.Logger | None = None) -> tuple[pd.DataFrame, dict]:
    """Check a long-format ratings table; return (clean table, exclusions per aspect).

    Errors (InputError naming `source`, the row and the problem): a missing column, an empty
    item_id/annotator/aspect, a score that is not a number or off the declared scale, a duplicate
    (item, annotator, aspect) row, an aspect rated by one annotator, an aspect left with fewer than
    two items or with a single distinct value. Exclusions (counted and logged, never silent): rows
    with an empty score (a missing rating) and items rated by fewer than two annotators."""
    logger = logger or LOGGER
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing:
        raise InputError(f"{source}: lacks column(s) {', '.join(map(repr, missing))}; found "
                         f"{', '.join(map(repr, frame.columns))} (expected long format: "
                         f"{', '.join(COLUMNS)})")
    if frame.empty:
        raise InputError(f"{source}: no rating rows")
    extra = [column for column in frame.columns if column not in COLUMNS]
    if extra:
        logger.info("%s: ignoring extra column(s) %s", source, ", ".join(map(str, extra)))
    frame = frame.reset_index(drop=True)
    out = pd.DataFrame(index=frame.index)
    for column in ("item_id", "annotator", "aspect"):
        values = frame[column]
        text = values.astype("string").str.strip()
        empty = values.isna() | (text == "")
        if empty.any():
            row = int(empty.to_numpy().nonzero()[0][0])
            raise InputError(f"{source}: row {row + 2}, column {column!r}: empty value")
        # 1 and 1.0 written by different tools name the same item: normalise integral floats.
        out[column] = [_identifier(value) for value in values]
    low, high = float(scale["min"]), float(scale["max"])
    if not low < high:
        raise InputError(f"{source}: declared scale [{low}, {high}] is empty")
    out["score"] = require_numeric(frame, "score", source, allow_missing=True, low=low, high=high)

    duplicated = out.duplicated(["item_id", "annotator", "aspect"], keep=False)
    if duplicated.any():
        first = out[duplicated].iloc[0]
        rows = (out.index[duplicated & (out["item_id"] == first["item_id"])
                          & (out["annotator"] == first["annotator"])
                          & (out["aspect"] == first["aspect"])] + 2).tolist()
        raise InputError(
            f"{source}: {int(duplicated.sum())} duplicate (item_id, annotator, aspect) rows, e.g. rows "
            f"{', '.join(map(str, rows))}: item {first['item_id']!r}, annotator {first['annotator']!r}, "
            f"aspect {first['aspect']!r}; each annotator may rate an item once per aspect")

    exclusions: dict[str, dict] = {}
    kept = []
    for aspect in sorted(out["aspect"].unique()):
        part = out[out["aspect"] == aspect]
        empty = part["score"].isna()
        if empty.any():
            logger.warning("%s: aspect %r: %d row(s) with an empty score treated as missing ratings "
                           "(rows %s)", source, aspect, int(empty.sum()),
                           _preview((part.index[empty] + 2).tolist()))
        part = part[~empty]
        annotators = sorted(part["annotator"].unique())
        if len(annotators) < 2:
            raise InputError(f"{source}: aspect {aspect!r} is rated by {len(annotators)} annotator(s) "
                             f"({', '.join(annotators) or 'none'}); agreement needs at least two")
        counts = part.groupby("item_id")["score"].size()
        lonely = sorted(counts.index[counts < 2])
        if lonely:
            logger.warning("%s: aspect %r: excluding %d item(s) with fewer than two ratings: %s",
                           source, aspect, len(lonely), _preview(lonely))
        part = part[~part["item_id"].isin(lonely)]
        if part["item_id"].nunique() < 2:
            raise InputError(f"{source}: aspect {aspect!r} has {part['item_id'].nunique()} item(s) "
                             f"with at least two ratings; agreement needs at least two")
        if part["score"].nunique() > MAX_DISTINCT_VALUES:
            # The package's coincidence matrix costs items x values^2 memory; a rating scale has few values.
            raise InputError(f"{source}: aspect {aspect!r} has {part['score'].nunique()} distinct scores; "
                             f"agreement expects a rating scale (at most {MAX_DISTINCT_VALUES} values): "
                             f"round continuous scores to the scale's steps first")
        if part["score"].nunique() < 2:
            raise InputError(f"{source}: aspect {aspect!r}: every rating is {part['score'].iloc[0]}; "
                             f"agreement is undefined without variation")
        exclusions[aspect] = {
            "empty_score_rows": int(empty.sum()),
            "items_fewer_than_two_ratings": len(lonely),
            "ratings_of_excluded_items": int(counts[counts < 2].sum()),
        }
        kept.append(part)
    clean = pd.concat(kept).sort_values(["aspect", "item_id", "annotator"]).reset_index(drop=True)
    return clean, exclusions


def _identifier(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _preview(values: list, limit: int = 10) -> str:
    shown = ", ".join(map(str, values[:limit]))
    return shown + (f", ... ({len(values) - limit} more)" if len(values) > limit else "")
