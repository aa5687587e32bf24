"""Raw datasets -> validated tables. Plain functions taking paths (or remote sources), so rules,
tests and other modules share one parser per dataset. Bad input raises io.InputError naming the
file, the row/line or column, and the problem, before anything is written."""

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
from typing import Iterable, Iterator, Mapping

import numpy as np
import pandas as pd

from .io import InputError, atomic_path, check_file, read_csv, require_numeric

logger = logging.getLogger(__name__)

# The config key download_cache, which rules/common.smk hands every job (a location, not a
# setting of any result, so not a param that would rerun the rules).
DOWNLOAD_DIR = os.environ.get("EMPATHY_DOWNLOAD_CACHE", "results/downloads")
SCALE = (1.0, 4.0)  # similarity ratings (EmpathicStories, Urdu): 1-4 in 0.5 steps
POSITIVE_THRESHOLD = 2.5  # label 1 means "similar": score > 2.5 (the papers' binarisation)

# ----------------------------------------------------------------------------------------------
# Sources: a local path, an http(s) URL (downloaded once into results/downloads), or for
# EmpatheticDialogues a Hugging Face dataset id "hf:ORG/NAME" (optionally "hf:ORG/NAME:SPLIT").


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


# ----------------------------------------------------------------------------------------------
# Shared checks


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


# ----------------------------------------------------------------------------------------------
# EmpathicStories (Shen et al. 2023): PAIRS_{dev,test}.csv, first column an unnamed index.

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
    info: dict = {"dataset": "empathic_stories", "seed": seed,
                  "sources": {s: settings.get(s) for s in splits}}
    if len(frames) == len(splits):
        out = frames
        info.update(resplit=False, note="official splits, used as released")
    else:
        fractions = settings.get("resplit")
        if not fractions:
            raise InputError("datasets.empathic_stories: a split is null and no resplit fractions are given")
        pool = pd.concat(list(frames.values()), ignore_index=True)
        parts = resplit_ids(pool["pair_id"], {s: fractions[s] for s in splits}, seed)
        out = {s: pool[pool["pair_id"].isin(set(ids))].reset_index(drop=True) for s, ids in parts.items()}
        pooled = ", ".join(f"{s} ({len(f)} pairs)" for s, f in frames.items())
        info.update(
            resplit=True, fractions={s: fractions[s] for s in splits},
            pooled_from={s: len(f) for s, f in frames.items()},
            note=(f"RE-SPLIT: the official EmpathicStories train split is not available, so the "
                  f"released {pooled} were pooled and randomly re-split (seed {seed}, fractions "
                  + ", ".join(f"{s} {fractions[s]:g}" for s in splits)
                  + "). Scores on this test split are not comparable with the paper's test set."),
        )
    info["counts"] = {s: len(out[s]) for s in splits}
    info["positives"] = {s: int(out[s]["label"].sum()) for s in splits}
    return out, info


# ----------------------------------------------------------------------------------------------
# Roman-Urdu story pairs (Manzoor et al. 2024): ratings file + stories file, row i = same pair.

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


# ----------------------------------------------------------------------------------------------
# EmpatheticDialogues (Rashkin et al. 2019) in the release's CSV layout. The release does not
# quote: commas inside text are written "_comma_" and every line is split on ",", as the
# authors' own ParlAI loader does. Fields 0-5 are positional; selfeval and tags follow; some
# lines carry extra fields (the test file's distractor candidates), which are ignored.

ED_HEADER = ["conv_id", "utterance_idx", "context", "prompt", "speaker_idx", "utterance", "selfeval", "tags"]
ED_EMOTIONS = frozenset(
    "afraid angry annoyed anticipating anxious apprehensive ashamed caring confident content "
    "devastated disappointed disgusted embarrassed excited faithful furious grateful guilty hopeful "
    "impressed jealous joyful lonely nostalgic prepared proud sad sentimental surprised terrified "
    "trusting".split()
)
ED_HF_SPLITS = {"train": "train", "valid": "validation", "test": "test"}


def decode_ed(text: str) -> str:
    return text.replace("_comma_", ",")


def read_ed_rows(path: str | os.PathLike) -> Iterator[tuple[str, dict]]:
    """(location, row) for every utterance line of a release CSV."""
    path = check_file(path, "EmpatheticDialogues CSV")
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text: {error}") from error
    # Split on "\n" only: str.splitlines would also break on U+2028 etc. inside utterances.
    lines = content.split("\n")
    header = lines[0].rstrip("\r").split(",")
    if header[: len(ED_HEADER)] != ED_HEADER:
        missing = [c for c in ED_HEADER if c not in header]
        raise InputError(f"{path}: line 1: header is {','.join(header)!r}; expected the release's "
                         f"{','.join(ED_HEADER)!r}" + (f" (missing column(s) {', '.join(missing)})" if missing else ""))
    extra = 0
    for number, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) < len(ED_HEADER):
            raise InputError(f"{path}: line {number}: {len(parts)} comma-separated fields, expected "
                             f"{len(ED_HEADER)} ({','.join(ED_HEADER)}): truncated or malformed line")
        extra += len(parts) > len(ED_HEADER)
        yield f"{path}: line {number}", dict(zip(ED_HEADER, parts))
    if extra:
        logger.info("%s: %d line(s) carry fields beyond %s (ignored, as the release's loader does)",
                    path, extra, ED_HEADER[-1])


def _hf_rows(dataset_id: str, split: str) -> Iterable[dict]:
    """Rows of a Hugging Face copy of ED (same columns as the CSV). Needs network or a warm cache."""
    import datasets

    try:
        return datasets.load_dataset(dataset_id, split=split)
    except Exception as error:  # noqa: BLE001 - script-based hub datasets no longer load in datasets>=4
        logger.warning("load_dataset(%r) failed (%s); trying the hub's parquet export", dataset_id, error)
        return datasets.load_dataset(dataset_id, split=split, revision="refs/convert/parquet")


def ed_rows(source: str, split: str, download_dir: str | os.PathLike = DOWNLOAD_DIR) -> Iterator[tuple[str, dict]]:
    """Dispatch on the source: "hf:ID[:SPLIT]", an http(s) URL (a CSV, or the release tarball
    from which SPLIT.csv is taken), or a local path."""
    if is_hf(source):
        dataset_id, _, hf_split = source[3:].partition(":")
        hf_split = hf_split or ED_HF_SPLITS[split]
        for number, row in enumerate(_hf_rows(dataset_id, hf_split)):
            yield f"{source} ({hf_split}): row {number}", {k: "" if v is None else str(v) for k, v in row.items()}
        return
    yield from read_ed_rows(fetch_file(source, member=f"{split}.csv", download_dir=download_dir))


def ed_conversations(rows: Iterable[tuple[str, dict]]) -> list[dict]:
    """One record per conversation, in order of first appearance: conv_id, emotion, situation,
    turns [{speaker_idx, role, text}] ordered by utterance_idx. Role 'speaker' is the author of
    the first utterance (who wrote the situation), 'listener' the other."""
    conversations: dict[str, dict] = {}
    for where, row in rows:
        conv_id = row["conv_id"].strip()
        if not conv_id:
            raise InputError(f"{where}, column 'conv_id' is empty")
        emotion = row["context"].strip()
        if emotion not in ED_EMOTIONS:
            raise InputError(f"{where}, column 'context': unknown emotion label {emotion!r} "
                             f"(expected one of the 32 EmpatheticDialogues emotions)")
        numbers = {}
        for column in ("utterance_idx", "speaker_idx"):
            try:
                numbers[column] = int(row[column])
            except ValueError:
                raise InputError(f"{where}, column {column!r}: {row[column]!r} is not an integer") from None
        text = decode_ed(row["utterance"]).strip()
        if not text:
            raise InputError(f"{where}, column 'utterance' is empty")
        conversation = conversations.setdefault(
            conv_id, {"conv_id": conv_id, "emotion": emotion, "situation": decode_ed(row["prompt"]).strip(),
                      "utterances": {}, "where": where})
        if emotion != conversation["emotion"]:
            raise InputError(f"{where}, column 'context': {emotion!r} differs from {conversation['emotion']!r} "
                             f"given for conversation {conv_id} at {conversation['where']}")
        if numbers["utterance_idx"] in conversation["utterances"]:
            raise InputError(f"{where}: utterance_idx {numbers['utterance_idx']} repeats in conversation {conv_id}")
        conversation["utterances"][numbers["utterance_idx"]] = (numbers["speaker_idx"], text)
    records = []
    for conversation in conversations.values():
        ordered = [conversation["utterances"][i] for i in sorted(conversation["utterances"])]
        first_author = ordered[0][0]
        turns = [{"speaker_idx": author, "role": "speaker" if author == first_author else "listener", "text": text}
                 for author, text in ordered]
        records.append({"conv_id": conversation["conv_id"], "emotion": conversation["emotion"],
                        "situation": conversation["situation"], "turns": turns})
    return records


def prepare_empathetic_dialogues(sources: Mapping[str, str | None], settings: Mapping, seed: int,
                                 download_dir: str | os.PathLike = DOWNLOAD_DIR) -> tuple[dict[str, list[dict]], dict]:
    """train/valid/test conversation records and split_info. Given splits are used as they are;
    if any is null, the given ones are pooled and re-split by conversation (seeded)."""
    splits = ("train", "valid", "test")
    loaded = {}
    for split in splits:
        if sources.get(split):
            records = ed_conversations(ed_rows(sources[split], split, download_dir))
            if not records:
                raise InputError(f"{sources[split]}: no conversations")
            for record in records:
                record["source_split"] = split
            loaded[split] = records
            logger.info("EmpatheticDialogues %s: %d conversations, %d utterances", split, len(records),
                        sum(len(r["turns"]) for r in records))
    if not loaded:
        raise InputError("datasets.empathetic_dialogues: no split is given")
    info: dict = {"dataset": "empathetic_dialogues", "seed": seed,
                  "sources": {s: settings.get(s) for s in splits}}
    if len(loaded) == len(splits):
        out = loaded
        info.update(resplit=False, note="official splits, used as released")
    else:
        fractions = settings.get("resplit")
        if not fractions:
            raise InputError("datasets.empathetic_dialogues: a split is null and no resplit fractions are given")
        pool = [record for records in loaded.values() for record in records]
        keys = [f"{r['source_split']}/{r['conv_id']}" for r in pool]
        if len(set(keys)) != len(keys):
            raise InputError("datasets.empathetic_dialogues: a conversation id repeats within a split")
        parts = resplit_ids(keys, {s: fractions[s] for s in splits}, seed)
        by_key = dict(zip(keys, pool))
        out = {s: [by_key[k] for k in ids] for s, ids in parts.items()}
        pooled = ", ".join(f"{s} ({len(r)} conversations)" for s, r in loaded.items())
        info.update(
            resplit=True, fractions={s: fractions[s] for s in splits},
            pooled_from={s: len(r) for s, r in loaded.items()},
            note=(f"RE-SPLIT: only {pooled} of EmpatheticDialogues is available here; its "
                  f"conversations were pooled and randomly re-split by conversation (seed {seed}, "
                  "fractions " + ", ".join(f"{s} {fractions[s]:g}" for s in splits) + ")."),
        )
    info["counts"] = {s: len(out[s]) for s in splits}
    info["utterances"] = {s: sum(len(r["turns"]) for r in out[s]) for s in splits}
    return out, info


# ----------------------------------------------------------------------------------------------
# EPITOME (Sharma et al. 2020): one CSV per mechanism, level 0/1/2.

EPITOME_MECHANISMS = {"emotional_reactions": "er", "interpretations": "ip", "explorations": "ex"}
EPITOME_COLUMNS = ["sp_id", "rp_id", "seeker_post", "response_post", "level"]


def load_epitome(paths: Mapping[str, str | os.PathLike]) -> pd.DataFrame:
    """{emotional_reactions|interpretations|explorations: path} -> mechanism (er|ip|ex), sp_id,
    rp_id, seeker_post, response_post, level, rationales (empty where the CSV has none)."""
    tables = []
    for key, mechanism in EPITOME_MECHANISMS.items():
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


# ----------------------------------------------------------------------------------------------
# MMLU (Hendrycks et al. 2021): DIR/test/SUBJECT_test.csv, DIR/dev/SUBJECT_dev.csv, no header.

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


# ----------------------------------------------------------------------------------------------
# NRC lexicons: tab-separated; the files shipped with EmPO have no header, the NRC downloads
# have one (e.g. "Word\tValence\tArousal\tDominance"), so a first line that is not data is
# taken as a header.

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


# ----------------------------------------------------------------------------------------------
# Reading the prepared tables back. Words and answer options such as "null", "NA" or "None" are
# text here: pandas' default NA parsing would turn them into NaN, so read with this.


def read_prepared(path: str | os.PathLike) -> pd.DataFrame:
    """A results/data/*.csv table with every cell's text kept (numeric columns still numeric)."""
    return read_csv(path, what="prepared table", keep_default_na=False)
