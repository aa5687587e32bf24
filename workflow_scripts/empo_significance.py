"""Rule empo_significance: paired permutation tests and bootstrap intervals between every pair
of EmPO models on the per-item scores -> significance.json."""

from empathy_workflow.core import io, runtime
from empathy_workflow.empo import significance

logger = runtime.start(snakemake)
tables = {model: significance.read_per_item(path)
          for model, path in zip(snakemake.params.models, snakemake.input.per_item, strict=True)}
result = significance.significance(tables, snakemake.params.settings, int(snakemake.params.seed))
for record in result["comparisons"]:
    if record["p_value"] is not None and record["p_value"] < 0.05:
        logger.info("%s vs %s on %s: difference %.4f, p = %.4f", record["a"], record["b"], record["metric"],
                    record["difference"], record["p_value"])
io.write_json(snakemake.output.json, result)
