"""Figures of EmPO training, drawn by their own rule from the curves training wrote
(rules/empo_training.smk: empo_training_curves), so a style edit here redraws and retrains nothing."""

from __future__ import annotations

import os

import pandas as pd

from empathy_workflow.core import plots


def plot_training_curves(frame: pd.DataFrame, path: str | os.PathLike, title: str) -> None:
    """Loss (train and valid) and, for preference runs, reward margins and accuracies per step."""
    panels = [column for column in ("loss", "rewards/margins", "rewards/accuracies") if column in frame]
    figure, axes = plots.plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for axis, column in zip(axes[0], panels):
        data = frame.dropna(subset=[column])
        axis.plot(data["step"], data[column], marker=".", label="train")
        if column == "loss" and "eval_loss" in frame:
            evaluation = frame.dropna(subset=["eval_loss"])
            axis.plot(evaluation["step"], evaluation["eval_loss"], "o", label="valid")
            axis.legend()
        axis.set_xlabel("step")
        axis.set_ylabel(column)
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    plots.save_figure(figure, path)
