"""Rule empo_sft: LoRA SFT of the policy on ED conversations (loss on listener turns only)."""

from empathy_workflow.core import io, runtime
from empathy_workflow.empo import dialogues, training

logger = runtime.start(snakemake)
seed = int(snakemake.params.seed)


def conversations(path, subset_path):
    # the split's shared subset (rule empo_conversations): the same conversations as its pairs
    return dialogues.in_subset(dialogues.usable_conversations(dialogues.read_dialogues(path)),
                               io.read_json(subset_path))


summary = training.train_sft(
    model_dir=snakemake.input.model,
    train_records=conversations(snakemake.input.train, snakemake.input.train_subset),
    valid_records=conversations(snakemake.input.valid, snakemake.input.valid_subset),
    settings=snakemake.params.settings,
    system_prompt=snakemake.params.system_prompt,
    seed=seed,
    adapter_dir=snakemake.output.adapter,
    curves_csv=snakemake.output.curves,
    checkpoints=snakemake.params.checkpoints,
)
logger.info("SFT done: %s", summary)
