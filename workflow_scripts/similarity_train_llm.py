"""Rule similarity_train_llm: LoRA SFT of the causal LM on the annotation prompt (answer-only loss)."""

from empathy_workflow import runtime, similarity
from empathy_workflow.io import write_json

logger = runtime.start(snakemake)  # noqa: F821 (snakemake is injected)
train, used = similarity.load_pairs(snakemake.input.train, snakemake.params.text)
logger.info("training pairs: %d (text: %s)", len(train), used)
info = similarity.train_llm(snakemake.input.model, train, similarity.jsonable(dict(snakemake.params.settings)),
                            int(snakemake.params.seed), snakemake.output.adapter, snakemake.params.checkpoints)
info["text"] = used
write_json(f"{snakemake.output.adapter}/training_info.json", similarity.jsonable(info))
logger.info("saved %s: %s", snakemake.output.adapter, info)
