"""Broken copies of the real files: each loader fails with an InputError naming the file, the row
or line or column, and the problem; through Snakemake the job fails and leaves no output."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import RESOURCES, snakemake
from empathy_workflow.empo import dialogues, epitome_data, lexicons, mmlu
from empathy_workflow.similarity import stories
from empathy_workflow.core.io import InputError

ES_DEV = RESOURCES / "empathic_stories" / "PAIRS_dev.csv"
URDU_A = RESOURCES / "urdu_stories" / "Urdu_Dataset_Annotation.csv"
URDU_S = RESOURCES / "urdu_stories" / "cleaned_urdu_stories.csv"
ED_VALID = RESOURCES / "empathetic_dialogues" / "valid.csv"
EPITOME = {
    "emotional_reactions": RESOURCES / "epitome" / "emotional-reactions-reddit.csv",
    "interpretations": RESOURCES / "epitome" / "interpretations-reddit.csv",
    "explorations": RESOURCES / "epitome" / "explorations-reddit.csv",
}
VAD = RESOURCES / "lexicons" / "NRC-VAD-Lexicon.txt"
INTENSITY = RESOURCES / "lexicons" / "NRC-Emotion-Intensity-Lexicon.txt"


def fails(call, path: Path, *fragments: str) -> str:
    """Run `call`; it must raise InputError whose message names `path` and every fragment."""
    with pytest.raises(InputError) as caught:
        call()
    message = str(caught.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert re.search(fragment, message), f"{fragment!r} not in {message!r}"
    return message


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# EmpathicStories


def test_es_truncated_inside_a_quoted_story(tmp_path):
    text = ES_DEV.read_text(encoding="utf-8")
    broken = tmp_path / "PAIRS_dev.csv"
    broken.write_text(text[: len(text) // 2], encoding="utf-8")  # ends inside a quoted story
    fails(lambda: stories.load_empathic_stories(broken, "dev"), broken, "malformed", "EOF inside string")


def test_es_truncated_row_is_missing_its_scores(tmp_path):
    text = pd.read_csv(ES_DEV).iloc[:3].to_csv(index=False)
    # The last (third) row loses its final four fields, the numeric scores: no quote left open.
    broken = tmp_path / "PAIRS_dev.csv"
    broken.write_text(text.rstrip("\n").rsplit(",", 4)[0] + "\n", encoding="utf-8")
    fails(lambda: stories.load_empathic_stories(broken, "dev"), broken, "row 4", "similarity_", "not a number")


def test_es_missing_column(tmp_path):
    broken = tmp_path / "PAIRS_dev.csv"
    pd.read_csv(ES_DEV).drop(columns=["similarity_empathy_human_AGG"]).to_csv(broken, index=False)
    fails(lambda: stories.load_empathic_stories(broken, "dev"), broken, "lacks column", "similarity_empathy_human_AGG")


def test_es_score_off_the_scale(tmp_path):
    frame = pd.read_csv(ES_DEV)
    frame.loc[6, "similarity_event_human_AGG"] = 5.0
    broken = tmp_path / "PAIRS_dev.csv"
    frame.to_csv(broken, index=False)
    fails(lambda: stories.load_empathic_stories(broken, "dev"), broken, "row 8", "similarity_event_human_AGG",
          r"off the scale \[1.0, 4.0\]")


def test_es_extra_field_in_a_row(tmp_path):
    text = pd.read_csv(ES_DEV).iloc[:5].to_csv(index=False).rstrip("\n")
    broken = tmp_path / "PAIRS_dev.csv"
    broken.write_text(text + ",surplus\n", encoding="utf-8")  # the last row has a 15th field
    fails(lambda: stories.load_empathic_stories(broken, "dev"), broken, "malformed", "Expected 14 fields")


@pytest.mark.parametrize("content, problem", [("", "file is empty"), (",story_A,story_B\n", "header but no rows")])
def test_es_empty_file(tmp_path, content, problem):
    broken = tmp_path / "PAIRS_dev.csv"
    broken.write_text(content)
    fails(lambda: stories.load_empathic_stories(broken, "dev"), broken, problem)


# --------------------------------------------------------------------------------------------
# Urdu


def test_urdu_rating_off_the_scale(tmp_path):
    frame = pd.read_csv(URDU_A)
    frame.loc[10, "Person_3_event_score"] = 7
    broken = tmp_path / "Urdu_Dataset_Annotation.csv"
    frame.to_csv(broken, index=False)
    fails(lambda: stories.load_urdu_stories(broken, URDU_S), broken, "row 12", "Person_3_event_score", "off the scale")


def test_urdu_rating_not_a_number(tmp_path):
    lines = lines_of(URDU_A)
    lines[5] = "x" + lines[5][1:]  # file line 6 (the header is line 1)
    broken = write(tmp_path / "Urdu_Dataset_Annotation.csv", lines)
    fails(lambda: stories.load_urdu_stories(broken, URDU_S), broken, "row 6", "Person_1_event_score", "not a number")


def test_urdu_row_count_mismatch(tmp_path):
    broken = tmp_path / "cleaned_urdu_stories.csv"
    pd.read_csv(URDU_S).iloc[:-1].to_csv(broken, index=False)
    message = fails(lambda: stories.load_urdu_stories(URDU_A, broken), broken, "291 rows", "has 290")
    assert str(URDU_A) in message


def test_urdu_average_disagrees_with_ratings(tmp_path):
    frame = pd.read_csv(URDU_A)
    frame.loc[3, "Emp_AVG"] = 1.0
    broken = tmp_path / "Urdu_Dataset_Annotation.csv"
    frame.to_csv(broken, index=False)
    fails(lambda: stories.load_urdu_stories(broken, URDU_S), broken, "row 5", "Emp_AVG", "not the mean")


def test_urdu_missing_annotator_column(tmp_path):
    broken = tmp_path / "Urdu_Dataset_Annotation.csv"
    pd.read_csv(URDU_A).drop(columns=["Person_2_emotion_score"]).to_csv(broken, index=False)
    fails(lambda: stories.load_urdu_stories(broken, URDU_S), broken, "lacks column", "Person_2_emotion_score")


def test_urdu_empty_story(tmp_path):
    frame = pd.read_csv(URDU_S)
    frame.loc[2, "story_B"] = ""
    broken = tmp_path / "cleaned_urdu_stories.csv"
    frame.to_csv(broken, index=False)
    fails(lambda: stories.load_urdu_stories(URDU_A, broken), broken, "row 4", "story_B", "empty")


# --------------------------------------------------------------------------------------------
# EmpatheticDialogues


def load_ed(path):
    return dialogues.ed_conversations(dialogues.read_ed_rows(path))


def test_ed_unknown_emotion_label(tmp_path):
    lines = lines_of(ED_VALID)
    parts = lines[100].split(",")
    parts[2] = "melancholic"
    lines[100] = ",".join(parts)
    broken = write(tmp_path / "valid.csv", lines)
    fails(lambda: load_ed(broken), broken, "line 101", "'context'", "unknown emotion label 'melancholic'")


def test_ed_truncated_file(tmp_path):
    text = ED_VALID.read_text(encoding="utf-8")
    cut = text.index("\n", len(text) // 2) + 30  # 30 characters into a line: too few fields
    broken = tmp_path / "valid.csv"
    broken.write_text(text[:cut], encoding="utf-8")
    line = text[:cut].count("\n") + 1
    fails(lambda: load_ed(broken), broken, f"line {line}", "fields, expected 8", "truncated or malformed")


def test_ed_missing_column(tmp_path):
    lines = lines_of(ED_VALID)
    lines[0] = lines[0].replace("speaker_idx", "speaker")
    broken = write(tmp_path / "valid.csv", lines)
    fails(lambda: load_ed(broken), broken, "line 1", "missing column", "speaker_idx")


def test_ed_bad_utterance_index(tmp_path):
    lines = lines_of(ED_VALID)
    parts = lines[7].split(",")
    parts[1] = "two"
    lines[7] = ",".join(parts)
    broken = write(tmp_path / "valid.csv", lines)
    fails(lambda: load_ed(broken), broken, "line 8", "'utterance_idx'", "'two' is not an integer")


def test_ed_standard_quoted_csv_is_not_the_release_layout(tmp_path):
    # A re-saved copy with standard quoting: commas inside quotes break the release's layout
    # only when they add fields; here the situation gains a raw comma -> a field too many,
    # so speaker_idx reads text.
    lines = lines_of(ED_VALID)
    lines[1] = lines[1].replace("I once lost my job and got mad.", '"I once lost my job, and got mad."')
    broken = write(tmp_path / "valid.csv", lines)
    fails(lambda: load_ed(broken), broken, "line 2", "'speaker_idx'", "not an integer")


def test_ed_empty_file(tmp_path):
    broken = tmp_path / "valid.csv"
    broken.write_text("")
    fails(lambda: load_ed(broken), broken, "empty")
    header_only = tmp_path / "header.csv"
    header_only.write_text(lines_of(ED_VALID)[0] + "\n")
    sources = {"train": None, "valid": str(header_only), "test": None}
    fails(lambda: dialogues.prepare_empathetic_dialogues(sources, {"resplit": {"train": 0.8, "valid": 0.1, "test": 0.1}}, 1),
          header_only, "no conversations")


# --------------------------------------------------------------------------------------------
# EPITOME, MMLU, lexicons


def test_epitome_bad_level(tmp_path):
    frame = pd.read_csv(EPITOME["interpretations"], keep_default_na=False, dtype=str)
    frame.loc[20, "level"] = "3"
    broken = tmp_path / "interpretations-reddit.csv"
    frame.to_csv(broken, index=False)
    fails(lambda: epitome_data.load_epitome({**EPITOME, "interpretations": broken}), broken, "row 22", "'level'",
          "'3' is not an EPITOME level")


def test_epitome_missing_column(tmp_path):
    broken = tmp_path / "explorations-reddit.csv"
    pd.read_csv(EPITOME["explorations"]).drop(columns=["response_post"]).to_csv(broken, index=False)
    fails(lambda: epitome_data.load_epitome({**EPITOME, "explorations": broken}), broken, "lacks column", "response_post")


def copy_mmlu(tmp_path: Path) -> Path:
    root = tmp_path / "mmlu"
    for split in ("dev", "test"):
        (root / split).mkdir(parents=True)
        for subject in ("sociology", "anatomy"):
            name = f"{subject}_{split}.csv"
            (root / split / name).write_bytes((RESOURCES / "mmlu" / split / name).read_bytes())
    return root


def test_mmlu_bad_answer_and_shape(tmp_path):
    root = copy_mmlu(tmp_path)
    assert len(mmlu.load_mmlu(root)) > 0
    target = root / "test" / "sociology_test.csv"
    frame = pd.read_csv(target, header=None, keep_default_na=False, dtype=str)
    frame.loc[4, 5] = "E"
    frame.to_csv(target, header=False, index=False)
    fails(lambda: mmlu.load_mmlu(root), target, "row 5", "answer", "'E' is not A, B, C or D")
    frame.drop(columns=[4]).to_csv(target, header=False, index=False)
    fails(lambda: mmlu.load_mmlu(root), target, "5 columns, expected 6")
    empty = tmp_path / "nothing"
    (empty / "test").mkdir(parents=True)
    fails(lambda: mmlu.load_mmlu(empty), empty, "no MMLU test")


def test_vad_value_off_range_and_malformed_line(tmp_path):
    lines = lines_of(VAD)
    lines[9] = lines[9].rsplit("\t", 1)[0] + "\t1.7"
    broken = write(tmp_path / "vad.txt", lines)
    fails(lambda: lexicons.load_vad(broken), broken, "line 10", "'dominance'", r"not a number in \[0, 1\]")
    lines = lines_of(VAD)
    lines[12] = lines[12].rsplit("\t", 1)[0]
    broken = write(tmp_path / "vad.txt", lines)
    fails(lambda: lexicons.load_vad(broken), broken, "line 13", "3 tab-separated fields, expected 4")


def test_intensity_unknown_emotion(tmp_path):
    lines = lines_of(INTENSITY)
    lines[30] = lines[30].replace("\tanger\t", "\tboredom\t")
    broken = write(tmp_path / "intensity.txt", lines)
    fails(lambda: lexicons.load_intensity(broken), broken, "line 31", "unknown emotion 'boredom'")


# --------------------------------------------------------------------------------------------
# Through Snakemake: the jobs fail, the message names the file, no output is left behind.


def test_bad_inputs_fail_their_snakemake_jobs(tmp_path):
    lines = lines_of(ED_VALID)
    parts = lines[50].split(",")
    parts[2] = "bored"
    lines[50] = ",".join(parts)
    broken_ed = write(tmp_path / "broken_valid.csv", lines)
    frame = pd.read_csv(URDU_A)
    frame.loc[0, "Person_1_empathy_score"] = 9
    broken_urdu = tmp_path / "broken_annotations.csv"
    frame.to_csv(broken_urdu, index=False)
    extra = tmp_path / "broken.yaml"
    extra.write_text(yaml.safe_dump({"datasets": {
        "empathetic_dialogues": {"valid": str(broken_ed)},
        "urdu_stories": {"annotations": str(broken_urdu)},
    }}))
    workdir = tmp_path / "run"
    workdir.mkdir()
    targets = ["results/data/empathetic_dialogues/train.jsonl", "results/data/urdu_stories/pairs.csv"]
    result = snakemake(workdir, "--cores", "2", "--keep-going", *targets, configfiles=[extra], check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{broken_ed}: line 51, column 'context': unknown emotion label 'bored'" in output, output[-4000:]
    assert f"{broken_urdu}: row 2, column 'Person_1_empathy_score'" in output
    logs = workdir / "results" / "logs" / "data"
    assert "unknown emotion label 'bored'" in (logs / "empathetic_dialogues.log").read_text()
    assert "off the scale" in (logs / "urdu_stories.log").read_text()
    leftovers = [p for p in (workdir / "results" / "data").rglob("*") if p.is_file()] \
        if (workdir / "results" / "data").exists() else []
    assert leftovers == []
