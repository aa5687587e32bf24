"""Reading inputs with clear errors, and writing outputs atomically."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd


class InputError(ValueError):
    """Bad input: the message names the file (or config key), the row or column, and the problem."""


def check_file(path: str | os.PathLike, what: str = "input") -> Path:
    """Return `path` as a Path if it is a non-empty file, else raise InputError naming it."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {what} file does not exist")
    if path.is_dir():
        raise InputError(f"{path}: {what} is a directory, expected a file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: {what} file is empty")
    return path


def read_csv(path: str | os.PathLike, required: Iterable[str] = (), what: str = "CSV", **kwargs) -> pd.DataFrame:
    """Read a CSV, failing with the file name on a parse error, no rows, or missing columns."""
    path = check_file(path, what)
    try:
        frame = pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: malformed {what}: {error}") from error
    if frame.empty:
        raise InputError(f"{path}: {what} has a header but no rows")
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: {what} lacks column(s) {', '.join(map(repr, missing))}; "
            f"found {', '.join(map(repr, frame.columns))}"
        )
    return frame


def require_numeric(frame: pd.DataFrame, column: str, path: str | os.PathLike, *, allow_missing: bool = False,
                    low: float | None = None, high: float | None = None) -> pd.Series:
    """Convert `column` to numbers; name the first bad row (1-based data row + header line) on error."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & (frame[column].notna() if allow_missing else True)
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise InputError(f"{path}: row {row + 2}, column {column!r}: {frame[column].iloc[row]!r} is not a number")
    for limit, outside in ((low, values < low if low is not None else None),
                           (high, values > high if high is not None else None)):
        if outside is not None and outside.any():
            row = int(outside.to_numpy().nonzero()[0][0])
            raise InputError(
                f"{path}: row {row + 2}, column {column!r}: {values.iloc[row]} is off the scale "
                f"[{low}, {high}]"
            )
    return values


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a scratch folder beside `path`; it replaces `path` only if the block succeeds, so a
    failed save leaves no half-written model folder (the one saver of every model folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield scratch
        if path.exists():
            shutil.rmtree(path)
        os.replace(scratch, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_safe(value):
    """Plain JSON values: dict keys as strings, tuples as lists, and NaN or infinite floats as
    null (JSON has no NaN; an undefined statistic is written as null and counted elsewhere).
    The one cleanup every result writer uses."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | os.PathLike, data) -> None:
    """Write JSON with sorted keys and a final newline, so equal results are equal bytes."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike):
    path = check_file(path, "JSON")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: malformed JSON: {error}") from error


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False, sort_keys=True, default=_json_default) + "\n")
            count += 1
    return count


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = check_file(path, "JSON lines")
    records = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise InputError(f"{path}: line {number}: malformed JSON: {error}") from error
    return records


def write_csv(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")




def _json_default(value):
    # numpy scalars and arrays, Paths: written as plain JSON values.
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def read_prepared(path: str | os.PathLike) -> pd.DataFrame:
    """A results/data/*.csv table with every cell's text kept (numeric columns still numeric)."""
    return read_csv(path, what="prepared table", keep_default_na=False)
