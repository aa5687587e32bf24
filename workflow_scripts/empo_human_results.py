"""Rule empo_human_results: completed rating sheets validated and joined with the key ->
results.json (model means, paired tests, win rates, agreement; the LLM judge when configured)
and results.md for the report."""

from empathy_workflow.core import io, runtime
from empathy_workflow.empo import human_eval, human_eval_ratings, human_eval_results

logger = runtime.start(snakemake)  # noqa: F821 (injected by Snakemake)
settings = snakemake.params.settings  # noqa: F821
items = io.read_csv(snakemake.input.replies, required=("item_id", "prompt_id"), what="items", dtype=str)  # noqa: F821
key = io.read_csv(snakemake.input.key, required=("item_id", "model"), what="key", dtype=str)  # noqa: F821
assignments = io.read_csv(snakemake.input.assignments, required=("item_id", "annotator"),  # noqa: F821
                          what="assignments", dtype=str)
# Every check runs before any statistic: a bad sheet stops the rule with its file and row.
files = snakemake.input.ratings  # noqa: F821 (a list of sheets, or one)
files = [files] if isinstance(files, str) else list(files)
ratings, counts = human_eval_ratings.read_ratings(files, settings["dimensions"], items["item_id"], assignments,
                                                  logger=logger)
judge = None
if "judge" in snakemake.input.keys():  # noqa: F821
    judge, judge_counts = human_eval_ratings.read_ratings([snakemake.input.judge], settings["dimensions"],  # noqa: F821
                                                          items["item_id"], annotator=human_eval.JUDGE_ANNOTATOR,
                                                          logger=logger)
    logger.info("LLM judge: %d ratings", judge_counts["ratings"])
counts["completion"] = human_eval_ratings.completion(ratings, assignments, settings["dimensions"])
logger.info("%d ratings from %s; completion %s", counts["ratings"], ", ".join(counts["annotators"]),
            counts["completion"])
result = human_eval_results.results(ratings, key, items, settings, snakemake.params.significance,  # noqa: F821
                                    snakemake.params.agreement, int(snakemake.params.seed), judge, logger)  # noqa: F821
result["ratings"] = counts
io.write_text(snakemake.output.table, human_eval_results.markdown(result, counts))  # noqa: F821
io.write_json(snakemake.output.json, result)  # noqa: F821
