"""Rule similarity_predict: one method on one test set -> predictions.csv and metrics.json (its figure: rule similarity_scatter)."""

from empathy_workflow.core import io, runtime
from empathy_workflow.similarity import api, metrics, predict, story_pairs
from empathy_workflow.core.io import write_csv, write_json

logger = runtime.start(snakemake)  # noqa: F821 (snakemake is injected)
method, test_set = snakemake.wildcards.method, snakemake.wildcards.testset
settings = io.json_safe(dict(snakemake.params.settings))
text = settings.pop("text")
max_test_pairs = settings.pop("max_test_pairs", None)
test, used = story_pairs.load_pairs(snakemake.input.test, text)
total = len(test)
test = story_pairs.sample_test_pairs(test, max_test_pairs, snakemake.params.seed)
if len(test) < total:
    logger.info("scoring a seeded subset of %d of the %d %s pairs (similarity.max_test_pairs)", len(test), total,
                test_set)
train, _ = story_pairs.load_pairs(snakemake.input.train, text)
split = story_pairs.split_note(test_set, snakemake.input.split_info, scored=len(test), total=total)
logger.info("%s on %s: %d test pairs (text: %s)", method, test_set, len(test), used)

if method == "llm_api":  # a model behind an OpenAI-compatible endpoint (similarity.llm_api)
    predictions, details = api.api_similarity_predictions(test, settings)
else:
    predictions, details = predict.predict(method, test, train, snakemake.input.model, settings,
                                              adapter_path=snakemake.input.get("adapter"))
# llm_api: pairs whose answers held no score (counted in metrics.json) are left out of the metrics
with_score = predictions.dropna(subset=["predicted"])
scores = metrics.similarity_metrics(with_score.gold, with_score.predicted)
result = {
    **scores,
    "method": method,
    "test_set": test_set,
    "gold": "empathy: mean of the annotators' ratings (1-4)",
    "split": split,
    "subset": f"seeded subset of {len(test)} of {total} pairs" if len(test) < total else "all pairs",
    "text": used,
    "text_requested": text,
    "settings": settings,
    "model": snakemake.input.get("model"),  # none for llm_api (an endpoint)
    **details,
}
# The headline keys above come from the paper's scoring (details["scoring"]); every other scoring of
# the same pairs is an extra, under extra_metrics.<column>, described in details["extra_scorings"].
result["procedure"] = "paper (docs/fidelity.md)"
result["extra_metrics"] = {}
for column in details.get("extra_scorings", {}):
    extra = metrics.similarity_metrics(predictions.gold, predictions[column])
    result["extra_metrics"][column] = {k: extra[k] for k in ("pearson", "spearman", "mse", "accuracy", "precision",
                                                             "recall", "f1")}
if snakemake.input.get("ratings"):
    result["per_annotator"] = story_pairs.per_annotator_scores(with_score, snakemake.input.ratings)
write_csv(snakemake.output.predictions, predictions)
write_json(snakemake.output.metrics, result)
logger.info("%s on %s: %s", method, test_set, {k: scores[k] for k in ("pearson", "spearman", "mse", "f1")})
