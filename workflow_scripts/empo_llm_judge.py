"""Rule empo_llm_judge: an LLM behind an OpenAI-compatible endpoint rates every reply of the
human-evaluation items on each rating dimension -> llm_judge_ratings.csv (long format, the
annotator `llm_judge`) and llm_judge_summary.json (endpoint, unparsable answers, requests)."""

from empathy_workflow.core import runtime
from empathy_workflow.empo import llm_judge
from empathy_workflow.core.io import write_csv, write_json

logger = runtime.start(snakemake)  # noqa: F821 (snakemake is injected)
settings = dict(snakemake.params.settings)
dimensions = {name: dict(spec) for name, spec in dict(snakemake.params.dimensions).items()}
items = llm_judge.load_items(snakemake.input.eval_items)
logger.info("LLM judge: %d items x %d dimensions (%s)", len(items), len(dimensions), ", ".join(dimensions))
ratings, details = llm_judge.judge_ratings(items, dimensions, settings)
write_csv(snakemake.output.ratings, ratings)
write_json(snakemake.output.summary, {**details, "settings": settings})
