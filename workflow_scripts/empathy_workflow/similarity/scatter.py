"""The scatter figure of predicted against gold similarity scores (its own rule)."""

from __future__ import annotations

import pandas as pd

from empathy_workflow.similarity.story_pairs import SCALE


def scatter_plot(predictions: pd.DataFrame, path, title: str) -> None:
    from empathy_workflow.core.plots import new_figure, save_figure

    figure, axis = new_figure(4.5, 4.5)
    axis.scatter(predictions.gold, predictions.predicted, s=12, alpha=0.5, edgecolor="none")
    axis.plot(SCALE, SCALE, color="grey", linewidth=0.8, linestyle="--")
    axis.set_xlim(SCALE[0] - 0.1, SCALE[1] + 0.1)
    axis.set_ylim(SCALE[0] - 0.1, SCALE[1] + 0.1)
    axis.set_xlabel("gold empathy (1-4)")
    axis.set_ylabel("predicted (1-4)")
    axis.set_title(title, fontsize=9)
    save_figure(figure, path)
