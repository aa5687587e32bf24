"""Trainer set-up every training rule shares: Hugging Face TrainingArguments from a config
section, run fingerprints, checkpoints that resume only the same settings, a step budget for
tests, and the training curves as a table."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import pandas as pd

from empathy_workflow.core.hf import precision_flags

logger = logging.getLogger(__name__)


FINGERPRINT = "run_fingerprint.json"


def common_arguments(settings: dict, output_dir: str, seed: int) -> dict:
    """TrainingArguments shared by SFT and preference runs, from a config sub-dict."""
    max_steps = int(settings.get("max_steps", -1))
    return dict(
        output_dir=output_dir,
        per_device_train_batch_size=int(settings["batch_size"]),
        per_device_eval_batch_size=int(settings["batch_size"]),
        gradient_accumulation_steps=int(settings.get("gradient_accumulation_steps", 1)),
        learning_rate=float(settings["learning_rate"]),
        num_train_epochs=float(settings.get("epochs", 1)),
        max_steps=max_steps,
        warmup_steps=float(settings.get("warmup_ratio", 0.0)),  # a float in [0, 1) is a ratio
        lr_scheduler_type=settings.get("lr_scheduler_type", "linear"),
        max_grad_norm=float(settings.get("max_grad_norm", 1.0)),  # transformers' default: 1.0
        optim=settings.get("optim", "adamw_torch"),
        save_strategy="steps",
        save_steps=int(settings.get("save_steps", 500)),
        save_total_limit=2,
        logging_steps=1,
        logging_first_step=True,
        report_to=[],
        seed=seed,
        data_seed=seed,
        # transformers 5 name of gradient checkpointing (trl would default it to on: slower, and
        # only worth it when memory is short, e.g. a 7B model)
        activation_checkpointing=bool(settings.get("gradient_checkpointing", False)),
        dataloader_num_workers=0,
        disable_tqdm=False,
        **precision_flags(settings.get("cpu_precision", "float32")),
    )


def fingerprint(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:20]


def prepare_checkpoints(checkpoints: str | os.PathLike, run_fingerprint: str) -> str | None:
    """The last checkpoint to resume from, or None. Checkpoints of different settings/data are removed."""
    from transformers.trainer_utils import get_last_checkpoint

    checkpoints = Path(checkpoints)
    stamp = checkpoints / FINGERPRINT
    if checkpoints.exists():
        previous = json.loads(stamp.read_text()).get("fingerprint") if stamp.exists() else None
        if previous != run_fingerprint:
            logger.info("checkpoints in %s are from other settings or data: starting afresh", checkpoints)
            shutil.rmtree(checkpoints)
    checkpoints.mkdir(parents=True, exist_ok=True)
    for partial in checkpoints.glob("checkpoint-*"):
        # a job stopped while writing a checkpoint leaves it without its trainer state
        if partial.is_dir() and not (partial / "trainer_state.json").exists():
            logger.info("removing incomplete checkpoint %s", partial)
            shutil.rmtree(partial)
    stamp.write_text(json.dumps({"fingerprint": run_fingerprint}) + "\n")
    last = get_last_checkpoint(str(checkpoints))
    if last:
        logger.info("resuming from checkpoint %s", last)
    else:
        logger.info("no checkpoint in %s: training from the start", checkpoints)
    return last


STOP_AFTER_STEP = "EMPATHY_STOP_AFTER_STEP"


class StoppedAtStepBudget(RuntimeError):
    """Training stopped on purpose right after a checkpoint (see resume_callback)."""


def resume_callback():
    """A TrainerCallback that logs what the Trainer itself restored and ran: the step it starts
    from (a resumed run: its checkpoint's), how many parameters' optimizer moments and which
    learning-rate scheduler step it loaded, and the first and last step it executed. A restart
    from step 0 gives the same steps and losses as a resume (same seed), so only this tells them
    apart. With $EMPATHY_STOP_AFTER_STEP=N set, the job fails right after saving the checkpoint of
    step N or later, as a scheduler's time limit would stop it, but at a known step (resume tests)."""
    from transformers import TrainerCallback

    class ResumeRecord(TrainerCallback):
        def __init__(self):
            self.started_at_step = self.first_step_run = self.last_step_run = None

        def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
            self.started_at_step = state.global_step
            logger.info("trainer starts at step %d of %d (optimizer moments for %d parameter tensors, "
                        "learning-rate scheduler at step %s)", state.global_step, state.max_steps,
                        len(getattr(optimizer, "state", None) or {}), getattr(lr_scheduler, "last_epoch", None))

        def on_step_end(self, args, state, control, **kwargs):
            if self.first_step_run is None:
                self.first_step_run = state.global_step
            self.last_step_run = state.global_step

        def on_save(self, args, state, control, **kwargs):
            budget = os.environ.get(STOP_AFTER_STEP)
            if budget and state.global_step >= int(budget):
                raise StoppedAtStepBudget(f"stopped after the checkpoint of step {state.global_step} "
                                          f"(${STOP_AFTER_STEP}={budget})")

        def on_train_end(self, args, state, control, **kwargs):
            logger.info("trainer ran steps %s to %s", self.first_step_run, self.last_step_run)

    return ResumeRecord()


CURVE_COLUMNS = ["step", "epoch", "loss", "learning_rate", "grad_norm", "rewards/chosen", "rewards/rejected",
                 "rewards/margins", "rewards/accuracies", "eval_loss"]


def curves_frame(log_history: list[dict]) -> pd.DataFrame:
    """One row per logged training step (and per evaluation), known metric columns only."""
    rows = []
    for entry in log_history:
        if "loss" not in entry and "eval_loss" not in entry:
            continue  # the final summary row (train_runtime, ...)
        rows.append({column: entry.get(column) for column in CURVE_COLUMNS})
    frame = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    return frame.dropna(axis=1, how="all")
