"""Shared test set-up: the repository's paths, and a way to run the
workflow in a scratch directory (so tests never touch the user's results/)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import empathy_workflow  # noqa: F401  (first: it sets OMP_WAIT_POLICY before torch loads)

REPO = Path(__file__).resolve().parents[1]
RESOURCES = REPO / "resources" / "data"
TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"


def merge_config(base: dict, extra: dict) -> dict:
    """Merge `extra` into `base` key by key, as Snakemake merges --configfile; returns `base`."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge_config(base[key], value)
        else:
            base[key] = value
    return base


def snakemake(workdir: Path, *args: str, configfiles=(), check: bool = True, timeout: float = 3600,
              extra_env: dict | None = None):
    """Run the workflow with `workdir` as its working directory (`extra_env`: more environment
    variables for its jobs); return the CompletedProcess."""
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir)]
    if configfiles:  # one flag: Snakemake keeps only the last of several --configfile flags
        command += ["--configfile", *map(str, configfiles)]
    command += list(args)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", **(extra_env or {}))
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-5000:]}\n{result.stderr[-8000:]}")
    return result


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def resources() -> Path:
    return RESOURCES


@pytest.fixture(scope="session")
def workflow_dir(tmp_path_factory) -> Path:
    """One scratch working directory shared by the session's workflow runs (models are
    prepared once and reused). $EMPATHY_TEST_WORKFLOW_DIR names a directory to use instead (a
    developer's finished tiny run, kept between pytest calls; Snakemake reruns only what changed)."""
    reuse = os.environ.get("EMPATHY_TEST_WORKFLOW_DIR")
    return Path(reuse) if reuse else tmp_path_factory.mktemp("workflow")


@pytest.fixture(scope="session")
def prepared_models(workflow_dir) -> Path:
    """results/models/{policy,encoder} made by the real prepare_model rule."""
    snakemake(workflow_dir, "--cores", "2", "results/models/policy", "results/models/encoder",
              configfiles=[TINY_CONFIG])
    return workflow_dir / "results" / "models"


@pytest.fixture(scope="session")
def tiny_run(prepared_models, workflow_dir) -> Path:
    """The whole workflow, run once to completion on the tiny test configuration."""
    snakemake(workflow_dir, "--cores", "2", configfiles=[TINY_CONFIG])
    return workflow_dir
