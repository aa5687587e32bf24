"""Rule empo_evaluate: diff-Epitome, BERTScore, diversity and valence/intensity of one model's
generations, and with span_diversity the template-tree (span) diversity -> text_metrics.json and
per_item.csv."""

import time

from empathy_workflow.core import io, runtime
from empathy_workflow.empo import dialogues, epitome_data, evaluation, lexicons, template_trees, text_metrics

logger = runtime.start(snakemake)
settings = snakemake.params.settings
generations = text_metrics.read_generations(snakemake.input.generations)
logger.info("%s: %d generations", snakemake.wildcards.variant, len(generations))
# Read every input before the expensive steps, so a bad file fails fast.
vad = lexicons.vad_by_word(lexicons.read_vad(snakemake.input.vad))
intensity = lexicons.read_intensity_lexicon(snakemake.input.intensity)
word_counts = text_metrics.document_frequencies(dialogues.ed_utterances(snakemake.input.train))
classifier_metrics = {m: io.read_json(snakemake.input[f"{m}_metrics"]) for m in epitome_data.MECHANISMS}
classifiers = {m: snakemake.input[m] for m in epitome_data.MECHANISMS}
bertscore_model = snakemake.input.get("bertscore_model") or settings["bertscore"]["model"]

metrics, per_item = evaluation.evaluate_generations(
    generations, classifiers, bertscore_model, word_counts, vad, intensity, settings, classifier_metrics,
    bertscore_source=snakemake.params.bertscore_source, seed=int(snakemake.params.seed),
    device=runtime.select_device(snakemake.params.device))
if settings.get("span_diversity"):
    # the EmPO code's template-tree (span) diversity (Lee et al.): corpus level, no per-item values
    started = time.perf_counter()
    metrics["template_tree"] = template_trees.template_tree_stats(generations["generation"].tolist())
    logger.info("template trees: %d spans, compression ratio %s (%.1f s)", metrics["template_tree"].get("spans", 0),
                metrics["template_tree"].get("compression_ratio"), time.perf_counter() - started)
metrics["model"] = snakemake.wildcards.variant
io.write_csv(snakemake.output.per_item, per_item)
io.write_json(snakemake.output.metrics, metrics)
