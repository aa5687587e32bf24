"""Rule similarity_scatter: predicted against gold scores of one method on one test set, drawn
from the predictions (apart from the scoring, so a style edit scores nothing again)."""

import pandas as pd

from empathy_workflow.core import io, runtime
from empathy_workflow.similarity import scatter

logger = runtime.start(snakemake)
predictions = pd.read_csv(snakemake.input.predictions, float_precision="round_trip")
scores = io.read_json(snakemake.input.metrics)
method, test_set = snakemake.wildcards.method, snakemake.wildcards.testset
pearson = scores["pearson"]
scatter.scatter_plot(predictions, snakemake.output.plot,
                     f"{method} on {test_set} (n={scores['n']}, r={pearson:.2f})" if pearson is not None
                     else f"{method} on {test_set} (n={scores['n']})")
logger.info("%s: %d pairs drawn", snakemake.output.plot, len(predictions))
