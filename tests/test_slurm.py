"""The Slurm profile (profiles/slurm) on a real Slurm: a single-node cluster started here.

The test installs Debian's slurm-wlm and munge with apt-get (CI starts from a fresh machine),
starts munged, slurmctld and slurmd on localhost (tests/slurm/local_slurm.py), runs a slice of
the workflow through `--profile` with the few overrides a cluster without accounting needs,
and checks that every job went through Slurm with the profile's requests and that the outputs
equal a local run's byte for byte. It is skipped only where apt-get itself is missing.
"""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY_CONFIG, snakemake

import local_slurm  # tests/slurm (pyproject.toml: pytest pythonpath)

PROFILE = REPO / "profiles" / "slurm" / "config.yaml"

# The workflow slice run on Slurm and locally. Extend it as stages land (e.g. the SFT adapter
# "results/empo/models/sft" with tests/configs/tiny.yaml); one output per job is enough.
SLURM_TARGETS = [
    "results/data/empathic_stories/train.csv",
    "results/data/urdu_stories/pairs.csv",
    "results/data/empathetic_dialogues/train.jsonl",
    "results/data/epitome/epitome.csv",
    "results/data/mmlu/questions.csv",
    "results/data/lexicons/vad.csv",
    "results/models/encoder",
    # a GPU rule (issue 13, item 9): submitted with --gpus=1 to the node's stand-in GPU
    "results/similarity/zeroshot/urdu_stories/metrics.json",
]
# The rules that declare a GPU (resources: gpu=GPU_PER_JOB in rules/*.smk; 1 unless device: cpu).
GPU_RULES = {"empo_sft", "empo_preference", "empo_generate", "empo_lm_eval", "similarity_train_llm",
             "similarity_train_contrastive", "similarity_predict", "epitome_classifier", "empo_evaluate"}
# Files whose content legitimately differs between two runs.
VOLATILE = ("results/logs/", "results/benchmarks/")
TIMINGS: dict[str, float] = {}


def test_profile_sizes_gpu_rules_and_grows_with_attempts():
    """The GPU itself is declared by the rules (tests/test_gpu_placement.py); the profile gives
    the GPU rules their CPU cores per GPU and more memory and time on each retry."""
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["executor"] == "slurm"
    assert "gpu" not in profile["default-resources"]
    # A default cpus_per_task would override cpus_per_gpu on GPU rules (plugin 2.8.0).
    assert "cpus_per_task" not in profile["default-resources"]
    # a gpu here would override the rules' own request (0 under device: cpu)
    assert not any("gpu" in res for res in profile["set-resources"].values())
    sized = {rule for rule, res in profile["set-resources"].items() if res.get("cpus_per_gpu")}
    assert sized == GPU_RULES
    for rule in GPU_RULES:
        res = profile["set-resources"][rule]
        assert res["cpus_per_gpu"] == profile["set-threads"][rule]
        # Model rules get more memory and time on each retry.
        for key in ("mem_mb", "runtime"):
            first, second = (_evaluate(res[key], attempt) for attempt in (1, 2))
            assert second > first > 0, (rule, key)
    assert profile["retries"] >= 1
    assert set(profile["set-threads"]) == GPU_RULES


def test_profile_names_only_existing_rules(tmp_path):
    result = snakemake(tmp_path, "--list-rules")
    rules = set(result.stdout.split())
    profile = yaml.safe_load(PROFILE.read_text())
    assert set(profile["set-resources"]) <= rules
    assert set(profile["set-threads"]) <= rules


def _evaluate(value, attempt: int = 1) -> int:
    """A profile resource as Snakemake evaluates it (plain number or expression of `attempt`)."""
    return int(eval(str(value), {"attempt": attempt}))


def _expected(profile: dict, rule: str, key: str):
    value = profile.get("set-resources", {}).get(rule, {}).get(key, profile["default-resources"].get(key))
    return None if value is None else _evaluate(value)


def _test_profile(directory: Path) -> dict:
    """profiles/slurm with the overrides this cluster needs, as a profile directory."""
    profile = yaml.safe_load(PROFILE.read_text())
    profile["default-resources"]["slurm_partition"] = local_slurm.LocalSlurm.PARTITION
    profile["default-resources"].pop("slurm_account", None)
    profile["slurm-status-command"] = "squeue"  # sacct never answers without slurmdbd
    profile["slurm-init-seconds-before-status-checks"] = 3  # short jobs: poll early
    profile["slurm-keep-successful-logs"] = True  # evidence, checked below
    profile["jobs"] = 4  # short jobs, mostly waiting for the status checks
    # Thread counts as in the local reference run (the rules' own, 1): torch results depend on them.
    profile["set-threads"] = {rule: 1 for rule in profile.get("set-threads", {})}
    for resources in profile.get("set-resources", {}).values():
        if "cpus_per_gpu" in resources:
            resources["cpus_per_gpu"] = 1
    directory.mkdir(parents=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return profile


def _result_files(workdir: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted((workdir / "results").rglob("*")):
        rel = path.relative_to(workdir).as_posix()
        if path.is_file() and not rel.startswith(VOLATILE) and path.name != ".snakemake_timestamp":
            files[rel] = path.read_bytes()
    return files


@pytest.fixture(scope="module")
def slurm_cluster():
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get is not available on this machine, so slurm-wlm and munge cannot be installed "
                    "(the Slurm test needs a Debian/Ubuntu system)")
    prefix = local_slurm.root_prefix()
    if prefix is None:
        pytest.fail("the Slurm test must run as root or with password-less sudo (apt-get, slurmd)")
    TIMINGS["apt_install_s"] = local_slurm.install(prefix)
    cluster = local_slurm.LocalSlurm(prefix)
    start = time.monotonic()
    try:
        cluster.start()
        TIMINGS["cluster_start_s"] = time.monotonic() - start
        yield cluster
    finally:
        cluster.stop()
        cluster.cleanup()
        print("slurm test timings (s):", {k: round(v, 1) for k, v in TIMINGS.items()})


def test_workflow_runs_as_slurm_jobs_and_matches_a_local_run(slurm_cluster, tmp_path, monkeypatch):
    assert slurm_cluster.node_state() == "idle"
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))

    profile = _test_profile(tmp_path / "profile")
    local, cluster_dir = tmp_path / "local", tmp_path / "cluster"
    local.mkdir()
    cluster_dir.mkdir()
    # The Slurm run spends most of its time waiting for status checks: the local reference
    # run goes alongside it.
    runs = {}

    def run_on_slurm():
        start = time.monotonic()
        runs["slurm"] = snakemake(cluster_dir, "--profile", str(tmp_path / "profile"), *SLURM_TARGETS,
                                  configfiles=[TINY_CONFIG], check=False, timeout=1200)
        TIMINGS["slurm_run_s"] = time.monotonic() - start

    slurm_thread = threading.Thread(target=run_on_slurm)
    slurm_thread.start()
    start = time.monotonic()
    try:
        local_run = snakemake(local, "--cores", "2", *SLURM_TARGETS, configfiles=[TINY_CONFIG])
        TIMINGS["local_run_s"] = time.monotonic() - start
    finally:
        slurm_thread.join()
    local_rules = Counter(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", local_run.stderr + local_run.stdout))
    assert local_rules, local_run.stderr[-3000:]

    run = runs["slurm"]
    output = run.stdout + run.stderr
    assert run.returncode == 0, (f"{output[-6000:]}\nslurmctld:\n{slurm_cluster.tail('slurmctld')}\n"
                                 f"slurmd:\n{slurm_cluster.tail('slurmd')}")

    # Every job of the slice was a Slurm job of this run, and completed.
    run_id = re.search(r"SLURM run ID: (\S+)", output).group(1)
    jobs = [job for job in slurm_cluster.jobs() if job["name"] == run_id]
    assert jobs and all(job["state"] == "COMPLETED" for job in jobs), jobs
    slurm_rules = Counter()
    for job in jobs:
        rule = next(r for r in local_rules if job["comment"] == f"rule_{r}" or job["comment"].startswith(f"rule_{r}_wildcards_"))
        slurm_rules[rule] += 1
        # Slurm wrote the job's own log (the job's Snakemake running that one rule).
        logs = list((cluster_dir / ".snakemake" / "slurm_logs" / f"rule_{rule}").rglob(f"{job['id']}.log"))
        assert logs and f"rule {rule}" in logs[0].read_text().replace("Rule: ", "rule "), (rule, logs)
        # The profile's requests reached Slurm.
        details = slurm_cluster.job_details(job["id"])
        assert details["MinMemoryNode"] == f"{_expected(profile, rule, 'mem_mb')}M", (rule, details)
        minutes = _expected(profile, rule, "runtime")
        assert details["TimeLimit"] == f"{minutes // 60:02d}:{minutes % 60:02d}:00", (rule, details)
        # GPU rules asked Slurm for the node's (stand-in) GPU, and only they did
        asked_gpu = bool(re.search(r"gres[:/]gpu[:=]1\b", details.get("TresPerJob", "")))
        assert asked_gpu == (rule in GPU_RULES), (rule, details)
    assert slurm_rules == local_rules
    assert slurm_rules["similarity_predict"] == 1  # the GPU rule was submitted, and completed above
    gpu_log = (cluster_dir / "results" / "logs" / "similarity" / "predict_zeroshot_urdu_stories.log").read_text()
    assert "config device: auto, GPUs requested: 1" in gpu_log, gpu_log[-2000:]

    # Same bytes as the local run.
    local_files, cluster_files = _result_files(local), _result_files(cluster_dir)
    assert sorted(cluster_files) == sorted(local_files)
    different = [name for name in local_files if local_files[name] != cluster_files[name]]
    assert not different, different
