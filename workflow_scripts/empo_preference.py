"""Rule empo_preference: one preference-optimisation run (trl DPOTrainer) that keeps training the
SFT adapter against the SFT model as reference."""

from empathy_workflow.core import io, runtime
from empathy_workflow.empo import training

logger = runtime.start(snakemake)
settings = dict(snakemake.params.settings)
if settings["max_length"] == "length_filter":
    # the authors' DPO max_length: the train split's length-filter threshold, int, up to an even
    # number (src/dpo_ps.py); recorded in the adapter's empo_adapter.json with the settings
    length_filter = io.read_json(snakemake.input.train_stats)["length_filter"]
    if length_filter.get("dpo_max_length") is None:
        raise io.InputError(f"{snakemake.input.train_stats}: length_filter has no dpo_max_length (max_length: "
                            f"length_filter needs empo.pairs.length_measure prompt_reply); rerun empo_pairs")
    settings["max_length"] = int(length_filter["dpo_max_length"])
    logger.info("max_length %d from the train split's length filter (threshold %.1f tokens)",
                settings["max_length"], length_filter["threshold"])
summary = training.train_preference(
    model_dir=snakemake.input.model,
    sft_adapter=snakemake.input.sft,
    train_pairs=io.read_jsonl(snakemake.input.train),
    valid_pairs=io.read_jsonl(snakemake.input.valid),
    settings=settings,
    seed=int(snakemake.params.seed),
    run=snakemake.wildcards.run,
    adapter_dir=snakemake.output.adapter,
    curves_csv=snakemake.output.curves,
    checkpoints=snakemake.params.checkpoints,
    quantization=snakemake.params.quantization,
)
logger.info("preference run %s done: %s", snakemake.wildcards.run, summary)
