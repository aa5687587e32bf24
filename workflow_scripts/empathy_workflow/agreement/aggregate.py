"""Agreement of the released aggregate scores (paper 1): the human aggregate of each dataset
against its GPT score, with bootstrap intervals."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from empathy_workflow.agreement.figures import _correlation_matrix, _distribution
from empathy_workflow.core.io import InputError, require_numeric
from empathy_workflow.core.stats import human_vs_model


def aggregate_analysis(frame: pd.DataFrame, aspects: list[str], model_column: str, scale: dict,
                       settings: dict, seed: int, name: str, source: str) -> dict:
    """Label distributions, correlations between aspects, and human aggregate vs the model score."""
    for column in aspects + [model_column]:
        if column not in frame.columns:
            raise InputError(f"{source}: lacks column {column!r}; found {', '.join(map(repr, frame.columns))}")
    frame = frame.reset_index(drop=True)
    for column in aspects:
        frame[column] = require_numeric(frame, column, source, allow_missing=True,
                                        low=scale["min"], high=scale["max"])
    frame[model_column] = require_numeric(frame, model_column, source, allow_missing=True)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    result = {
        "n_pairs": len(frame),
        "distributions": {column: _distribution(frame[column]) for column in aspects + [model_column]},
        "aspect_correlations": {"pearson": _correlation_matrix(frame, aspects, "pearson"),
                                "spearman": _correlation_matrix(frame, aspects, "spearman")},
        "human_vs_gpt": {aspect: human_vs_model(frame[aspect], frame[model_column], scale, settings, rng)
                         for aspect in aspects},
    }
    if "label" in frame.columns:
        result["distributions"]["label"] = _distribution(pd.to_numeric(frame["label"], errors="coerce"))
    return result
