"""Rule empo_metrics: metrics.json = text metrics + lm_eval {TASK: accuracy}."""

from empathy_workflow.core import io, runtime
from empathy_workflow.empo import evaluation

logger = runtime.start(snakemake)
metrics = evaluation.merge_lm_eval(io.read_json(snakemake.input.text), io.read_json(snakemake.input.lm_eval),
                                   str(snakemake.input.lm_eval))
logger.info("lm_eval: %s", metrics["lm_eval"])
io.write_json(snakemake.output.metrics, metrics)
