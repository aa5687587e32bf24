"""Rule download_model (a localrule: runs where Snakemake runs): a hub model into the download cache."""

from empathy_workflow.core import downloads

downloads.go_online()  # before any Hugging Face library is imported

from empathy_workflow.core import runtime
from empathy_workflow.core.io import write_json

logger = runtime.start(snakemake)
details = downloads.fetch_model(snakemake.wildcards.model, snakemake.params.settings, snakemake.output.snapshot)
write_json(f"{snakemake.output.snapshot}/provenance.json", dict(details, source=snakemake.params.settings["source"]))
logger.info("downloaded %s: %s", snakemake.wildcards.model, details)
