"""Rule empo_generate: answers of one EmPO model (base, sft or a preference run) to the ED test
prompts, batched (empathy_workflow.generation)."""

from empathy_workflow.core import runtime
from empathy_workflow.empo import generation
from empathy_workflow.core.io import read_json, write_jsonl

logger = runtime.start(snakemake)
adapter = snakemake.input.get("adapter")  # none for base
records = generation.run(
    test_path=snakemake.input.test,
    model_dir=snakemake.input.model,
    adapter_dir=adapter,
    settings=snakemake.params.settings,
    system_prompt=snakemake.params.system_prompt,
    seed=int(snakemake.params.seed),
    quantization=snakemake.params.quantization,
    subset=read_json(snakemake.input.subset),
)
write_jsonl(snakemake.output.generations, records)
logger.info("wrote %d generations of %s to %s", len(records), snakemake.wildcards.variant,
            snakemake.output.generations)
