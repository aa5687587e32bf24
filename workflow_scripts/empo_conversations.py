"""Rule empo_conversations: the seeded subset of one split's usable conversations that its jobs
share (SFT and pairs for train/valid/test, generation for its own cap), as a file in the DAG."""

from empathy_workflow.core import io, runtime
from empathy_workflow.empo import dialogues

logger = runtime.start(snakemake)
subset = dialogues.conversation_subset(dialogues.read_dialogues(snakemake.input.dialogues),
                                       snakemake.params.limit, int(snakemake.params.seed), snakemake.params.salt)
io.write_json(snakemake.output.subset, subset)
logger.info("%s: %d of %d usable conversations", snakemake.wildcards.subset, len(subset["conv_ids"]),
            subset["usable"])
