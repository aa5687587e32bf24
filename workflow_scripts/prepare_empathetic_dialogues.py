"""Rule prepare_empathetic_dialogues: the release's CSVs (or an HF id / URL) -> one JSON record per
conversation for train/valid/test, plus split_info.json (re-split by conversation if needed)."""

from empathy_workflow.core import io, runtime
from empathy_workflow.empo import dialogues

logger = runtime.start(snakemake)
splits, info = dialogues.prepare_empathetic_dialogues(dict(snakemake.params.sources), dict(snakemake.params.settings),
                                                 int(snakemake.params.seed))
logger.info("%s; conversations %s, utterances %s", info["note"], info["counts"], info["utterances"])
for name, records in splits.items():
    io.write_jsonl(snakemake.output[name], records)
io.write_json(snakemake.output.info, info)
