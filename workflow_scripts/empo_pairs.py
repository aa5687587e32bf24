"""Rule empo_pairs: emotion-grounded preference pairs for one split, and their statistics."""

from empathy_workflow.core import io, runtime
from empathy_workflow.empo import dialogues, emotions, preference_pairs

logger = runtime.start(snakemake)
settings = snakemake.params.settings
split = snakemake.wildcards.split
records = dialogues.read_dialogues(snakemake.input.dialogues)
mapping = emotions.read_mapping(snakemake.input.mapping)

# Token lengths with the policy's tokenizer, for the length filter and the length statistics
# (fast: a couple of seconds for the full train split).
from transformers import AutoTokenizer  # noqa: E402

tokenizer = AutoTokenizer.from_pretrained(snakemake.input.model)
# The EmPO code computes the length threshold on the train split and filters its evaluation split
# with it (src/dpo_ps.py): the other splits read it from the train split's statistics.
given_threshold, threshold_from = preference_pairs.train_threshold(snakemake.input.get("train_stats"), settings)
pairs, stats = preference_pairs.build_pairs(
    records,
    mapping,
    rejected_per_prompt=int(settings["rejected_per_prompt"]),
    seed=int(snakemake.params.seed),
    system_prompt=snakemake.params.system_prompt,
    prompt_ids=io.read_json(snakemake.input.subset)["conv_ids"],
    length_percentile=settings.get("length_percentile"),
    token_length=preference_pairs.tokenizer_lengths(tokenizer),
    length_measure=settings.get("length_measure", "reply"),
    conversation_length=preference_pairs.chat_lengths(tokenizer),
    split=split,
    given_threshold=given_threshold,
    threshold_from=threshold_from,
)
if not pairs:
    raise io.InputError(f"{snakemake.input.dialogues}: no preference pairs could be built for split {split}")
preference_pairs.check_pairs(pairs, mapping, {record["conv_id"] for record in records})
logger.info("%s: %d pairs from %d prompts (%d conversations); length filter: %s",
            split, stats["pairs"], stats["prompts"], stats["conversations"], stats["length_filter"])
io.write_jsonl(snakemake.output.pairs, pairs)
io.write_json(snakemake.output.stats, stats)
