"""Rule prepare_mmlu: MMLU test/dev CSVs (hendrycks layout) -> one questions table."""

from empathy_workflow.core import io, runtime
from empathy_workflow.empo import mmlu

logger = runtime.start(snakemake)
table = mmlu.load_mmlu(mmlu.mmlu_directory(snakemake.params.sources["dir"]))
logger.info("MMLU: %d subjects, %s questions", table["subject"].nunique(), table["split"].value_counts().to_dict())
io.write_csv(snakemake.output.table, table)
