"""Rule empo_llm_judge: an LLM behind an OpenAI-compatible endpoint rates every reply of the
human-evaluation items on each rating dimension -> llm_judge_ratings.csv (long format, the
annotator `llm_judge`) and llm_judge_summary.json (endpoint, unparsable answers, requests)."""

from empathy_workflow import llm_raters, runtime
from empathy_workflow.io import write_csv, write_json

logger = runtime.start(snakemake)  # noqa: F821 (snakemake is injected)
settings = dict(snakemake.params.settings)
dimensions = {name: dict(spec) for name, spec in dict(snakemake.params.dimensions).items()}
items = llm_raters.load_items(snakemake.input.eval_items)
logger.info("LLM judge: %d items x %d dimensions (%s)", len(items), len(dimensions), ", ".join(dimensions))
ratings, details = llm_raters.judge_ratings(items, dimensions, settings)
write_csv(snakemake.output.ratings, ratings)
write_json(snakemake.output.summary, {**details, "settings": settings})
