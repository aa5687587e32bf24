"""Rule prepare_model: make results/models/NAME from its config entry (see empathy_workflow.models)."""

from empathy_workflow.core import runtime
from empathy_workflow.core.models import prepare_model

logger = runtime.start(snakemake)
details = prepare_model(snakemake.params.settings, snakemake.output[0], snapshot=snakemake.input.get("snapshot"))
logger.info("prepared %s: %s", snakemake.wildcards.model, details)
