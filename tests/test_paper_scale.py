"""Issue 13, items 4 and 9-adjacent: the paper configurations planned for a cluster.

A dry run with --profile profiles/slurm on each paper config: every download (hub models, URL /
hf: dataset sources, lm-eval stock task data) is a job of a download rule, those rules are
localrules (the Slurm executor runs them on the submit host), and every GPU rule's job requests a
GPU while no other job does. Compute jobs run with the hub's offline switches on.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, merge_config, snakemake

from empathy_workflow.core import dataset_sources, downloads
from empathy_workflow.core.io import InputError

PAPER_CONFIGS = [REPO / "configs" / "empo_zephyr.yaml", REPO / "configs" / "similarity_llama3.yaml"]
DOWNLOAD_RULES = {"download_model", "download_dataset", "download_lm_eval_task"}
GPU_RULES = {"similarity_train_contrastive", "similarity_train_llm", "similarity_predict", "empo_sft",
             "empo_preference", "empo_generate", "epitome_classifier", "empo_evaluate", "empo_lm_eval"}


def merged(path: Path) -> dict:
    return merge_config(yaml.safe_load((REPO / "config.yaml").read_text()), yaml.safe_load(path.read_text()))


def dry_run_jobs(workdir: Path, *configfiles: Path, profile: bool = True) -> list[dict]:
    """[{"rule", "wildcards", "resources"}] of every job a dry run plans."""
    args = ["-n", "--profile", str(REPO / "profiles" / "slurm")] if profile else ["-n", "--cores", "2"]
    result = snakemake(workdir, *args, configfiles=configfiles)
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", result.stdout + "\n" + result.stderr):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if not head:
            continue
        wildcards = re.search(r"\n\s+wildcards: (.*)", block)
        resources = re.search(r"\n\s+resources: (.*)", block)
        jobs.append({"rule": head.group(1), "wildcards": wildcards.group(1) if wildcards else "",
                     "resources": dict(item.split("=", 1) for item in resources.group(1).split(", "))
                     if resources else {}})
    return jobs


@pytest.mark.parametrize("paper", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_slurm_dry_run_plans_every_download_locally_and_a_gpu_for_every_gpu_rule(paper, tmp_path):
    config = merged(paper)
    jobs = dry_run_jobs(tmp_path, paper)
    downloads_planned = {(job["rule"], job["wildcards"]) for job in jobs if job["rule"] in DOWNLOAD_RULES}
    hub_models = {name for name, entry in config["models"].items() if not entry["source"].startswith("package:")}
    remote = {name for name, entry in config["datasets"].items()
              if any(downloads.is_remote(value) for value in entry.values())}
    stock_tasks = set(config["empo"]["evaluation"]["lm_eval"]["tasks"]) - {"mmlu_local"}
    expected = ({("download_model", f"model={m}") for m in hub_models}
                | {("download_dataset", f"dataset={d}") for d in remote}
                | {("download_lm_eval_task", f"task={t}") for t in stock_tasks})
    assert hub_models and remote, paper  # a paper config downloads something
    assert downloads_planned == expected
    for job in jobs:
        wants = int(job["resources"].get("gpu", 0))
        assert wants == (1 if job["rule"] in GPU_RULES else 0), job
    assert GPU_RULES <= {job["rule"] for job in jobs}


def test_download_rules_are_localrules_and_nothing_else_downloads():
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow = api.workflow(resource_settings=ResourceSettings(),
                                config_settings=ConfigSettings(configfiles=[PAPER_CONFIGS[0]]),
                                storage_settings=StorageSettings(), snakefile=REPO / "Snakefile",
                                workdir=REPO)._workflow
        assert DOWNLOAD_RULES <= workflow._localrules
        # only the download rules' scripts may go online
        for rule in workflow.rules:
            script = Path(rule.basedir) / rule.script if rule.script else None
            if script and "go_online" in script.read_text():
                assert rule.name in DOWNLOAD_RULES, rule.name


def test_compute_jobs_run_with_the_offline_switches_on(tmp_path):
    """A real job, started WITHOUT the switches in Snakemake's environment, logs them on."""
    env = {k: v for k, v in os.environ.items() if k not in downloads.OFFLINE_SWITCHES}
    subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "1",
                    "results/data/lexicons/vad.csv"], cwd=tmp_path, env=env, check=True, capture_output=True,
                   timeout=600)
    log = (tmp_path / "results" / "logs" / "data" / "lexicons.log").read_text()
    assert "hub offline switches: HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1" in log


def test_an_uncached_url_is_refused_offline_with_the_rule_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv(downloads.OFFLINE_FLAG, "1")
    with pytest.raises(InputError, match="download_dataset rule"):
        dataset_sources.fetch("https://example.org/PAIRS%20(train).csv", tmp_path)


def test_gated_leaderboard_data_is_refused_naming_task_and_need(monkeypatch):
    """GPQA (inside `leaderboard`) is gated: without a token the download stops before any job."""
    from lm_eval.tasks import TaskManager

    datasets = downloads.task_datasets("leaderboard", TaskManager())
    assert datasets["leaderboard_gpqa_main"] == "Idavidrein/gpqa"
    assert datasets["leaderboard_bbh_navigate"] == "SaylorTwift/bbh"
    with pytest.raises(downloads.DownloadRefused, match=r"'leaderboard'.*Idavidrein/gpqa.*Hugging Face token"):
        downloads.refuse_gated("leaderboard", datasets, token=None)
    downloads.refuse_gated("leaderboard", datasets, token="hf_x")  # with a token it may try


def test_gpu_run_without_token_stops_before_any_job_naming_the_gated_task(tmp_path, monkeypatch):
    """Issue 13, item 2: a real (not dry) run of the EmPO paper config, which asks for lm-eval's
    `leaderboard` on a GPU, with no Hugging Face token: it stops on the submit host before any job
    (no download, no GPU job), saying which task needs what. A dry run still plans everything."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "hf_home"  # no token file either
    result = snakemake(tmp_path, "--cores", "1", configfiles=[PAPER_CONFIGS[0]], check=False, timeout=600,
                       extra_env={"HF_HOME": str(home)})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert re.search(r"lm-eval task 'leaderboard' cannot be fetched: GPQA .*Idavidrein/gpqa.*Hugging Face token",
                     output), output[-3000:]
    assert "Finished jobid" not in output and not (tmp_path / "results").exists(), output[-3000:]
