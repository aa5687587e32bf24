"""Rule prepare_urdu_stories: Roman-Urdu ratings + stories -> pairs.csv and long-format ratings.csv."""

from empathy_workflow.core import dataset_sources, io, runtime
from empathy_workflow.similarity import stories

logger = runtime.start(snakemake)
sources = snakemake.params.sources
pairs, ratings = stories.load_urdu_stories(dataset_sources.fetch(sources["annotations"]), dataset_sources.fetch(sources["stories"]))
logger.info("Urdu stories: %d pairs, %d ratings", len(pairs), len(ratings))
io.write_csv(snakemake.output.pairs, pairs)
io.write_csv(snakemake.output.ratings, ratings)
