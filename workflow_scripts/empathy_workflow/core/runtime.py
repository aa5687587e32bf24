"""What every rule script does first: log to the rule's log file, seed everything, cap threads."""

from __future__ import annotations

import logging
import os
import random
import sys

import numpy as np

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_path: str | None = None, name: str = "empathy_workflow") -> logging.Logger:
    """Log to stderr and, when given, to the rule's log file (the file Snakemake shows on failure)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w", encoding="utf-8"))
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, handlers=handlers, force=True)
    # Library chatter (transformers, datasets) stays at warning level.
    for noisy in ("httpx", "urllib3", "filelock", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (if imported) torch, and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules or _torch_available():
        import torch

        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)


def _torch_available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("torch") is not None
    except ValueError:
        return False


class DeviceError(RuntimeError):
    """The config asks for a device this job cannot use."""


def select_device(requested: str = "auto") -> str:
    """'cuda' or 'cpu' for the config's `device` (auto|cuda|cpu). auto takes a usable CUDA GPU when
    the job sees one; cuda without one raises at once instead of falling back to a CPU run that
    would crawl until its time limit."""
    if requested not in ("auto", "cuda", "cpu"):
        raise DeviceError(f"device: expected auto, cuda or cpu, got {requested!r}")
    if requested == "cpu":
        return "cpu"
    try:
        import torch
    except ImportError:  # an environment without torch (data, analysis) has no GPU to use
        torch = None
    if torch is not None and torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)")
        build = f"torch {torch.__version__}, CUDA build: {torch.version.cuda}" if torch else "torch not installed"
        raise DeviceError(
            f"device: cuda, but torch finds no usable CUDA GPU in this job ({build}, "
            f"CUDA_VISIBLE_DEVICES={visible}); check the job's GPU request and the installed torch build"
        )
    return "cpu"


# Where a job that met a DeviceError leaves its message (relative to the working directory, which a
# cluster's compute nodes share). rules/common.smk's gpu_request reads it: the job's retries ask for
# no GPU, and place_job refuses them at once, so Snakemake's retries do not repeat a device error.
DEVICE_ERROR_DIR = os.path.join("results", "logs", "device_errors")


def device_error_marker(rule: str, wildcards=None) -> str:
    """The marker file of one job (rule + its wildcards) whose device check failed."""
    items = sorted(dict(wildcards or {}).items())
    name = rule + "".join(f"__{key}-{value}" for key, value in items)
    return os.path.join(DEVICE_ERROR_DIR, name.replace(os.sep, "_") + ".txt")


def place_job(snakemake, logger: logging.Logger) -> str | None:
    """Where a torch rule runs, decided before CUDA starts: None for rules without a `device`
    param; else 'cuda' or 'cpu' (select_device). A job that declares `gpu` resources on a machine
    whose GPUs no scheduler assigned (a workstation) claims its own GPU(s) (gpu_slots.py);
    device: cpu hides every GPU, so the library's torch.cuda checks all say no."""
    params = snakemake.params
    device = params.get("device") if hasattr(params, "get") else None
    if device is None:
        return None
    resources = snakemake.resources
    wanted = int((resources.get("gpu") if hasattr(resources, "get") else 0) or 0)
    wildcards = getattr(snakemake, "wildcards", None)
    marker = device_error_marker(snakemake.rule, wildcards if hasattr(wildcards, "items") else None)
    if device != "cpu" and not wanted and os.path.exists(marker):
        # A retry of a job whose first attempt found no usable CUDA: gpu_request gave it no GPU;
        # stop before torch or a model is touched instead of repeating the failure.
        with open(marker, encoding="utf-8") as handle:
            first = handle.read().strip()
        message = (f"rule {snakemake.rule}: not retried: an earlier attempt of this job stopped with: {first} "
                   f"(a new Snakemake run tries again; {marker} holds the message)")
        logger.error(message)
        raise DeviceError(message)
    if os.path.exists(marker):
        os.remove(marker)  # left by an earlier Snakemake run: this is a first attempt again
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    elif wanted:
        from empathy_workflow.core import gpu_slots

        if not gpu_slots.assigned_by_scheduler():
            gpu_slots.claim(wanted)
    try:
        chosen = select_device(device)
    except DeviceError as error:
        # Stop before any model is loaded: seconds, not a CPU run until the time limit. The marker
        # makes Snakemake's retries of this job ask for no GPU and stop at once (gpu_request).
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        with open(marker, "w", encoding="utf-8") as handle:
            handle.write(f"{error}\n")
        logger.error("rule %s: %s", snakemake.rule, error)  # the rule's log file says why, too
        raise DeviceError(f"rule {snakemake.rule}: {error}") from None
    logger.info("device: %s (config device: %s, GPUs requested: %d, CUDA_VISIBLE_DEVICES=%s)", chosen, device,
                wanted, os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)"))
    return chosen


def start(snakemake, name: str | None = None) -> logging.Logger:
    """Common prologue of a rule script: logging to snakemake.log[0], the job's device
    (params.device, see place_job), threads, seed (params.seed)."""
    log_path = snakemake.log[0] if len(snakemake.log) else None
    logger = setup_logging(log_path, name or f"rule.{snakemake.rule}")
    place_job(snakemake, logger)
    threads = max(1, int(getattr(snakemake, "threads", 1) or 1))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    seed = snakemake.params.get("seed") if hasattr(snakemake.params, "get") else None
    if seed is not None:
        seed_everything(int(seed))
    # The hash seed is fixed per process at start-up (rules/common.smk sets it for every job).
    logger.info("rule %s: %d thread(s), seed %s, hash seed %s", snakemake.rule, threads, seed,
                os.environ.get("PYTHONHASHSEED", "random"))
    # rules/common.smk turns them on for every job; only the download rules turn them off
    logger.info("hub offline switches: %s", " ".join(f"{name}={os.environ.get(name, '(unset)')}" for name in
                                                     ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")))

    def log_uncaught(kind, value, traceback):
        # An error leaves the rule's log file with the full story, not just Snakemake's stderr.
        logger.error("rule %s failed: %s", snakemake.rule, value, exc_info=(kind, value, traceback))

    sys.excepthook = log_uncaught
    return logger
