"""Rule download_dataset (a localrule): a dataset's URL and `hf:` sources into the download cache."""

from empathy_workflow.core import downloads

downloads.go_online()  # before any Hugging Face library is imported

from empathy_workflow.core import runtime

logger = runtime.start(snakemake)
fetched = downloads.fetch_dataset(snakemake.wildcards.dataset, snakemake.params.sources,
                                  snakemake.params.cache, snakemake.output.manifest)
logger.info("dataset %s: %s", snakemake.wildcards.dataset, fetched)
