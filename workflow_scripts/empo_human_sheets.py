"""Rule empo_human_sheets: the blinded human-evaluation set from the models' generations ->
items.csv, key.csv, assignments.csv and one CSV + HTML rating sheet per annotator."""

from empathy_workflow.core import io, runtime
from empathy_workflow.empo import human_eval

logger = runtime.start(snakemake)  # noqa: F821 (injected by Snakemake)
settings = snakemake.params.settings  # noqa: F821
paths = dict(zip(settings["models"], snakemake.input.generations, strict=True))  # noqa: F821
items, key, assignments = human_eval.build_evaluation_set(paths, settings, int(snakemake.params.seed))  # noqa: F821
counts = human_eval.write_sheets(snakemake.output.sheets, items, assignments, settings["annotators"],  # noqa: F821
                                 settings["dimensions"])
empty = [name for name, count in counts.items() if count == 0]
if empty:
    logger.warning("annotator(s) %s got no items (more annotators than items x overlap)", ", ".join(empty))
logger.info("%d prompts x %d models = %d items; %s", settings["n_items"], len(settings["models"]), len(items),
            human_eval.coverage(assignments))
io.write_csv(snakemake.output.assignments, assignments)  # noqa: F821
io.write_csv(snakemake.output.key, key)  # noqa: F821
io.write_csv(snakemake.output.replies, items)  # noqa: F821
