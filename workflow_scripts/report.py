"""Rule report: results/report/summary.md and its plots (see empathy_workflow.report)."""

from empathy_workflow.core import runtime
from empathy_workflow.report.summary import main

logger = runtime.start(snakemake)
main(snakemake)
logger.info("wrote %s", snakemake.output.summary)
