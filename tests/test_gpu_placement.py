"""Issue 13, items 6 and 7: where GPU jobs run.

- device: cuda on a machine without a usable GPU stops the job at once with a clear error;
  device: cpu hides every GPU from the job.
- On a K-GPU workstation, `snakemake --cores N --resources gpu=K` runs at most K GPU jobs at once
  and each sees only its own GPU: tested with K=2 stand-in slots (EMPATHY_GPU_SLOTS), with
  Snakemake's real scheduler and the real lock-file pool (empathy_workflow/gpu_slots.py).
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

from conftest import REPO

from empathy_workflow import runtime

SLOT_SNAKEFILE = """
import os
os.environ["PYTHONPATH"] = "{scripts}"

rule all:
    input: expand("job{{i}}.json", i=range(5))

rule gpu_job:
    output: "job{{i}}.json"
    log: "job{{i}}.log"
    resources: gpu=1
    params: device="auto"
    script: "job.py"
"""

SLOT_SCRIPT = """
import json, os, time
from empathy_workflow import runtime
runtime.start(snakemake)
start = time.time()
time.sleep(1.5)
json.dump({"gpu": os.environ["CUDA_VISIBLE_DEVICES"], "start": start, "end": time.time()},
          open(snakemake.output[0], "w"))
"""


def test_two_gpus_two_jobs_at_a_time_each_on_its_own(tmp_path):
    (tmp_path / "Snakefile").write_text(SLOT_SNAKEFILE.format(scripts=REPO / "workflow_scripts"))
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
        sys.path.insert(0, {str(REPO / 'workflow_scripts')!r})
        from empathy_workflow import gpu_slots
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
    """The rules that run torch models declare gpu=GPU_PER_JOB and pass config `device`."""
    gpu_rules = {"similarity_train_contrastive", "similarity_train_llm", "similarity_predict", "empo_sft",
                 "empo_preference", "empo_generate", "epitome_classifier", "epitome_classifier_given",
                 "empo_evaluate", "empo_lm_eval"}
    import re

    found = set()
    for path in (REPO / "rules").glob("*.smk"):
        for block in re.split(r"\n(?=\s*rule )", path.read_text()):
            name = re.match(r"\s*rule (\w+):", block)
            if name and "gpu=GPU_PER_JOB" in block:
                assert 'device=config["device"]' in block, name.group(1)
                found.add(name.group(1))
    assert found == gpu_rules
