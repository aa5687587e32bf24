"""Rule prepare_urdu_stories: Roman-Urdu ratings + stories -> pairs.csv and long-format ratings.csv."""

from empathy_workflow import data, io, runtime

logger = runtime.start(snakemake)
sources = snakemake.params.sources
pairs, ratings = data.load_urdu_stories(data.fetch(sources["annotations"]), data.fetch(sources["stories"]))
logger.info("Urdu stories: %d pairs, %d ratings", len(pairs), len(ratings))
io.write_csv(snakemake.output.pairs, pairs)
io.write_csv(snakemake.output.ratings, ratings)
