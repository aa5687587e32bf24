"""Rule empo_preference: one preference-optimisation run (trl DPOTrainer) that keeps training the
SFT adapter against the SFT model as reference."""

from empathy_workflow.core import io, runtime
from empathy_workflow.empo import training

logger = runtime.start(snakemake)
settings = training.with_dpo_max_length(dict(snakemake.params.settings), snakemake.input.train_stats)
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
