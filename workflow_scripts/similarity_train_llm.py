"""Rule similarity_train_llm: LoRA SFT of the causal LM on the annotation prompt (answer-only loss)."""

from empathy_workflow.core import io, runtime
from empathy_workflow.similarity import llm, story_pairs
from empathy_workflow.core.io import write_json

logger = runtime.start(snakemake)  # noqa: F821 (snakemake is injected)
train, used = story_pairs.load_pairs(snakemake.input.train, snakemake.params.text)
logger.info("training pairs: %d (text: %s)", len(train), used)
info = llm.train_llm(snakemake.input.model, train, io.json_safe(dict(snakemake.params.settings)),
                            int(snakemake.params.seed), snakemake.output.adapter, snakemake.params.checkpoints)
info["text"] = used
write_json(f"{snakemake.output.adapter}/training_info.json", io.json_safe(info))
logger.info("saved %s: %s", snakemake.output.adapter, info)
