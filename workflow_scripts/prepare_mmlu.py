"""Rule prepare_mmlu: MMLU test/dev CSVs (hendrycks layout) -> one questions table."""

from empathy_workflow import data, io, runtime

logger = runtime.start(snakemake)
table = data.load_mmlu(data.mmlu_directory(snakemake.params.sources["dir"]))
logger.info("MMLU: %d subjects, %s questions", table["subject"].nunique(), table["split"].value_counts().to_dict())
io.write_csv(snakemake.output.table, table)
