"""Rule script: annotator agreement of one dataset (long-format ratings) -> agreement.json (one
entry per aspect), a markdown table and plots."""

import os

from empathy_workflow.agreement import figures, tables
from empathy_workflow.core import reliability
from empathy_workflow.core import io, runtime

logger = runtime.start(snakemake)  # noqa: F821 (injected by Snakemake)
source = snakemake.input.ratings  # noqa: F821
name = snakemake.wildcards.dataset  # noqa: F821
frame = io.read_csv(source, what="ratings CSV", dtype={"item_id": str, "annotator": str, "aspect": str})
results, clean = reliability.analyse(frame, snakemake.params.scale, snakemake.params.settings,  # noqa: F821
                                   int(snakemake.params.seed), source, logger)  # noqa: F821
for aspect, result in results.items():
    # an undefined statistic is None (null in the JSON, with its reason under "undefined")
    logger.info("%s/%s: alpha %s, mean pairwise r %s, human ceiling r %s", name, aspect,
                {k: v if v is None else round(v, 3) for k, v in result["krippendorff_alpha"].items()},
                tables._fmt(result["mean_pairwise_pearson"]),
                tables._fmt(result["human_ceiling"]["expected_correlation"]))

plot_dir = snakemake.output.plots  # noqa: F821
os.makedirs(plot_dir, exist_ok=True)
figures.plot_heatmaps(results, plot_dir)
figures.plot_distributions(clean, plot_dir)
figures.plot_alpha([(name, aspect, result) for aspect, result in results.items()],
                     os.path.join(plot_dir, "alpha.png"),
                     f"{name}: Krippendorff's alpha with bootstrap interval")
io.write_text(snakemake.output.table, tables.agreement_markdown(name, results))  # noqa: F821
io.write_json(snakemake.output.json, results)  # noqa: F821
