"""configs/rehearsal.yaml: the paper configurations, run for real on a CPU, offline.

The overlay may change only model sources, dataset sources, size caps, quantization and the
device (test_overlay_touches_only_sources_caps_quantization_and_device). The rehearsal runs of
both paper configs (test_rehearsal_of_*) execute every rule of the paper config's DAG with the
hub's offline switches on; lm-eval's stock tasks, whose data cannot be shipped, are refused by
their download rule with a message naming the task and its need, and only the jobs that need
them do not run.

CI runs both rehearsals (`make test`; EMPATHY_SKIP_REHEARSAL=1 skips them for a quick local run).
Cost, 2026-12-07, at nice 10 on 2 cores: 198 s wall for the similarity rehearsal (1-minute load
average about 2.2, its own two jobs) and 429 s for the EmPO one (load about 3.8, other jobs beside
it), 802 CPU s for the module in all: about 7 minutes for both on 2 idle cores (README, "Rehearsal
on a CPU").
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO, snakemake

OVERLAY = REPO / "configs" / "rehearsal.yaml"
PAPER = {"empo": REPO / "configs" / "empo_zephyr.yaml", "similarity": REPO / "configs" / "similarity_llama3.yaml"}
# Size caps: how many steps, examples, pairs, conversations, subjects, test questions, resamples.
SIZE_CAPS = {"max_steps", "max_train_pairs", "max_narrative_tokens", "max_test_pairs", "max_conversations",
             "max_eval_examples", "max_examples", "max_train_examples", "max_held_out_examples", "limit",
             "subjects", "permutations", "bootstrap", "max_new_tokens"}
DATASET_SOURCE_KEYS = {"train", "dev", "test", "valid", "annotations", "stories", "emotional_reactions",
                       "interpretations", "explorations", "dir", "vad", "intensity"}


def leaves(node: dict, prefix: tuple = ()) -> list[tuple]:
    found = []
    for key, value in node.items():
        if isinstance(value, dict) and value:
            found += leaves(value, prefix + (key,))
        else:
            found.append(prefix + (key,))
    return found


def kind(path: tuple) -> str | None:
    """What an overlay key changes, or None when it is not one of the allowed kinds."""
    if path == ("device",):
        return "device"
    if len(path) == 3 and path[0] == "models" and path[2] == "source":
        return "model source"
    if len(path) == 3 and path[0] == "datasets" and path[2] in DATASET_SOURCE_KEYS:
        return "dataset source"
    if path[-1] == "quantization":
        return "quantization"
    if any(part in SIZE_CAPS for part in path):
        return "size cap"
    return None


def exists(path: tuple, config: dict) -> bool:
    node = config
    for part in path[:-1]:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return isinstance(node, dict) and (path[-1] in node or path[-2:-1] == ("max_conversations",))


def test_overlay_touches_only_sources_caps_quantization_and_device():
    overlay = yaml.safe_load(OVERLAY.read_text())
    configs = [yaml.safe_load((REPO / "config.yaml").read_text())] + [yaml.safe_load(p.read_text()) for p in PAPER.values()]
    for path in leaves(overlay):
        assert kind(path) is not None, f"configs/rehearsal.yaml changes {'.'.join(path)}, which is not a source, size cap, quantization or device"
        # no new key: it overrides one the paper configs (or the defaults under them) have
        assert any(exists(path, config) for config in configs), f"{'.'.join(path)} is in no config it overlays"
    # every hub model of each paper config is replaced (offline, CPU)
    for paper in PAPER.values():
        models = yaml.safe_load(paper.read_text())["models"]
        assert set(models) <= set(overlay["models"]), paper.name
        assert all(entry["source"].startswith("package:") for entry in overlay["models"].values())


def test_overlay_check_catches_a_learning_rate():
    """The check itself: a hyperparameter in the overlay is not one of the allowed kinds."""
    assert kind(("empo", "sft", "learning_rate")) is None
    assert kind(("empo", "system_prompt")) is None
    assert kind(("similarity", "contrastive", "loss")) is None
    assert kind(("empo", "preference", "runs", "dpo", "beta")) is None


def _finished_and_failed(output: str) -> tuple[list[str], list[str]]:
    finished = re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", output)
    failed = re.findall(r"Error in rule (\w+):", output)
    return finished, failed


def _configs(paper: Path) -> tuple[str, ...]:
    """ONE --configfile flag with both files: a second flag replaces the first (argparse), so the
    conftest helper's configfiles=[...] (one flag each) would rehearse config.yaml, not the paper."""
    return ("--configfile", str(paper), str(OVERLAY))


def _planned(workdir: Path, paper: Path) -> dict[str, int]:
    result = snakemake(workdir, "-n", "--cores", "2", *_configs(paper))
    assert f"Config file(s): [PosixPath('{paper}'), PosixPath('{OVERLAY}')" in result.stdout + result.stderr
    table = re.search(r"job\s+count\n-+\s+-+\n(.*?)\ntotal", result.stdout, re.S).group(1)
    return {line.split()[0]: int(line.split()[1]) for line in table.strip().splitlines()}


# No way to the hub and no token, whatever the machine offers: the stock tasks' downloads are
# refused the same way everywhere (CI machines may have network).
NO_HUB = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "", "HUGGING_FACE_HUB_TOKEN": ""}


def _offline_logs(workdir: Path) -> None:
    for log in (workdir / "results" / "logs").rglob("*.log"):
        text = log.read_text(errors="replace")
        if "hub offline switches" in text and "/downloads/" not in str(log):
            assert "HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1" in text, log


# CI (`make test`) runs both rehearsals (their cost: the module docstring). EMPATHY_SKIP_REHEARSAL=1
# skips them for a quick local run.
rehearsal = pytest.mark.skipif(os.environ.get("EMPATHY_SKIP_REHEARSAL") == "1",
                               reason="EMPATHY_SKIP_REHEARSAL=1: the rehearsal runs are skipped")


@rehearsal
def test_rehearsal_of_similarity_llama3_runs_every_rule(tmp_path):
    planned = _planned(tmp_path, PAPER["similarity"])
    result = snakemake(tmp_path, "--cores", "2", *_configs(PAPER["similarity"]), timeout=3000, extra_env=NO_HUB)
    finished, failed = _finished_and_failed(result.stdout + result.stderr)
    assert not failed
    counts = {rule: finished.count(rule) for rule in set(finished)}
    assert counts == planned
    _offline_logs(tmp_path)


@rehearsal
def test_rehearsal_of_empo_zephyr_runs_every_rule_but_refuses_stock_task_data(tmp_path):
    planned = _planned(tmp_path, PAPER["empo"])
    assert planned["download_lm_eval_task"] == 2  # mmlu and leaderboard: planned, not skipped
    result = snakemake(tmp_path, "--cores", "2", "--keep-going", *_configs(PAPER["empo"]), check=False,
                       timeout=3000, extra_env=NO_HUB)
    output = result.stdout + result.stderr
    finished, failed = _finished_and_failed(output)
    assert result.returncode != 0
    # only the stock tasks' downloads fail, each with its reason
    assert sorted(failed) == ["download_lm_eval_task", "download_lm_eval_task"], failed
    logs = tmp_path / "results" / "logs" / "downloads"
    leaderboard = (logs / "lm_eval_leaderboard.log").read_text()
    assert re.search(r"lm-eval task 'leaderboard' cannot be fetched: GPQA .*Idavidrein/gpqa.*Hugging Face token",
                     leaderboard), leaderboard[-2000:]
    mmlu = (logs / "lm_eval_mmlu.log").read_text()
    assert "lm-eval task 'mmlu': its data (cais/mmlu) could not be fetched on this machine" in mmlu, mmlu[-2000:]
    # every other rule of the paper config ran; only what needs the refused data did not
    blocked = {"download_lm_eval_task", "empo_lm_eval", "empo_metrics", "report", "all"}
    counts = {rule: finished.count(rule) for rule in set(finished)}
    assert counts == {rule: n for rule, n in planned.items() if rule not in blocked}
    _offline_logs(tmp_path)
