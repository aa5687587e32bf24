"""Rule script: the aggregated scores. EmpathicStories (all splits pooled; only aggregates are
shipped) and the Urdu pairs (annotator means): label distributions, correlations between aspects,
and the human aggregate vs the shipped GPT-3.5 score."""

import os

import pandas as pd

from empathy_workflow.agreement import aggregate, figures, tables
from empathy_workflow.core import io, runtime

logger = runtime.start(snakemake)  # noqa: F821 (injected by Snakemake)
settings = snakemake.params.settings  # noqa: F821
seed = int(snakemake.params.seed)  # noqa: F821
plot_dir = snakemake.output.plots  # noqa: F821
os.makedirs(plot_dir, exist_ok=True)

datasets = {}
frames = []
for path in snakemake.input.empathic_stories:  # noqa: F821
    if not str(path).endswith(".csv"):
        continue  # split_info.json
    frame = io.read_csv(path, what="EmpathicStories pairs", required=["pair_id"])
    frames.append(frame)
english = pd.concat(frames, ignore_index=True)
splits = sorted(english["source_split"].astype(str).unique()) if "source_split" in english else []
datasets["empathic_stories"] = (english, ["empathy", "event", "emotion", "moral"],
                                f"train+dev+test pooled ({len(frames)} files)")
urdu = io.read_csv(snakemake.input.urdu_pairs, what="Urdu pairs", required=["pair_id"])  # noqa: F821
datasets["urdu_stories"] = (urdu, ["empathy", "event", "emotion"], "annotator means")

results = {}
for name, (frame, aspects, note) in datasets.items():
    source = f"{name} pairs"
    result = aggregate.aggregate_analysis(frame, aspects, "gpt_score", settings["scale"], settings, seed,
                                          name, source)
    result["note"] = note
    if name == "empathic_stories":
        result["source_splits"] = splits
    results[name] = result
    for aspect, agree in result["human_vs_gpt"].items():
        logger.info("%s: %s vs gpt_score: n %d, Pearson %.3f, Spearman %.3f, alpha %s", name, aspect,
                    agree["n"], agree["pearson"], agree["spearman"], agree["krippendorff_alpha_interval"])
    figures.plot_aggregate(name, result, frame, "gpt_score", plot_dir)

io.write_text(snakemake.output.table, tables.aggregate_markdown(results))  # noqa: F821
io.write_json(snakemake.output.json, results)  # noqa: F821
