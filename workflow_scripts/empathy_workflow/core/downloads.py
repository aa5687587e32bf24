"""Every download of the workflow, in one place: the download rules (rules/downloads.smk), which
run on the machine Snakemake is started on (localrules: on a cluster, the login node, which has
network), fill the cache named by the config key `download_cache`. Every other job runs with the
hub's offline switches on (rules/common.smk) and reads only that cache.

What is fetched: hub models (snapshot_download), URL and `hf:` dataset sources, and the data of
lm-eval's stock tasks (`mmlu`, `leaderboard`, ...). Data that cannot be fetched here (a gated
dataset without a token, an unreachable hub) is refused before any compute job starts, with the
task and what it needs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import yaml

from empathy_workflow.core.io import InputError

logger = logging.getLogger(__name__)


OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


# Set for every job by rules/common.smk; dataset_sources.fetch refuses to reach the network under it.
OFFLINE_FLAG = "EMPATHY_OFFLINE"


# Hub datasets and models that need an account that accepted their terms, and who uses them.
GATED_DATASETS = {"Idavidrein/gpqa": "GPQA (leaderboard_gpqa_*: lm-eval's leaderboard group)"}


GATED_MODEL_PREFIXES = ("meta-llama/",)


TOKEN_HELP = ("a Hugging Face token of an account that accepted its terms on the hub page "
              "(export HF_TOKEN=... or `hf auth login` on the machine that runs Snakemake)")


class DownloadRefused(InputError):
    """Data the run needs cannot be fetched on this machine; says what and what it needs."""


def offline_environment(cache: str | os.PathLike) -> dict[str, str]:
    """Environment of every job: the hub cache inside `cache`, the offline switches on."""
    env = {name: "1" for name in OFFLINE_SWITCHES}
    env.update({OFFLINE_FLAG: "1", "HF_HOME": str(Path(cache).resolve() / "huggingface"),
                "EMPATHY_DOWNLOAD_CACHE": str(cache)})
    return env


def go_online() -> None:
    """Turn the offline switches off for this (download) job. Must run before huggingface_hub,
    datasets or transformers are imported: they read the switches once, at import."""
    import sys

    early = [name for name in ("huggingface_hub", "datasets", "transformers") if name in sys.modules]
    if early:
        raise RuntimeError(f"go_online() after {', '.join(early)} was imported: the offline switches are fixed")
    for name in OFFLINE_SWITCHES + (OFFLINE_FLAG,):
        os.environ[name] = "0"


def hf_token() -> str | None:
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token
    try:
        from huggingface_hub import get_token

        return get_token()
    except ImportError:
        return None


class _IgnoreTags(yaml.SafeLoader):
    """lm-eval task configs carry `!function` tags; dataset names are plain YAML."""


_IgnoreTags.add_multi_constructor("!", lambda loader, suffix, node: None)


def _leaf_config(yaml_path: Path) -> dict:
    """A task config with its `include` chain resolved (the keys the download needs)."""
    config = yaml.load(yaml_path.read_text(), Loader=_IgnoreTags) or {}
    include = config.get("include")
    if include:
        base = _leaf_config((yaml_path.parent / include).resolve())
        base.update({k: v for k, v in config.items() if k != "include"})
        config = base
    return config


def task_datasets(task: str, manager) -> dict[str, str]:
    """{leaf task: hub dataset path} of an lm-eval task or group, read from the task configs
    (no download): which data a task needs, and whether any of it is gated."""
    index = manager.task_index
    if task not in index:
        raise InputError(f"config key empo.evaluation.lm_eval.tasks: unknown lm-eval task {task!r}")
    entry = index[task]
    members = entry.cfg.get("task") if isinstance(entry.cfg, dict) else None
    if members and str(entry.kind).endswith("GROUP"):
        found: dict[str, str] = {}
        for member in members:
            name = member if isinstance(member, str) else member.get("task")
            if isinstance(name, str):
                found.update(task_datasets(name, manager))
        return found
    if str(entry.kind).endswith("TAG"):
        found = {}
        for name, other in index.items():
            if task in (other.tags or set()):
                found.update(task_datasets(name, manager))
        return found
    config = _leaf_config(Path(entry.yaml_path))
    return {task: str(config.get("dataset_path"))}


def refuse_gated(task: str, datasets: dict[str, str], token: str | None) -> None:
    """Stop (before any GPU time) when a task needs a gated dataset and no token is here."""
    if token:
        return
    gated = sorted({path for path in datasets.values() if path in GATED_DATASETS})
    if gated:
        leaves = sorted(leaf for leaf, path in datasets.items() if path in gated)
        raise DownloadRefused(
            f"lm-eval task {task!r} cannot be fetched: {', '.join(GATED_DATASETS[g] for g in gated)} reads the gated "
            f"dataset(s) {', '.join(gated)} (subtasks {', '.join(leaves)}), which needs {TOKEN_HELP}. "
            f"Nothing was run; provide the token, or remove {task!r} from config key empo.evaluation.lm_eval.tasks.")


def fetch_lm_eval_task(task: str, manifest: str | os.PathLike) -> dict:
    """Download every dataset of an lm-eval stock task into the hub cache; write a manifest."""
    go_online()
    from lm_eval.tasks import TaskManager, get_task_dict

    manager = TaskManager()
    datasets = task_datasets(task, manager)
    refuse_gated(task, datasets, hf_token())
    logger.info("lm-eval task %s: fetching %d dataset(s): %s", task, len(set(datasets.values())),
                ", ".join(sorted(set(datasets.values()))))
    try:
        get_task_dict([task], manager)  # builds every subtask, which downloads its data
    except Exception as error:  # noqa: BLE001 - datasets/hub raise many types; all mean "not fetched"
        raise DownloadRefused(
            f"lm-eval task {task!r}: its data ({', '.join(sorted(set(datasets.values())))}) could not be fetched on "
            f"this machine ({type(error).__name__}: {error}). This download runs where Snakemake runs (a localrule) "
            f"and needs the Hugging Face hub there.") from error
    details = {"task": task, "datasets": datasets, "hf_home": os.environ.get("HF_HOME")}
    _write_manifest(manifest, details)
    return details


def fetch_model(name: str, settings: dict, output: str | os.PathLike) -> dict:
    """snapshot_download of a hub model into the cache (models.prepare_hub_model)."""
    go_online()
    from empathy_workflow.core.models import prepare_hub_model

    source = settings["source"]
    if source.startswith(GATED_MODEL_PREFIXES) and not hf_token():
        raise DownloadRefused(f"config key models.{name}.source: {source} is a gated model; downloading it needs "
                              f"{TOKEN_HELP}")
    try:
        return prepare_hub_model(source, Path(output), settings.get("revision"))
    except Exception as error:  # noqa: BLE001
        raise DownloadRefused(f"config key models.{name}.source: {source} could not be downloaded on this machine "
                              f"({type(error).__name__}: {error})") from error


def fetch_dataset(name: str, sources: dict[str, str | None], cache: str | os.PathLike,
                  manifest: str | os.PathLike) -> dict:
    """URL sources into the cache (dataset_sources.fetch), `hf:` sources into the hub cache (load_dataset)."""
    go_online()
    from empathy_workflow.core import dataset_sources

    fetched = {}
    for key, source in sources.items():
        if source is None:
            continue
        if dataset_sources.is_url(source):
            fetched[key] = str(dataset_sources.fetch(source, cache))
        elif dataset_sources.is_hf(source):
            dataset_id, _, split = source[3:].partition(":")
            split = split or dataset_sources.ED_HF_SPLITS.get(key, key)
            try:
                rows = dataset_sources._hf_rows(dataset_id, split)
            except Exception as error:  # noqa: BLE001
                raise DownloadRefused(f"config key datasets.{name}.{key}: {source} could not be fetched on this "
                                      f"machine ({type(error).__name__}: {error})") from error
            fetched[key] = f"{dataset_id} ({split}): {len(rows)} rows in {os.environ.get('HF_HOME')}"
    _write_manifest(manifest, {"dataset": name, "fetched": fetched})
    return fetched


def _write_manifest(path: str | os.PathLike, details: dict) -> None:
    from empathy_workflow.core.io import write_json

    write_json(path, details)


def is_remote(source) -> bool:
    return isinstance(source, str) and source.startswith(("http://", "https://", "hf:"))
