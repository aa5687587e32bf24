"""Loaders on the real shipped data (row counts, types, label sets), the seeded re-splits, the
remote-source dispatch, and the data rules run through Snakemake in a scratch directory."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import tarfile
import threading
from pathlib import Path

import pandas as pd
import pytest

from conftest import RESOURCES, snakemake
from empathy_workflow.core import dataset_sources, io
from empathy_workflow.empo import dialogues, epitome_data, lexicons, mmlu
from empathy_workflow.similarity import stories

ES = RESOURCES / "empathic_stories"
URDU = RESOURCES / "urdu_stories"
ED_VALID = RESOURCES / "empathetic_dialogues" / "valid.csv"
EPITOME = {
    "emotional_reactions": RESOURCES / "epitome" / "emotional-reactions-reddit.csv",
    "interpretations": RESOURCES / "epitome" / "interpretations-reddit.csv",
    "explorations": RESOURCES / "epitome" / "explorations-reddit.csv",
}
ES_SETTINGS = {"train": None, "dev": "dev.csv", "test": "test.csv", "resplit": {"train": 0.6, "dev": 0.1, "test": 0.3}}
ED_SETTINGS = {"train": None, "valid": "valid.csv", "test": None, "resplit": {"train": 0.8, "valid": 0.1, "test": 0.1}}
ES_SOURCES = {"train": None, "dev": str(ES / "PAIRS_dev.csv"), "test": str(ES / "PAIRS_test.csv")}
ED_SOURCES = {"train": None, "valid": str(ED_VALID), "test": None}
ED_HEADER = "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n"


# --------------------------------------------------------------------------------------------
# EmpathicStories


@pytest.mark.parametrize("split, rows", [("dev", 100), ("test", 400)])
def test_empathic_stories_real_split(split, rows):
    frame = stories.load_empathic_stories(ES / f"PAIRS_{split}.csv", split)
    assert len(frame) == rows
    assert list(frame.columns) == stories.ES_COLUMNS
    assert frame["pair_id"].is_unique and frame["pair_id"].str.fullmatch(rf"{split}-\d+").all()
    assert frame["pair_id"].iloc[0] == f"{split}-0"
    for aspect in ("empathy", "event", "emotion", "moral"):
        assert frame[aspect].dtype == float
        assert frame[aspect].between(1, 4).all()
        assert ((frame[aspect] * 2) % 1 == 0).all()  # aggregated in 0.5 steps
    assert set(frame["label"]) == {0, 1}
    assert (frame["label"] == (frame["empathy"] > 2.5)).all()
    # Texts are stripped and present (the released summaries start with a newline).
    for column in ("story_a", "story_b", "summary_a", "summary_b"):
        assert (frame[column].str.len() > 0).all() and not frame[column].str.startswith("\n").any()
    assert (frame["source_split"] == split).all()


def test_empathic_stories_resplit_is_documented_and_deterministic():
    splits, info = stories.prepare_empathic_stories(ES_SOURCES, ES_SETTINGS, seed=42)
    again, info_again = stories.prepare_empathic_stories(ES_SOURCES, ES_SETTINGS, seed=42)
    other, _ = stories.prepare_empathic_stories(ES_SOURCES, ES_SETTINGS, seed=7)
    assert info["resplit"] is True and info["seed"] == 42
    assert info["counts"] == {"train": 300, "dev": 50, "test": 150}
    assert info["pooled_from"] == {"dev": 100, "test": 400}
    assert "RE-SPLIT" in info["note"] and "seed 42" in info["note"]
    ids = {name: set(frame["pair_id"]) for name, frame in splits.items()}
    assert not (ids["train"] & ids["dev"]) and not (ids["train"] & ids["test"]) and not (ids["dev"] & ids["test"])
    assert len(ids["train"] | ids["dev"] | ids["test"]) == 500
    for name in splits:
        pd.testing.assert_frame_equal(splits[name], again[name])
    assert info == info_again
    assert set(other["test"]["pair_id"]) != ids["test"]
    # Both source splits end up in the re-split training data.
    assert set(splits["train"]["source_split"]) == {"dev", "test"}


def test_empathic_stories_all_splits_given_are_used_as_released():
    sources = {"train": str(ES / "PAIRS_test.csv"), "dev": ES_SOURCES["dev"], "test": ES_SOURCES["test"]}
    splits, info = stories.prepare_empathic_stories(sources, {**sources, "resplit": ES_SETTINGS["resplit"]}, seed=1)
    assert info["resplit"] is False
    assert info["counts"] == {"train": 400, "dev": 100, "test": 400}
    assert splits["dev"]["pair_id"].iloc[0] == "dev-0"


def test_resplit_counts_and_order_independence():
    assert dataset_sources._split_counts(10, {"train": 0.6, "dev": 0.1, "test": 0.3}) == {"train": 6, "dev": 1, "test": 3}
    # 7 * (0.6, 0.1, 0.3) = 4.2, 0.7, 2.1: floors 4, 0, 2, the one left over goes to the largest remainder.
    assert dataset_sources._split_counts(7, {"train": 0.6, "dev": 0.1, "test": 0.3}) == {"train": 4, "dev": 1, "test": 2}
    ids = [f"x{i}" for i in range(50)]
    forward = dataset_sources.resplit_ids(ids, {"a": 0.5, "b": 0.5}, seed=3)
    backward = dataset_sources.resplit_ids(list(reversed(ids)), {"a": 0.5, "b": 0.5}, seed=3)
    assert {k: set(v) for k, v in forward.items()} == {k: set(v) for k, v in backward.items()}
    assert forward["a"] == sorted(forward["a"], key=ids.index)  # input order kept inside a split


# --------------------------------------------------------------------------------------------
# Urdu story pairs


def test_urdu_stories_real():
    pairs, ratings = stories.load_urdu_stories(URDU / "Urdu_Dataset_Annotation.csv", URDU / "cleaned_urdu_stories.csv")
    assert len(pairs) == 291
    assert list(pairs["pair_id"][:2]) == ["urdu-0", "urdu-1"]
    assert list(ratings.columns) == ["item_id", "annotator", "aspect", "score"]
    assert len(ratings) == 291 * 4 * 3  # the release has no missing rating
    assert set(ratings["annotator"]) == {"person_1", "person_2", "person_3", "person_4"}
    assert set(ratings["aspect"]) == {"event", "emotion", "empathy"}
    assert ratings["score"].between(1, 4).all()
    # Recomputed means agree with the released averages (first row: 4, 2.5, 4, 4 -> 3.625).
    raw = pd.read_csv(URDU / "Urdu_Dataset_Annotation.csv")
    assert pairs["empathy"].tolist() == pytest.approx(raw["Emp_AVG"].tolist())
    assert pairs["event"].tolist() == pytest.approx(raw["Event_AVG"].tolist())
    assert pairs.loc[0, "empathy"] == pytest.approx(3.625)
    assert (pairs["label"] == (pairs["empathy"] > 2.5)).all()
    first = ratings[(ratings["item_id"] == "urdu-0") & (ratings["aspect"] == "event")]
    assert first["score"].tolist() == [4.0, 2.5, 4.0, 3.0]


def test_urdu_missing_rating_is_an_absent_row(tmp_path):
    annotations = pd.read_csv(URDU / "Urdu_Dataset_Annotation.csv").head(3)
    annotations.loc[1, "Person_2_empathy_score"] = None
    annotations = annotations.drop(columns=["Emp_AVG"])  # the released average no longer applies
    annotations.to_csv(tmp_path / "a.csv", index=False)
    pd.read_csv(URDU / "cleaned_urdu_stories.csv").head(3).to_csv(tmp_path / "s.csv", index=False)
    pairs, ratings = stories.load_urdu_stories(tmp_path / "a.csv", tmp_path / "s.csv")
    assert len(ratings) == 3 * 12 - 1
    row = ratings[(ratings["item_id"] == "urdu-1") & (ratings["aspect"] == "empathy")]
    assert row["annotator"].tolist() == ["person_1", "person_3", "person_4"]
    assert pairs.loc[1, "empathy"] == pytest.approx(row["score"].mean())  # (4 + 3.5 + 2.5) / 3


# --------------------------------------------------------------------------------------------
# EmpatheticDialogues


@functools.lru_cache(maxsize=None)
def _valid_records():
    return dialogues.ed_conversations(dialogues.read_ed_rows(ED_VALID))


def test_empathetic_dialogues_real_valid():
    records = _valid_records()
    assert len(records) == 2303
    assert sum(len(r["turns"]) for r in records) == 9879
    assert {r["emotion"] for r in records} == set(dialogues.ED_EMOTIONS) and len(dialogues.ED_EMOTIONS) == 32
    first = records[0]
    assert first["conv_id"] == "hit:4_conv:8" and first["emotion"] == "angry"
    assert first["situation"] == "I once lost my job and got mad."
    assert [t["role"] for t in first["turns"]] == ["speaker", "listener", "speaker", "listener"]
    assert first["turns"][2]["text"] == "Yes, it was a complete surprise."  # _comma_ decoded
    for record in records:
        assert record["turns"][0]["role"] == "speaker"
        assert len({t["speaker_idx"] for t in record["turns"]}) == 2
        assert all(isinstance(t["speaker_idx"], int) for t in record["turns"])
        assert not any("_comma_" in t["text"] for t in record["turns"]) and "_comma_" not in record["situation"]


def test_empathetic_dialogues_resplit_by_conversation():
    splits, info = dialogues.prepare_empathetic_dialogues(ED_SOURCES, ED_SETTINGS, seed=42)
    again, _ = dialogues.prepare_empathetic_dialogues(ED_SOURCES, ED_SETTINGS, seed=42)
    assert info["resplit"] is True and info["pooled_from"] == {"valid": 2303}
    # 2303 x (0.8, 0.1, 0.1) = 1842.4, 230.3, 230.3: the leftover conversation goes to train.
    assert info["counts"] == {"train": 1843, "valid": 230, "test": 230}
    assert sum(info["counts"].values()) == 2303 and sum(info["utterances"].values()) == 9879
    ids = {name: {r["conv_id"] for r in records} for name, records in splits.items()}
    assert sum(map(len, ids.values())) == 2303 and len(set.union(*ids.values())) == 2303
    assert splits == again
    assert json.dumps(splits["test"], sort_keys=True) == json.dumps(again["test"], sort_keys=True)


def test_empathetic_dialogues_release_layout_edge_cases(tmp_path):
    path = tmp_path / "ed.csv"
    path.write_text(
        ED_HEADER
        # utterances out of order, a 9th field (the test file's distractors), CRLF, U+2028 in text
        + "c1,2,proud,I won_comma_ finally.,7,Great_comma_ well done!,,,cand1|cand2\r\n"
        + "c1,1,proud,I won_comma_ finally.,3,I won the race\u2028today.,5|5|5_2|2|5,\r\n"
        + "\n"
        + "c2,1,sad,My dog died.,9,My dog died.,,\n",
        encoding="utf-8",
    )
    records = dialogues.ed_conversations(dialogues.read_ed_rows(path))
    assert [r["conv_id"] for r in records] == ["c1", "c2"]
    assert records[0]["situation"] == "I won, finally."
    assert records[0]["turns"] == [
        {"speaker_idx": 3, "role": "speaker", "text": "I won the race\u2028today."},
        {"speaker_idx": 7, "role": "listener", "text": "Great, well done!"},
    ]
    assert records[1]["turns"] == [{"speaker_idx": 9, "role": "speaker", "text": "My dog died."}]


def test_empathetic_dialogues_hf_dispatch(monkeypatch):
    """The hf: path cannot download here; the fetch function is replaced by rows of the same shape
    (what datasets.load_dataset yields), everything after it is the real code."""
    calls = []

    def fake_hf_rows(dataset_id, split):
        calls.append((dataset_id, split))
        return [
            {"conv_id": "h1", "utterance_idx": 1, "context": "joyful", "prompt": "Got a job_comma_ yay", "speaker_idx": 1,
             "utterance": "I got the job!", "selfeval": "", "tags": None},
            {"conv_id": "h1", "utterance_idx": 2, "context": "joyful", "prompt": "Got a job_comma_ yay", "speaker_idx": 2,
             "utterance": "Congrats_comma_ friend", "selfeval": "", "tags": None},
        ]

    monkeypatch.setattr(dialogues, "_hf_rows", fake_hf_rows)
    records = dialogues.ed_conversations(dialogues.ed_rows("hf:facebook/empathetic_dialogues", "valid"))
    assert calls == [("facebook/empathetic_dialogues", "validation")]
    assert records[0]["situation"] == "Got a job, yay"
    assert [t["role"] for t in records[0]["turns"]] == ["speaker", "listener"]
    dialogues.ed_conversations(dialogues.ed_rows("hf:someone/ed_copy:dev", "valid"))
    assert calls[-1] == ("someone/ed_copy", "dev")
    bad = lambda dataset_id, split: [{"conv_id": "h", "utterance_idx": 1, "context": "meh", "prompt": "p",
                                       "speaker_idx": 1, "utterance": "u", "selfeval": "", "tags": ""}]
    monkeypatch.setattr(dialogues, "_hf_rows", bad)
    with pytest.raises(io.InputError, match=r"hf:facebook/empathetic_dialogues \(test\): row 0.*'meh'"):
        dialogues.ed_conversations(dialogues.ed_rows("hf:facebook/empathetic_dialogues", "test"))


@pytest.fixture
def http_server(tmp_path):
    """A real HTTP server on localhost serving tmp_path/served (urllib does the real download)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_sources_download_once_and_parse(tmp_path, http_server):
    served, base = http_server
    lines = ED_VALID.read_text(encoding="utf-8").split("\n")
    (served / "valid.csv").write_text("\n".join(lines[:41]) + "\n", encoding="utf-8")
    # The release tarball layout: empatheticdialogues/{train,valid,test}.csv
    release = tmp_path / "empatheticdialogues"
    release.mkdir()
    shutil.copy(served / "valid.csv", release / "valid.csv")
    (release / "test.csv").write_text(ED_HEADER + "t1,1,sad,s,1,u,,\n", encoding="utf-8")
    with tarfile.open(served / "empatheticdialogues.tar.gz", "w:gz") as tar:
        tar.add(release, arcname="empatheticdialogues")
    downloads = tmp_path / "downloads"

    direct = dialogues.ed_conversations(dialogues.ed_rows(f"{base}/valid.csv", "valid", downloads))
    expected = dialogues.ed_conversations(dialogues.read_ed_rows(served / "valid.csv"))
    assert direct == expected and len(direct) >= 9
    from_tar = dialogues.ed_conversations(dialogues.ed_rows(f"{base}/empatheticdialogues.tar.gz", "test", downloads))
    assert [r["conv_id"] for r in from_tar] == ["t1"]
    assert len(list(downloads.glob("*-valid.csv"))) == 1 and len(list(downloads.glob("*.tar.gz"))) == 1
    # Downloaded once: with the server's file gone, the cached copy is used.
    (served / "valid.csv").unlink()
    assert dialogues.ed_conversations(dialogues.ed_rows(f"{base}/valid.csv", "valid", downloads)) == expected
    with pytest.raises(io.InputError, match=r"missing\.csv: download failed"):
        dataset_sources.fetch(f"{base}/missing.csv", downloads)
    assert not list(downloads.glob("*missing*"))  # no partial file left


# --------------------------------------------------------------------------------------------
# EPITOME, MMLU, lexicons


def test_epitome_real():
    table = epitome_data.load_epitome(EPITOME)
    assert list(table.columns) == ["mechanism", "sp_id", "rp_id", "seeker_post", "response_post", "level",
                                   "rationales"]
    assert (table["rationales"] != "").sum() > 1000  # the annotators marked spans for level 1 and 2
    assert table["mechanism"].value_counts().to_dict() == {"er": 3084, "ip": 3084, "ex": 3084}
    assert set(table["level"]) == {0, 1, 2} and table["level"].dtype.kind == "i"
    er = table[table["mechanism"] == "er"]["level"].value_counts().to_dict()
    assert er == {0: 2037, 1: 895, 2: 152}


def test_mmlu_real():
    table = mmlu.load_mmlu(RESOURCES / "mmlu")
    assert list(table.columns) == mmlu.MMLU_COLUMNS
    assert table["subject"].nunique() == 57
    assert table["split"].value_counts().to_dict() == {"test": 14080, "dev": 285}
    assert (table[table["split"] == "dev"].groupby("subject").size() == 5).all()
    assert set(table["answer"]) == set("ABCD")
    # Options such as "None" stay text (pandas' NA parsing would make them NaN).
    assert not table[["A", "B", "C", "D"]].isna().any().any()
    assert (table[["A", "B", "C", "D"]] == "None").any().any()


def test_lexicons_real():
    vad = lexicons.load_vad(RESOURCES / "lexicons" / "NRC-VAD-Lexicon.txt")
    assert len(vad) == 19971 and list(vad.columns) == ["word", "valence", "arousal", "dominance"]
    assert vad.iloc[0].tolist() == ["aaaaaaah", 0.479, 0.606, 0.291]  # no header line in the shipped file
    for column in ("valence", "arousal", "dominance"):
        assert vad[column].dtype == float and vad[column].between(0, 1).all()
    assert {"null", "true", "false"} <= set(vad["word"])  # words, not missing values
    intensity = lexicons.load_intensity(RESOURCES / "lexicons" / "NRC-Emotion-Intensity-Lexicon.txt")
    assert len(intensity) == 9829 and list(intensity.columns) == ["word", "emotion", "intensity"]
    assert set(intensity["emotion"]) == lexicons.NRC_EMOTIONS and len(lexicons.NRC_EMOTIONS) == 8
    assert intensity["intensity"].between(0, 1).all()


def test_lexicon_with_header_line(tmp_path):
    path = tmp_path / "vad.txt"
    path.write_text("Word\tValence\tArousal\tDominance\nnull\t0.2\t0.3\t0.4\nhappy\t1.000\t0.735\t0.772\n")
    vad = lexicons.load_vad(path)
    assert vad["word"].tolist() == ["null", "happy"] and vad["valence"].tolist() == [0.2, 1.0]


# --------------------------------------------------------------------------------------------
# Through Snakemake


DATA_TARGETS = [
    "results/data/empathic_stories/train.csv", "results/data/empathic_stories/dev.csv",
    "results/data/empathic_stories/test.csv", "results/data/empathic_stories/split_info.json",
    "results/data/urdu_stories/pairs.csv", "results/data/urdu_stories/ratings.csv",
    "results/data/empathetic_dialogues/train.jsonl", "results/data/empathetic_dialogues/valid.jsonl",
    "results/data/empathetic_dialogues/test.jsonl", "results/data/empathetic_dialogues/split_info.json",
    "results/data/epitome/epitome.csv", "results/data/mmlu/questions.csv",
    "results/data/lexicons/vad.csv", "results/data/lexicons/intensity.csv",
]


def test_data_rules_through_snakemake(tmp_path):
    snakemake(tmp_path, "--cores", "2", *DATA_TARGETS)
    for target in DATA_TARGETS:
        assert (tmp_path / target).is_file() and (tmp_path / target).stat().st_size > 0, target
    info = io.read_json(tmp_path / "results/data/empathic_stories/split_info.json")
    assert info["resplit"] is True and info["counts"] == {"train": 300, "dev": 50, "test": 150}
    assert info["sources"]["dev"] == "resources/data/empathic_stories/PAIRS_dev.csv"  # as configured, portable
    test = io.read_prepared(tmp_path / "results/data/empathic_stories/test.csv")
    expected, _ = stories.prepare_empathic_stories(ES_SOURCES, ES_SETTINGS, seed=42)
    assert test["pair_id"].tolist() == expected["test"]["pair_id"].tolist()
    ed = {s: io.read_jsonl(tmp_path / f"results/data/empathetic_dialogues/{s}.jsonl") for s in ("train", "valid", "test")}
    assert sum(map(len, ed.values())) == 2303
    assert set(ed["train"][0]) == {"conv_id", "emotion", "situation", "turns", "source_split"}
    ratings = io.read_prepared(tmp_path / "results/data/urdu_stories/ratings.csv")
    assert len(ratings) == 3492
    vad = io.read_prepared(tmp_path / "results/data/lexicons/vad.csv")
    assert len(vad) == 19971 and "null" in set(vad["word"])
    assert len(io.read_prepared(tmp_path / "results/data/mmlu/questions.csv")) == 14365
    assert len(io.read_prepared(tmp_path / "results/data/epitome/epitome.csv")) == 9252
    # No temporary files left beside the outputs.
    assert not list((tmp_path / "results/data").rglob("*.tmp"))
