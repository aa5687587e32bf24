"""Dataset sources and splits: a local path, an http(s) URL (downloaded once into the cache) or a
Hugging Face id (hf:ORG/NAME[:SPLIT]); seeded re-splits when a released split is missing."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import tarfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from empathy_workflow.core.io import InputError, atomic_path

logger = logging.getLogger(__name__)


# The config key download_cache, which rules/common.smk hands every job (a location, not a
# setting of any result, so not a param that would rerun the rules).
DOWNLOAD_DIR = os.environ.get("EMPATHY_DOWNLOAD_CACHE", "results/downloads")


def is_url(source: str) -> bool:
    return str(source).startswith(("http://", "https://"))


def is_hf(source: str) -> bool:
    return str(source).startswith("hf:")


def _download(url: str, destination: Path) -> None:
    """Fetch `url` into `destination` atomically (a failed download leaves nothing behind)."""
    logger.info("downloading %s -> %s", url, destination)
    with atomic_path(destination) as tmp:
        with urllib.request.urlopen(url, timeout=120) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out)


def fetch(source: str, download_dir: str | os.PathLike = DOWNLOAD_DIR) -> Path:
    """A local file for `source`: local paths as they are, URLs downloaded once (reused after)."""
    if not is_url(source):
        return Path(source)
    name = Path(urllib.parse.urlparse(source).path).name or "download"
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    destination = Path(download_dir) / f"{digest}-{name}"
    if not destination.exists():
        if os.environ.get("EMPATHY_OFFLINE") == "1":
            # compute jobs never reach the network: the download_dataset rule fetches on the submit host
            raise InputError(f"{source}: not in the download cache ({destination}); this job runs offline, and "
                             f"the download_dataset rule (run by Snakemake where it starts) fetches it first")
        try:
            _download(source, destination)
        except OSError as error:  # URLError and HTTPError are OSErrors
            raise InputError(f"{source}: download failed: {error}") from error
    return destination


def _is_archive(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".tgz", ".tar"))


def _extract(archive: Path) -> Path:
    """Unpack a tar archive beside itself once; return the folder."""
    target = archive.parent / (archive.name.split(".tar")[0].split(".tgz")[0] + ".d")
    if not target.exists():
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError) as error:
            raise InputError(f"{archive}: not a readable tar archive: {error}") from error
        os.replace(tmp, target)
    return target


def fetch_file(source: str, member: str | None = None, download_dir: str | os.PathLike = DOWNLOAD_DIR) -> Path:
    """Like fetch; a tar archive is unpacked and the file named `member` inside it returned."""
    path = fetch(source, download_dir)
    if member and _is_archive(path):
        matches = sorted(_extract(path).rglob(member))
        if not matches:
            raise InputError(f"{source}: the archive holds no file named {member!r}")
        return matches[0]
    return path


def _require_text(frame: pd.DataFrame, column: str, path, *, what: str = "text") -> pd.Series:
    """Strings that must be present (read with keep_default_na=False: a missing cell is '')."""
    values = frame[column].astype(str).str.strip()
    empty = values == ""
    if empty.any():
        row = int(empty.to_numpy().nonzero()[0][0])
        raise InputError(f"{path}: row {row + 2}, column {column!r}: empty {what}")
    return values


def _split_counts(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder rounding of n * fraction, so the counts add up to n exactly."""
    names = list(fractions)
    total = sum(fractions.values())
    exact = [n * fractions[name] / total for name in names]
    counts = [math.floor(x) for x in exact]
    # Ties go to the split listed first (dict order is the config's order: deterministic).
    order = sorted(range(len(names)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return dict(zip(names, counts))


def resplit_ids(ids: Iterable[str], fractions: Mapping[str, float], seed: int) -> dict[str, list[str]]:
    """Seeded random partition of `ids` into the named splits. The ids are sorted first, so the
    result depends only on the set of ids, the fractions and the seed. Each split keeps the
    ids' input order."""
    ids = list(ids)
    if len(set(ids)) != len(ids):
        raise ValueError("resplit_ids: ids are not unique")
    ordered = sorted(ids)
    permuted = [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]
    counts = _split_counts(len(ids), fractions)
    assigned: dict[str, str] = {}
    start = 0
    for name, count in counts.items():
        for item in permuted[start : start + count]:
            assigned[item] = name
        start += count
    return {name: [item for item in ids if assigned[item] == name] for name in counts}


ED_HF_SPLITS = {"train": "train", "valid": "validation", "test": "test"}


def _hf_rows(dataset_id: str, split: str) -> Iterable[dict]:
    """Rows of a Hugging Face copy of ED (same columns as the CSV). Needs network or a warm cache."""
    import datasets

    try:
        return datasets.load_dataset(dataset_id, split=split)
    except Exception as error:  # noqa: BLE001 - script-based hub datasets no longer load in datasets>=4
        logger.warning("load_dataset(%r) failed (%s); trying the hub's parquet export", dataset_id, error)
        return datasets.load_dataset(dataset_id, split=split, revision="refs/convert/parquet")


def as_released_or_resplit(dataset: str, loaded: Mapping[str, object], splits: Sequence[str], settings: Mapping,
                           seed: int, unit: str, pool_ids: Callable[[], list[str]],
                           take: Callable[[dict[str, list[str]]], dict], describe: Callable[[str, str], str]):
    """The splits of a dataset and its split_info: every split given, used as released; any of
    them null, the given ones pooled and re-split by `resplit_ids` with settings["resplit"].
    `pool_ids()` lists the pooled units' ids, `take(parts)` builds the new splits from
    {split: ids}, `describe(pooled, fractions)` words the note of a re-split."""
    info: dict = {"dataset": dataset, "seed": seed, "sources": {s: settings.get(s) for s in splits}}
    if len(loaded) == len(splits):
        info.update(resplit=False, note="official splits, used as released")
        return dict(loaded), info
    fractions = settings.get("resplit")
    if not fractions:
        raise InputError(f"datasets.{dataset}: a split is null and no resplit fractions are given")
    fractions = {s: fractions[s] for s in splits}
    out = take(resplit_ids(pool_ids(), fractions, seed))
    info.update(resplit=True, fractions=fractions, pooled_from={s: len(part) for s, part in loaded.items()},
                note=describe(", ".join(f"{s} ({len(part)} {unit})" for s, part in loaded.items()),
                              ", ".join(f"{s} {fractions[s]:g}" for s in splits)))
    return out, info
