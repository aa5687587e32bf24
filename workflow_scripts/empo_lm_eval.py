"""Rule empo_lm_eval: retained general ability (MMLU 5-shot by default) of one EmPO model with
lm-evaluation-harness; the adapter goes through lm-eval's `peft=` argument."""

from empathy_workflow.core import runtime
from empathy_workflow.core.io import write_json
from empathy_workflow.empo.lm_eval_tasks import runner

logger = runtime.start(snakemake)
summary = runner.run(
    settings=snakemake.params.settings,
    questions_path=snakemake.input.mmlu,
    model_dir=snakemake.input.model,
    adapter_dir=snakemake.input.get("adapter"),
    seed=int(snakemake.params.seed),
)
write_json(snakemake.output.results, summary)
logger.info("lm-eval %s: %s", snakemake.wildcards.variant, summary["scores"])
