"""Rule epitome_quality: the three EPITOME classifiers' held-out scores as one file,
results/empo/epitome/quality.json (accuracy, macro F1, majority-class macro F1, n, confusion)."""

from empathy_workflow.core import io, runtime
from empathy_workflow.empo import epitome_quality
from empathy_workflow.empo.epitome_data import MECHANISMS

logger = runtime.start(snakemake)
metrics = {m: io.read_json(snakemake.input[f"{m}_metrics"]) for m in MECHANISMS}
result = epitome_quality.quality(metrics)
for mechanism in MECHANISMS:
    logger.info("%s: macro F1 %.3f (majority %.3f), informative: %s", mechanism, result[mechanism]["macro_f1"],
                result[mechanism]["majority_macro_f1"], result[mechanism]["informative"])
io.write_json(snakemake.output.quality, result)
