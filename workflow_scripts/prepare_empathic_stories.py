"""Rule prepare_empathic_stories: EmpathicStories pairs -> train/dev/test tables + split_info.json
(a seeded, documented re-split when the official train split is not given)."""

from empathy_workflow.core import io, runtime
from empathy_workflow.similarity import stories

logger = runtime.start(snakemake)
splits, info = stories.prepare_empathic_stories(dict(snakemake.params.sources), dict(snakemake.params.settings),
                                             int(snakemake.params.seed))
logger.info("%s; counts %s", info["note"], info["counts"])
for name, frame in splits.items():
    io.write_csv(snakemake.output[name], frame)
io.write_json(snakemake.output.info, info)
