"""Config validation: the schema and the checks beyond it, in-process (validate_config) and through
`snakemake -n` with a bad --configfile. Every message names the dotted key; nothing runs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY_CONFIG, merge_config, snakemake
from empathy_workflow.core.config import ConfigError, validate_config

SCHEMA = REPO / "schemas" / "config.schema.yaml"
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())
FULL_SCALE = sorted((REPO / "configs").glob("*.yaml"))


def merged(*overrides: dict) -> dict:
    """config.yaml with overrides merged key by key, as Snakemake merges --configfile."""
    config = copy.deepcopy(DEFAULT)
    for override in overrides:
        merge_config(config, copy.deepcopy(override))
    return config


def problems(config: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        validate_config(config, SCHEMA, REPO)
    return str(caught.value)


# --------------------------------------------------------------------------------------------
# Valid configurations


def test_default_config_validates():
    validate_config(copy.deepcopy(DEFAULT), SCHEMA, REPO)


def test_tiny_test_config_validates():
    validate_config(merged(yaml.safe_load(TINY_CONFIG.read_text())), SCHEMA, REPO)


@pytest.mark.parametrize("path", FULL_SCALE, ids=[p.name for p in FULL_SCALE])
def test_full_scale_configs_validate(path):
    validate_config(merged(yaml.safe_load(path.read_text())), SCHEMA, REPO)


def test_paper_scale_similarity_lifts_the_laptop_caps():
    """The default config scores a subset with truncated narratives to fit its CPU budget; the
    paper-scale config, merged on top of it, must score every pair with whole summaries."""
    assert DEFAULT["similarity"]["max_test_pairs"] and DEFAULT["similarity"]["llm"]["max_narrative_tokens"]
    config = merged(yaml.safe_load((REPO / "configs" / "similarity_llama3.yaml").read_text()))
    similarity = config["similarity"]
    assert similarity["max_test_pairs"] is None and similarity["llm"]["max_narrative_tokens"] is None
    assert similarity["llm"]["max_train_pairs"] is None and similarity["llm"]["max_steps"] == -1
    assert similarity["zeroshot"]["max_seq_length"] is None


def test_remote_sources_are_accepted_without_a_file_check():
    validate_config(merged({"datasets": {
        "empathetic_dialogues": {"train": "hf:facebook/empathetic_dialogues", "test": "https://example.org/test.csv"},
        "empathic_stories": {"train": "https://example.org/PAIRS_train.csv"},
    }}), SCHEMA, REPO)


# --------------------------------------------------------------------------------------------
# Errors, in-process


def test_typo_in_a_top_level_key():
    message = problems(merged({"agreemnt": {"bootstrap": 10}}))
    assert "config key (top level)" in message and "'agreemnt'" in message and "unknown key" in message


@pytest.mark.parametrize("override, key, name", [
    ({"similarity": {"contrastive": {"lr": 1e-5}}}, "similarity.contrastive", "lr"),
    ({"datasets": {"empathic_stories": {"trian": "x.csv"}}}, "datasets.empathic_stories", "trian"),
    ({"empo": {"preference": {"runs": {"dpo": {"betta": 0.1}}}}}, "empo.preference.runs.dpo", "betta"),
    ({"agreement": {"datasets": {"mine": {"path": "resources/data/urdu_stories/Urdu_Dataset_Annotation.csv",
                                          "scael": {"min": 1, "max": 5}}}}}, "agreement.datasets.mine", "scael"),
])
def test_unknown_nested_key(override, key, name):
    message = problems(merged(override))
    assert f"config key {key}:" in message and f"'{name}'" in message and "unknown key" in message


@pytest.mark.parametrize("override, key, problem", [
    ({"seed": "x"}, "seed", "'x' is not of type 'integer'"),
    ({"similarity": {"contrastive": {"batch_size": "16"}}}, "similarity.contrastive.batch_size", "not of type 'integer'"),
    ({"similarity": {"methods": ["zeroshot", "magic"]}}, "similarity.methods.1", "'magic' is not one of"),
    ({"datasets": {"empathic_stories": {"resplit": {"train": 1.5}}}}, "datasets.empathic_stories.resplit.train",
     "greater than or equal to the maximum of 1"),
    ({"agreement": {"confidence": 0}}, "agreement.confidence", "less than or equal to the minimum of 0"),
])
def test_wrong_type_or_value(override, key, problem):
    message = problems(merged(override))
    assert f"config key {key}:" in message and problem in message


@pytest.mark.parametrize("override, key", [
    ({"datasets": {"urdu_stories": {"stories": "resources/data/urdu_stories/nope.csv"}}}, "datasets.urdu_stories.stories"),
    ({"datasets": {"empathetic_dialogues": {"valid": "missing/valid.csv"}}}, "datasets.empathetic_dialogues.valid"),
    ({"datasets": {"lexicons": {"vad": "/nonexistent/vad.txt"}}}, "datasets.lexicons.vad"),
    ({"agreement": {"datasets": {"mine": {"path": "ratings_nowhere.csv"}}}}, "agreement.datasets.mine.path"),
])
def test_missing_dataset_file(override, key):
    message = problems(merged(override))
    assert f"config key {key}: file" in message and "does not exist" in message


def test_missing_mmlu_directory():
    message = problems(merged({"datasets": {"mmlu": {"dir": "resources/data/no_mmlu"}}}))
    assert "config key datasets.mmlu.dir: directory 'resources/data/no_mmlu' does not exist" in message


@pytest.mark.parametrize("override, key", [
    ({"similarity": {"zeroshot": {"encoder": "roberta"}}}, "similarity.zeroshot.encoder"),
    ({"similarity": {"llm": {"model": "llama3"}}}, "similarity.llm.model"),
    ({"empo": {"sft": {"model": "zephyr"}}}, "empo.sft.model"),
])
def test_model_not_declared(override, key):
    message = problems(merged(override))
    assert f"config key {key}: model" in message and "is not declared under models" in message


def test_resplit_problems():
    message = problems(merged({"datasets": {"empathic_stories": {"resplit": {"train": 0.5, "dev": 0.1, "test": 0.3}}}}))
    assert "config key datasets.empathic_stories.resplit: fractions sum to 0.9, not 1" in message
    config = merged()
    del config["datasets"]["empathetic_dialogues"]["resplit"]
    message = problems(config)
    assert "config key datasets.empathetic_dialogues: train, test is null and no resplit" in message


def test_every_schema_problem_is_listed_at_once():
    message = problems(merged({"agreemnt": {}, "seed": -1, "similarity": {"text": "title"}}))
    for key in ("(top level)", "seed", "similarity.text"):
        assert f"config key {key}:" in message


# --------------------------------------------------------------------------------------------
# Through Snakemake: `snakemake -n` with a bad --configfile (or --config) fails before any job.


def _dry_run_fails(tmp_path: Path, config: dict, *extra: str) -> str:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "run"
    workdir.mkdir()
    result = snakemake(workdir, "-n", *extra, configfiles=[bad], check=False)
    assert result.returncode != 0
    assert not (workdir / "results").exists()  # nothing ran
    return result.stdout + result.stderr


def test_snakemake_refuses_schema_errors(tmp_path):
    output = _dry_run_fails(
        tmp_path,
        {"agreemnt": {"bootstrap": 10}, "similarity": {"contrastive": {"lr": 1e-5}}},
        "--config", "seed=x",
    )
    assert "invalid configuration" in output
    assert "config key (top level): unknown key(s) ('agreemnt' was unexpected)" in output
    assert "config key similarity.contrastive: unknown key(s) ('lr' was unexpected)" in output
    assert "config key seed: 'x' is not of type 'integer'" in output


def test_snakemake_refuses_missing_files_and_undeclared_models(tmp_path):
    output = _dry_run_fails(tmp_path, {
        "datasets": {"epitome": {"explorations": "resources/data/epitome/typo-reddit.csv"}},
        "similarity": {"zeroshot": {"encoder": "roberta_large"}},
    })
    assert "config key datasets.epitome.explorations: file 'resources/data/epitome/typo-reddit.csv' does not exist" in output
    assert "config key similarity.zeroshot.encoder: model 'roberta_large' is not declared under models" in output
