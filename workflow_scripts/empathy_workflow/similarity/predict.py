"""Predictions of one similarity method on one test set (encoders or LLMs), the one entry point
the rule calls."""

from __future__ import annotations

import pandas as pd

from empathy_workflow.core.io import InputError
from empathy_workflow.similarity.encoders import encoder_predictions
from empathy_workflow.similarity.llm import llm_predictions
from empathy_workflow.similarity.story_pairs import ENCODER_METHODS, LLM_METHODS


def predict(method: str, test: pd.DataFrame, train: pd.DataFrame, model_path, settings: dict,
            adapter_path=None) -> tuple[pd.DataFrame, dict]:
    if method in ENCODER_METHODS:
        return encoder_predictions(model_path, train, test, max_seq_length=settings.get("max_seq_length"))
    if method in LLM_METHODS:
        if method == "llm_sft" and adapter_path is None:
            raise InputError("llm_sft needs the trained adapter (results/similarity/llm_sft/adapter)")
        return llm_predictions(model_path, adapter_path if method == "llm_sft" else None, test, settings, method)
    raise InputError(f"similarity method {method!r} is not one of {', '.join(ENCODER_METHODS + LLM_METHODS)}")
