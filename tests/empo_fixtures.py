"""EmPO test fixtures built from the shipped data: ED conversations as the data stage writes them
(results/data/empathetic_dialogues/SPLIT.jsonl records) and the NRC VAD lexicon as a frame.
Kept independent of the data stage's code so the EmPO tests can run on their own."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd

RESOURCES = Path(__file__).resolve().parents[1] / "resources" / "data"


def ed_conversations(path: Path = RESOURCES / "empathetic_dialogues" / "valid.csv") -> list[dict]:
    """The release CSV (no quoting, `_comma_` for commas) as conversation records."""
    conversations: "OrderedDict[str, dict]" = OrderedDict()
    first_speaker: dict[str, str] = {}
    with open(path, encoding="utf-8") as lines:
        header = next(lines).rstrip("\n").split(",")
        assert header[:6] == ["conv_id", "utterance_idx", "context", "prompt", "speaker_idx", "utterance"]
        for line in lines:
            conv_id, index, emotion, situation, speaker, utterance = line.rstrip("\n").split(",")[:6]
            record = conversations.setdefault(conv_id, {
                "conv_id": conv_id, "emotion": emotion, "situation": situation.replace("_comma_", ","),
                "turns": []})
            first_speaker.setdefault(conv_id, speaker)
            record["turns"].append({
                "speaker_idx": int(speaker),
                "role": "speaker" if speaker == first_speaker[conv_id] else "listener",
                "text": utterance.replace("_comma_", ","),
            })
    return list(conversations.values())


def ed_splits(seed: int = 0, fractions=(0.8, 0.1, 0.1)) -> dict[str, list[dict]]:
    """A seeded re-split by conversation, like the workflow's default for the shipped data."""
    records = ed_conversations()
    order = np.random.default_rng(seed).permutation(len(records))
    n_train = int(round(fractions[0] * len(records)))
    n_valid = int(round(fractions[1] * len(records)))
    pick = lambda idx: [records[int(i)] for i in sorted(idx)]  # noqa: E731
    return {"train": pick(order[:n_train]), "valid": pick(order[n_train:n_train + n_valid]),
            "test": pick(order[n_train + n_valid:])}


def vad_frame() -> pd.DataFrame:
    return pd.read_csv(RESOURCES / "lexicons" / "NRC-VAD-Lexicon.txt", sep="\t", header=None,
                       names=["word", "valence", "arousal", "dominance"], keep_default_na=False,
                       quoting=3)
