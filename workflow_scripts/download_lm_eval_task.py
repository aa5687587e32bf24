"""Rule download_lm_eval_task (a localrule): the data of one lm-eval stock task into the hub cache,
or a refusal naming the task and what it needs (a gated dataset without a token, no hub)."""

from empathy_workflow.core import downloads

downloads.go_online()  # before any Hugging Face library is imported

from empathy_workflow.core import runtime

logger = runtime.start(snakemake)
details = downloads.fetch_lm_eval_task(snakemake.wildcards.task, snakemake.output.manifest)
logger.info("lm-eval task %s: %s", snakemake.wildcards.task, details["datasets"])
