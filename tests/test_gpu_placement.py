"""Issue 13, items 6 and 7: where GPU jobs run.

- device: cuda on a machine without a usable GPU stops the job at once with a clear error;
  device: cpu hides every GPU from the job.
- On a K-GPU workstation, `snakemake --cores N --resources gpu=K` runs at most K GPU jobs at once
  and each sees only its own GPU: tested with K=2 stand-in slots (EMPATHY_GPU_SLOTS), with
  Snakemake's real scheduler and the real lock-file pool (empathy_workflow/core/gpu_slots.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REPO, TINY_CONFIG, snakemake

from empathy_workflow.core import runtime

SLOT_SNAKEFILE = """
rule all:
    input: expand("job{i}.json", i=range(5))

rule gpu_job:
    output: "job{i}.json"
    log: "job{i}.log"
    resources: gpu=1
    params: device="auto"
    script: "job.py"
"""

SLOT_SCRIPT = """
import json, os, time
from empathy_workflow.core import runtime
runtime.start(snakemake)
start = time.time()
time.sleep(1.5)
json.dump({"gpu": os.environ["CUDA_VISIBLE_DEVICES"], "start": start, "end": time.time()},
          open(snakemake.output[0], "w"))
"""


def test_two_gpus_two_jobs_at_a_time_each_on_its_own(tmp_path):
    (tmp_path / "Snakefile").write_text(SLOT_SNAKEFILE)
    (tmp_path / "job.py").write_text(SLOT_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
    env.update(EMPATHY_GPU_SLOTS="0,1")
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", "4", "--resources", "gpu=2"], cwd=tmp_path,
                   env=env, check=True, capture_output=True, timeout=300)
    jobs = [json.loads((tmp_path / f"job{i}.json").read_text()) for i in range(5)]
    assert {job["gpu"] for job in jobs} == {"0", "1"}
    for i, job in enumerate(jobs):
        overlapping = [other for j, other in enumerate(jobs)
                       if j != i and other["start"] < job["end"] and job["start"] < other["end"]]
        assert len(overlapping) <= 1, jobs  # never more than K=2 at once
        assert all(other["gpu"] != job["gpu"] for other in overlapping), jobs  # never two on one GPU


def test_a_claim_waits_for_a_free_slot_and_releases_on_exit(tmp_path):
    """Without --resources the pool still never puts two jobs on one GPU: the third waits."""
    claim = textwrap.dedent(f"""
        import os, sys, time
        from empathy_workflow.core import gpu_slots
        start = time.time()
        gpu_slots.claim(1, lock_dir={str(tmp_path / 'locks')!r}, poll_s=0.1)
        print(os.environ["CUDA_VISIBLE_DEVICES"], round(time.time() - start, 2), flush=True)
        time.sleep(1.5)
    """)
    env = dict(os.environ, EMPATHY_GPU_SLOTS="0,1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    first = [subprocess.Popen([sys.executable, "-c", claim], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    time.sleep(0.8)
    third = subprocess.Popen([sys.executable, "-c", claim], env=env, stdout=subprocess.PIPE, text=True)
    outputs = [p.communicate(timeout=60)[0].split() for p in first + [third]]
    assert sorted(gpu for gpu, _ in outputs[:2]) == ["0", "1"]
    assert outputs[2][0] in ("0", "1") and float(outputs[2][1]) > 0.3  # waited for a release


class _Job:
    """The attributes of Snakemake's script object that runtime.place_job reads."""

    def __init__(self, device, gpu=1):
        self.params = {"device": device}
        self.resources = {"gpu": gpu}
        self.rule = "empo_sft"


def test_device_cuda_without_a_gpu_stops_at_once(monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a usable GPU")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # as Slurm sets it for a job with --gpus=1

    def no_waiting(seconds):
        raise AssertionError(f"place_job waited ({seconds} s) instead of stopping")

    # "at once": no wait for a GPU slot (no wall-clock limit, which fails on a loaded machine)
    monkeypatch.setattr(time, "sleep", no_waiting)
    with pytest.raises(runtime.DeviceError, match=r"rule empo_sft: device: cuda, but torch finds no usable CUDA"):
        runtime.place_job(_Job("cuda"), runtime.setup_logging(None))
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"  # the scheduler's GPU, not a slot claimed here


def test_device_cpu_hides_the_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert runtime.place_job(_Job("cpu"), runtime.setup_logging(None)) == "cpu"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""


def test_every_gpu_rule_declares_its_gpu_and_reads_the_device():
    """The rules that run torch models declare their GPU through gpu_request (GPU_PER_JOB, none on
    the retry of a device error) under their own name, and pass config `device`."""
    gpu_rules = {"similarity_train_contrastive", "similarity_train_llm", "similarity_predict", "empo_sft",
                 "empo_preference", "empo_generate", "epitome_classifier", "epitome_classifier_given",
                 "empo_evaluate", "empo_lm_eval"}
    import re

    found = set()
    for path in (REPO / "rules").glob("*.smk"):
        for block in re.split(r"\n(?=\s*rule )", path.read_text()):
            name = re.match(r"\s*rule (\w+):", block)
            assert not (name and "gpu=GPU_PER_JOB" in block), f"{name.group(1)}: gpu=gpu_request(...)"
            if name and "gpu=gpu_request(" in block:
                assert f'gpu=gpu_request("{name.group(1)}")' in block, name.group(1)
                assert 'device=config["device"]' in block, name.group(1)
                found.add(name.group(1))
    assert found == gpu_rules


def test_device_cuda_without_a_gpu_fails_once_and_its_retries_do_not_repeat_it(tmp_path):
    """Issue 13, item 6, with Snakemake's real scheduler and retries: device: cuda on this CPU-only
    machine. The GPU job's first attempt stops in seconds with the clear error; its two retries
    ask for no GPU and stop at once with that first error (no model loaded, no second GPU wait);
    the CPU jobs it depends on ran normally, and a later run starts with a clean first attempt."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a usable GPU")
    target = "results/similarity/zeroshot/urdu_stories/metrics.json"
    started = time.monotonic()
    result = snakemake(tmp_path, "--cores", "1", target, "--retries", "2", "--config", "device=cuda",
                       configfiles=[TINY_CONFIG], check=False, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    # the job was tried three times (Snakemake's retries are on) ...
    assert output.count("Error in rule similarity_predict:") == 3, output[-5000:]
    assert output.count("Trying to restart job") == 2, output[-5000:]
    # ... the first attempt with its GPU, the retries without one
    import re

    gpus = [int(g) for g in re.findall(r"(?m)^(?:local)?rule similarity_predict:\n(?:.*\n)*?\s+resources: .*?\bgpu=(\d+)", output)]
    assert gpus == [1, 0, 0], gpus
    marker = tmp_path / runtime.device_error_marker("similarity_predict",
                                                     {"method": "zeroshot", "testset": "urdu_stories"})
    assert "device: cuda, but torch finds no usable CUDA GPU" in marker.read_text()
    log = (tmp_path / "results" / "logs" / "similarity" / "predict_zeroshot_urdu_stories.log").read_text()
    # the log of the last attempt: refused before any model was loaded, naming the first error
    assert re.search(r"rule similarity_predict: not retried: an earlier attempt of this job stopped with: "
                     r"device: cuda, but torch finds no usable CUDA GPU", log), log[-3000:]
    assert "device: cpu" not in log and "loaded" not in log.lower(), log[-3000:]
    assert output.count("Logfile results/logs/similarity/predict_zeroshot_urdu_stories.log: empty file") == 0
    assert not (tmp_path / target).exists()
    # the CPU jobs before it ran (prepare_model, prepare_urdu_stories)
    assert (tmp_path / "results" / "data" / "urdu_stories" / "pairs.csv").exists()
    assert time.monotonic() - started < 600
    # A later run (here on the CPU) is a first attempt again: the marker is gone, the job runs.
    snakemake(tmp_path, "--cores", "1", target, "--retries", "2", "--config", "device=cpu",
              configfiles=[TINY_CONFIG], timeout=900)
    assert (tmp_path / target).exists() and not marker.exists()


def test_gpu_check_refuses_without_cuda_unless_asked():
    """benchmarks/gpu_check.py (issue 13's GPU check): on a machine without CUDA it exits 2 at once
    with the reason, instead of running its GPU steps on the CPU (the --allow-cpu dry mode's
    output is in benchmarks/gpu.md; the script has not met a GPU yet)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a usable GPU: run benchmarks/gpu_check.py itself")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py")], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no usable CUDA GPU" in result.stderr and "--allow-cpu" in result.stderr
