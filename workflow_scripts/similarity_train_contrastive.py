"""Rule similarity_train_contrastive: fine-tune the sentence encoder (sentence-transformers trainer)."""

from empathy_workflow.core import io, runtime
from empathy_workflow.similarity import encoders, story_pairs
from empathy_workflow.core.io import write_json

logger = runtime.start(snakemake)  # noqa: F821 (snakemake is injected)
text = snakemake.params.text
train, used = story_pairs.load_pairs(snakemake.input.train, text)
dev, _ = story_pairs.load_pairs(snakemake.input.dev, text)
logger.info("training pairs: %d (text: %s), dev pairs: %d", len(train), used, len(dev))
info = encoders.train_contrastive(snakemake.input.encoder, train, dev, dict(snakemake.params.settings),
                                    int(snakemake.params.seed), snakemake.output.model)
info["text"] = used
write_json(f"{snakemake.output.model}/training_info.json", io.json_safe(info))
logger.info("saved %s: %s", snakemake.output.model, info)
