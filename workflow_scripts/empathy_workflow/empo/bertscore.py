"""BERTScore of EmPO replies against the reference replies, on the GPU when there is one, with
bert-score's own default layer for the model unless the config names one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from empathy_workflow.core.io import InputError


def bertscore(candidates: Sequence[str], references: Sequence[str], model: str, num_layers: int | None,
              rescale_with_baseline: bool = False, baseline_path: str | None = None, lang: str = "en",
              batch_size: int = 32, baseline_name: str | None = None) -> pd.DataFrame:
    """Per-item BERTScore precision, recall and F1 of candidates against references (bert-score).
    `model` is a hub id or a local model folder; a local folder needs `num_layers`. Rescaling
    needs a baseline: `baseline_path`, else the one bert-score ships for the hub model
    `baseline_name` (e.g. "FacebookAI/roberta-large" finds roberta-large.tsv) or `model`."""
    import bert_score

    local = os.path.isdir(model)
    if local:
        if num_layers is None:
            raise InputError(f"config key empo.evaluation.bertscore.num_layers: required for the local model {model}")
        import json
        depth = json.loads((Path(model) / "config.json").read_text()).get("num_hidden_layers")
        if depth is not None and not 1 <= num_layers <= depth:
            raise InputError(f"config key empo.evaluation.bertscore.num_layers: {num_layers} is outside 1..{depth} "
                             f"(the layers of {model})")
    if rescale_with_baseline:
        name = baseline_name or model
        shipped_dir = Path(bert_score.__file__).parent / "rescale_baseline" / lang
        # Hub ids with an organisation ("FacebookAI/roberta-large") are shipped under the bare name.
        candidates_ = [shipped_dir / f"{name}.tsv", shipped_dir / f"{name.split('/')[-1]}.tsv"]
        shipped = next((c for c in candidates_ if not os.path.isdir(name) and c.is_file()), None)
        if baseline_path is None and shipped is None:
            raise InputError(
                f"config key empo.evaluation.bertscore.rescale_with_baseline: no baseline for {name!r} "
                f"(bert-score ships baselines only for hub models, e.g. roberta-large; not for a local "
                f"folder); set empo.evaluation.bertscore.baseline_path to a baseline TSV or turn rescaling off")
        if baseline_path is None:
            baseline_path = str(shipped)
        if not os.path.isfile(baseline_path):
            raise InputError(f"config key empo.evaluation.bertscore.baseline_path: {baseline_path} does not exist")
    if not candidates:
        return pd.DataFrame({"bertscore_precision": [], "bertscore_recall": [], "bertscore_f1": []})
    precision, recall, f1 = bert_score.score(
        list(candidates), list(references), model_type=model, num_layers=num_layers,
        rescale_with_baseline=rescale_with_baseline, baseline_path=baseline_path,
        lang=lang if rescale_with_baseline else None, batch_size=batch_size, device=bertscore_device(),
        verbose=False)
    return pd.DataFrame({"bertscore_precision": precision.cpu().numpy().astype(float),
                         "bertscore_recall": recall.cpu().numpy().astype(float),
                         "bertscore_f1": f1.cpu().numpy().astype(float)})


def bertscore_layer(model: str, num_layers: int | None, hub_id: str | None = None) -> tuple[int | None, str]:
    """(layer, where it comes from) for empo.evaluation.bertscore.num_layers. A number is used as
    given; null is bert-score's own default layer for the model (bert_score.utils.model2layers,
    looked up by the model's hub id, e.g. 17 for FacebookAI/roberta-large), as bert_score.score
    picks it for a hub id. A local model bert-score has no default for (a packaged one) gets its
    last layer, and the metrics say so."""
    if num_layers is not None:
        return int(num_layers), "config"
    from bert_score.utils import model2layers

    for name in (hub_id, model):
        if not name or name.startswith("package:"):
            continue
        for key in (name, name.split("/")[-1]):
            if key in model2layers:
                return int(model2layers[key]), f"bert-score's default layer for {key}"
    if os.path.isdir(model):
        import json

        depth = json.loads((Path(model) / "config.json").read_text()).get("num_hidden_layers")
        if depth:
            return int(depth), f"last layer of {hub_id or model} (bert-score has no default layer for it)"
    raise InputError(f"config key empo.evaluation.bertscore.num_layers: null, but bert-score has no default layer "
                     f"for {hub_id or model}; set a layer number")


def bertscore_device() -> str:
    """The job's GPU when it has one (runtime.place_job hides GPUs under device: cpu), else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
