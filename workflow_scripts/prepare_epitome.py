"""Rule prepare_epitome: the three EPITOME mechanism CSVs -> one table (mechanism er|ip|ex, level 0-2)."""

from empathy_workflow.core import dataset_sources, io, runtime
from empathy_workflow.empo import epitome_data

logger = runtime.start(snakemake)
table = epitome_data.load_epitome({key: dataset_sources.fetch(source) for key, source in snakemake.params.sources.items()})
logger.info("EPITOME: %s rows per mechanism", table["mechanism"].value_counts().to_dict())
io.write_csv(snakemake.output.table, table)
