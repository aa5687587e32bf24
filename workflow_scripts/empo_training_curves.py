"""Rule empo_training_curves: the figure of one training run's curves (drawn apart from training)."""

import pandas as pd

from empathy_workflow.core import runtime
from empathy_workflow.empo import figures

logger = runtime.start(snakemake)
# round_trip: the floats training wrote, exactly
frame = pd.read_csv(snakemake.input.curves, float_precision="round_trip")
figures.plot_training_curves(frame, snakemake.output.plot, snakemake.params.title)
logger.info("%s: %d logged rows drawn", snakemake.output.plot, len(frame))
