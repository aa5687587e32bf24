"""Rule empo_preference: one preference-optimisation run (trl DPOTrainer) that keeps training the
SFT adapter against the SFT model as reference."""

from empathy_workflow import io, runtime, training

logger = runtime.start(snakemake)
summary = training.train_preference(
    model_dir=snakemake.input.model,
    sft_adapter=snakemake.input.sft,
    train_pairs=io.read_jsonl(snakemake.input.train),
    valid_pairs=io.read_jsonl(snakemake.input.valid),
    settings=snakemake.params.settings,
    seed=int(snakemake.params.seed),
    run=snakemake.wildcards.run,
    adapter_dir=snakemake.output.adapter,
    curves_csv=snakemake.output.curves,
    curves_png=snakemake.output.plot,
    checkpoints=snakemake.params.checkpoints,
    quantization=snakemake.params.quantization,
)
logger.info("preference run %s done: %s", snakemake.wildcards.run, summary)
