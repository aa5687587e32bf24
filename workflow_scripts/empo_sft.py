"""Rule empo_sft: LoRA SFT of the policy on ED conversations (loss on listener turns only)."""

from empathy_workflow.core import runtime
from empathy_workflow.empo import dialogues, training

logger = runtime.start(snakemake)
seed = int(snakemake.params.seed)
caps = snakemake.params.pairs.get("max_conversations") or {}


def conversations(path, split):
    # The same seeded selection as the pairs of this split (empo.pairs.max_conversations).
    records = dialogues.usable_conversations(dialogues.read_dialogues(path))
    return dialogues.select_conversations(records, caps.get(split), seed, salt=f"pairs:{split}")


summary = training.train_sft(
    model_dir=snakemake.input.model,
    train_records=conversations(snakemake.input.train, "train"),
    valid_records=conversations(snakemake.input.valid, "valid"),
    settings=snakemake.params.settings,
    system_prompt=snakemake.params.system_prompt,
    seed=seed,
    adapter_dir=snakemake.output.adapter,
    curves_csv=snakemake.output.curves,
    curves_png=snakemake.output.plot,
    checkpoints=snakemake.params.checkpoints,
)
logger.info("SFT done: %s", summary)
