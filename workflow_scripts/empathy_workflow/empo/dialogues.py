"""EmpatheticDialogues (EmPO): the release read into conversations, the official or re-split
splits, the chat messages of a conversation, and the seeded conversation subsets that SFT,
pairs and generation share (results/empo/conversations/SUBSET.json)."""

from __future__ import annotations

import logging
import os
import zlib
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from empathy_workflow.core.dataset_sources import (
    DOWNLOAD_DIR,
    ED_HF_SPLITS,
    _hf_rows,
    as_released_or_resplit,
    fetch_file,
    is_hf,
)
from empathy_workflow.core.io import InputError, check_file, read_jsonl

logger = logging.getLogger(__name__)


ED_HEADER = ["conv_id", "utterance_idx", "context", "prompt", "speaker_idx", "utterance", "selfeval", "tags"]


ED_EMOTIONS = frozenset(
    "afraid angry annoyed anticipating anxious apprehensive ashamed caring confident content "
    "devastated disappointed disgusted embarrassed excited faithful furious grateful guilty hopeful "
    "impressed jealous joyful lonely nostalgic prepared proud sad sentimental surprised terrified "
    "trusting".split()
)


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
    pool = [record for records in loaded.values() for record in records]
    keys = [f"{r['source_split']}/{r['conv_id']}" for r in pool]

    def pool_ids():
        if len(set(keys)) != len(keys):
            raise InputError("datasets.empathetic_dialogues: a conversation id repeats within a split")
        return keys

    by_key = dict(zip(keys, pool))
    out, info = as_released_or_resplit(
        "empathetic_dialogues", loaded, splits, settings, seed, "conversations", pool_ids=pool_ids,
        take=lambda parts: {s: [by_key[k] for k in ids] for s, ids in parts.items()},
        describe=lambda pooled, fractions: (
            f"RE-SPLIT: only {pooled} of EmpatheticDialogues is available here; its conversations were "
            f"pooled and randomly re-split by conversation (seed {seed}, fractions {fractions})."))
    info["counts"] = {s: len(out[s]) for s in splits}
    info["utterances"] = {s: sum(len(r["turns"]) for r in out[s]) for s in splits}
    return out, info


# The 32 emotion labels of EmpatheticDialogues (the `context` column of the release).
ED_EMOTIONS: tuple[str, ...] = (
    "afraid", "angry", "annoyed", "anticipating", "anxious", "apprehensive", "ashamed", "caring",
    "confident", "content", "devastated", "disappointed", "disgusted", "embarrassed", "excited",
    "faithful", "furious", "grateful", "guilty", "hopeful", "impressed", "jealous", "joyful",
    "lonely", "nostalgic", "prepared", "proud", "sad", "sentimental", "surprised", "terrified",
    "trusting",
)


ROLES = {"speaker": "user", "listener": "assistant"}


def read_dialogues(path: str | os.PathLike) -> list[dict]:
    """Read a conversations JSONL file, checking every record's shape (errors name the line)."""
    records = read_jsonl(path)
    if not records:
        raise InputError(f"{path}: no conversations")
    seen: set[str] = set()
    for number, record in enumerate(records, start=1):
        where = f"{path}: line {number}"
        for key in ("conv_id", "emotion", "turns"):
            if key not in record:
                raise InputError(f"{where}: conversation lacks the key {key!r}")
        if record["emotion"] not in ED_EMOTIONS:
            raise InputError(f"{where}: emotion {record['emotion']!r} is not one of the 32 ED emotions")
        if record["conv_id"] in seen:
            raise InputError(f"{where}: conv_id {record['conv_id']!r} occurs twice")
        seen.add(record["conv_id"])
        turns = record["turns"]
        if not isinstance(turns, list) or not turns:
            raise InputError(f"{where}: conversation {record['conv_id']!r} has no turns")
        for index, turn in enumerate(turns):
            if not isinstance(turn, dict) or turn.get("role") not in ROLES:
                raise InputError(f"{where}: turn {index} of {record['conv_id']!r} has no role "
                                 f"'speaker' or 'listener': {turn!r}")
            if not isinstance(turn.get("text"), str):
                raise InputError(f"{where}: turn {index} of {record['conv_id']!r} has no text")
    return records


def last_listener_index(record: dict) -> int | None:
    """Index of the conversation's last listener turn that follows a speaker turn, else None."""
    turns = record["turns"]
    for index in range(len(turns) - 1, 0, -1):
        if turns[index]["role"] == "listener":
            if any(turn["role"] == "speaker" for turn in turns[:index]):
                return index
            return None
    return None


def _messages(turns: Iterable[dict], system_prompt: str | None) -> list[dict]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages += [{"role": ROLES[turn["role"]], "content": turn["text"]} for turn in turns]
    return messages


def conversation_messages(record: dict, system_prompt: str | None = None) -> list[dict]:
    """The conversation as chat messages, up to and including its last listener turn (SFT text).
    Raises ValueError if it has no usable listener turn."""
    end = last_listener_index(record)
    if end is None:
        raise ValueError(f"conversation {record['conv_id']!r} has no listener reply to a speaker turn")
    return _messages(record["turns"][: end + 1], system_prompt)


def prompt_messages(record: dict, system_prompt: str | None = None) -> list[dict]:
    """The conversation up to (not including) its last listener turn: ends with a user message."""
    end = last_listener_index(record)
    if end is None:
        raise ValueError(f"conversation {record['conv_id']!r} has no listener reply to a speaker turn")
    return _messages(record["turns"][:end], system_prompt)


def reference_reply(record: dict) -> str:
    """The text of the conversation's last listener turn (the chosen reply, the reference)."""
    end = last_listener_index(record)
    if end is None:
        raise ValueError(f"conversation {record['conv_id']!r} has no listener reply to a speaker turn")
    return record["turns"][end]["text"]


def usable_conversations(records: Sequence[dict]) -> list[dict]:
    """The conversations with a listener reply to a speaker turn (all others have nothing to learn)."""
    return [record for record in records if last_listener_index(record) is not None]


def select_conversations(records: Sequence[dict], limit: int | None, seed: int, salt: str = "") -> list[dict]:
    """A seeded subset of at most `limit` conversations, kept in file order (None: all).
    Pairs, SFT and generation use this same selection for the same split, limit and seed."""
    if limit is None or limit >= len(records):
        return list(records)
    rng = np.random.default_rng([seed, zlib.crc32(salt.encode())])
    chosen = np.sort(rng.choice(len(records), size=limit, replace=False))
    return [records[int(index)] for index in chosen]


def ed_utterances(path: str | os.PathLike) -> list[str]:
    """Every turn's text in the ED training conversations (the documents for NIDF)."""
    texts = []
    for number, record in enumerate(read_jsonl(path), start=1):
        turns = record.get("turns") if isinstance(record, dict) else None
        if not isinstance(turns, list):
            raise InputError(f"{path}: line {number}: expected a 'turns' list")
        for turn in turns:
            if not isinstance(turn, dict) or "text" not in turn:
                raise InputError(f"{path}: line {number}: a turn lacks 'text'")
            texts.append(str(turn["text"]))
    if not texts:
        raise InputError(f"{path}: no utterances to count words in")
    return texts


def conversation_subset(records: Sequence[dict], limit: int | None, seed: int, salt: str) -> dict:
    """The seeded subset of usable conversations one split's jobs share (SFT, pairs, generation
    read it as results/empo/conversations/SUBSET.json instead of each drawing it again)."""
    usable = usable_conversations(records)
    chosen = select_conversations(usable, limit, seed, salt=salt)
    return {"conv_ids": [record["conv_id"] for record in chosen], "limit": limit, "usable": len(usable),
            "seed": seed, "salt": salt}


def in_subset(records: Sequence[dict], subset: dict) -> list[dict]:
    """The records of a subset file, in file order."""
    ids = set(subset["conv_ids"])
    return [record for record in records if record["conv_id"] in ids]
