"""Time EmPO pair building at the full ED train size: 19,533 synthetic conversations x 3
rejected replies (build, length statistics, and writing the JSONL), optionally with token
lengths from the policy tokenizer and the percentile length filter.

    python benchmarks/bench_pairs.py [--conversations 19533] [--tokenizer results/models/policy]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from empathy_workflow.core import io
from empathy_workflow.empo import dialogues, emotions, preference_pairs

WORDS = ("i feel really so that my friend work day family dog new car job happy sad afraid sorry "
         "to hear it was what did you do hope better soon great wow nice terrible awful").split()


def synthetic(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for index in range(n):
        turns = []
        for turn in range(rng.choice((4, 4, 4, 5, 6))):  # ED-like: mostly 4 turns, some end on the speaker
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30)))
            turns.append({"speaker_idx": turn % 2, "role": "speaker" if turn % 2 == 0 else "listener", "text": text})
        records.append({"conv_id": f"syn:{index}", "emotion": rng.choice(dialogues.ED_EMOTIONS),
                        "situation": "", "turns": turns})
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=19533)
    parser.add_argument("--rejected", type=int, default=3)
    parser.add_argument("--tokenizer", default=None, help="a model folder: token lengths + 95th percentile filter")
    args = parser.parse_args()
    records = synthetic(args.conversations)
    mapping = emotions.read_mapping(emotions.named_mapping_path("plutchik"))
    token_length, percentile = None, None
    if args.tokenizer:
        from transformers import AutoTokenizer

        token_length = preference_pairs.tokenizer_lengths(AutoTokenizer.from_pretrained(args.tokenizer))
        percentile = 95
    start = time.perf_counter()
    pairs, stats = preference_pairs.build_pairs(records, mapping, rejected_per_prompt=args.rejected, seed=42,
                                          token_length=token_length, length_percentile=percentile, split="train")
    built = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        io.write_jsonl(Path(tmp) / "train.jsonl", pairs)
        io.write_json(Path(tmp) / "train_stats.json", stats)
        size = (Path(tmp) / "train.jsonl").stat().st_size
    written = time.perf_counter()
    print(f"conversations: {len(records)}  pairs: {len(pairs)}  (prompts {stats['prompts']}, "
          f"length filter dropped {stats['length_filter']['conversations_dropped']}, unit {stats['lengths']['unit']})")
    print(f"build (incl. lengths): {built - start:.2f} s   write JSONL ({size / 1e6:.1f} MB) + stats: "
          f"{written - built:.2f} s   total: {written - start:.2f} s")


if __name__ == "__main__":
    main()
