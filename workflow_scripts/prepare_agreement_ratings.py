"""Rule script: check a user-declared long-format ratings CSV (item_id, annotator, aspect, score)
and write it in the layout the agreement analysis reads. Bad input fails here, before analysis;
empty scores and items with fewer than two ratings are kept, so the analysis counts them."""

from empathy_workflow.core import ratings
from empathy_workflow.core import io, runtime

logger = runtime.start(snakemake)  # noqa: F821 (injected by Snakemake)
source = snakemake.input.ratings  # noqa: F821
frame = io.read_csv(source, what="ratings CSV", dtype={"item_id": str, "annotator": str, "aspect": str})
clean, exclusions = ratings.validate_ratings(frame, snakemake.params.scale, source, logger)  # noqa: F821
for aspect, counts in exclusions.items():
    part = clean[clean["aspect"] == aspect]
    logger.info("aspect %s: %d ratings of %d items by %d annotators; exclusions %s", aspect, len(part),
                part["item_id"].nunique(), part["annotator"].nunique(), counts)
out = frame[list(ratings.COLUMNS)].copy()
for column in ("item_id", "annotator", "aspect"):
    out[column] = out[column].str.strip()
io.write_csv(snakemake.output.ratings, out)  # noqa: F821
logger.info("wrote %d rating rows to %s", len(out), snakemake.output.ratings)  # noqa: F821
