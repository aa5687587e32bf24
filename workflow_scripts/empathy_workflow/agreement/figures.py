"""Figures of the agreement study: annotator-by-annotator correlation heatmaps, rating
distributions, Krippendorff's alpha per aspect, and the aggregate-score figures."""

from __future__ import annotations

import numpy as np
import pandas as pd

from empathy_workflow.agreement.tables import _fmt
from empathy_workflow.core.io import json_safe
from empathy_workflow.core.plots import new_figure, save_figure
from empathy_workflow.core.stats import LEVELS


def _correlation_heatmap(values: np.ndarray, labels: list[str], size: tuple[float, float], title: str, path,
                         label_nan: bool) -> None:
    """A correlation matrix on a -1..1 colour scale, each cell labelled with its value (an
    undefined cell labelled "nan" or left blank)."""
    figure, axis = new_figure(*size)
    image = axis.imshow(values, vmin=-1, vmax=1, cmap="RdBu_r")
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if label_nan or not np.isnan(values[i, j]):
                axis.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=8)
    axis.set_title(title)
    figure.colorbar(image, ax=axis)
    save_figure(figure, path)


def plot_heatmaps(results: dict, directory) -> list[str]:
    """Annotator-by-annotator Pearson correlation, one heatmap per aspect."""
    import os

    written = []
    for aspect, result in results.items():
        annotators = result["annotators"]
        size = len(annotators)
        values = np.ones((size, size))
        for i, a in enumerate(annotators):
            for j, b in enumerate(annotators):
                if i != j:
                    v = result["pairwise"]["pearson"][a][b]
                    values[i, j] = np.nan if v is None else v
        path = os.path.join(directory, f"correlation_heatmap_{aspect}.png")
        _correlation_heatmap(values, annotators, (1.2 + 0.7 * size, 1.0 + 0.6 * size),
                             f"{aspect}: Pearson r between annotators", path, label_nan=False)
        written.append(path)
    return written


def plot_distributions(clean: pd.DataFrame, directory) -> str:
    """Share of each rating value per annotator, one panel per aspect."""
    import os

    aspects = sorted(clean["aspect"].unique())
    figure, axes = new_figure(4.2 * len(aspects), 3.4)
    figure.clf()
    axes = figure.subplots(1, len(aspects), squeeze=False)[0]
    domain = np.sort(clean["score"].unique())
    for axis, aspect in zip(axes, aspects):
        part = clean[clean["aspect"] == aspect]
        annotators = sorted(part["annotator"].unique())
        width = 0.8 / len(annotators)
        for index, annotator in enumerate(annotators):
            scores = part.loc[part["annotator"] == annotator, "score"]
            shares = [(scores == value).mean() for value in domain]
            axis.bar(np.arange(len(domain)) + index * width - 0.4 + width / 2, shares, width, label=annotator)
        axis.set_xticks(range(len(domain)), [f"{v:g}" for v in domain])
        axis.set_xlabel("rating")
        axis.set_title(aspect)
    axes[0].set_ylabel("share of the annotator's ratings")
    axes[-1].legend(fontsize=7, title="annotator")
    path = os.path.join(directory, "rating_distribution.png")
    save_figure(figure, path)
    return path


def plot_alpha(entries: list[tuple[str, str, dict]], path, title: str) -> None:
    """Krippendorff's alpha at each level with its bootstrap interval; entries are
    (group label, bar label, per-aspect result)."""
    levels = LEVELS
    groups = list(dict.fromkeys(group for group, _, _ in entries))
    figure, axis = new_figure(max(5.0, 1.8 * len(entries)), 3.8)
    width = 0.8 / len(levels)
    for index, level in enumerate(levels):
        xs, heights, lows, highs = [], [], [], []
        for position, (_, _, result) in enumerate(entries):
            value = result["krippendorff_alpha"][level]
            value = np.nan if value is None else value  # undefined: no bar
            interval = (result["ci"] or {}).get("krippendorff_alpha", {}).get(level)
            xs.append(position + index * width - 0.4 + width / 2)
            heights.append(value)
            lows.append(value - interval[0] if interval else 0)
            highs.append(interval[1] - value if interval else 0)
        axis.bar(xs, heights, width, yerr=[lows, highs], capsize=3, label=f"{level} alpha")
    axis.set_xticks(range(len(entries)), [f"{group}\n{label}" if len(groups) > 1 else label
                                          for group, label, _ in entries], fontsize=8)
    axis.axhline(0, color="black", linewidth=0.6)
    axis.set_ylabel("Krippendorff's alpha")
    axis.set_title(title)
    axis.legend(fontsize=8)
    save_figure(figure, path)


def _distribution(values: pd.Series) -> dict:
    present = values.dropna()
    counts = present.value_counts().sort_index()
    return {
        "n": int(present.size),
        "missing": int(values.isna().sum()),
        "mean": float(present.mean()),
        "std": float(present.std(ddof=1)) if present.size > 1 else None,
        "counts": {f"{value:g}": int(count) for value, count in counts.items()},
    }


def _correlation_matrix(frame: pd.DataFrame, columns: list[str], method: str) -> dict:
    return {a: {b: json_safe(float(frame[[a, b]].dropna().corr(method=method).iloc[0, 1]))
                for b in columns if b != a} for a in columns}


def plot_aggregate(name: str, result: dict, frame: pd.DataFrame, model_column: str, directory) -> None:
    import os

    aspects = list(result["aspect_correlations"]["pearson"])
    columns = aspects + [model_column]
    figure, _ = new_figure(3.0 * len(columns), 3.0)
    figure.clf()
    axes = figure.subplots(1, len(columns), squeeze=False)[0]
    for axis, column in zip(axes, columns):
        counts = result["distributions"][column]["counts"]
        axis.bar(range(len(counts)), list(counts.values()))
        axis.set_xticks(range(len(counts)), list(counts))
        axis.set_title(column)
        axis.tick_params(axis="x", labelsize=7, rotation=90)
    axes[0].set_ylabel("pairs")
    figure.suptitle(f"{name}: label distributions")
    save_figure(figure, os.path.join(directory, f"{name}_distributions.png"))

    size = len(aspects)
    spearman_table = result["aspect_correlations"]["spearman"]
    values = np.array([[1.0 if a == b else np.nan if spearman_table[a][b] is None else spearman_table[a][b]
                        for b in aspects] for a in aspects])
    _correlation_heatmap(values, aspects, (1.5 + 0.8 * size, 1.2 + 0.7 * size), f"{name}: Spearman between aspects",
                         os.path.join(directory, f"{name}_aspect_correlations.png"), label_nan=True)

    figure, axis = new_figure(4.5, 4.0)
    pairs = frame[["empathy", model_column]].dropna()
    grouped = pairs.groupby(["empathy", model_column]).size().reset_index(name="n")
    axis.scatter(grouped["empathy"], grouped[model_column], s=12 * grouped["n"], alpha=0.6)
    agree = result["human_vs_gpt"]["empathy"]
    axis.set_xlabel("human aggregate (empathy)")
    axis.set_ylabel(model_column)
    axis.set_title(f"{name}: Pearson {_fmt(agree['pearson'])}, Spearman {_fmt(agree['spearman'])}")
    save_figure(figure, os.path.join(directory, f"{name}_human_vs_gpt.png"))
