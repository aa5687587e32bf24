"""Rule epitome_classifier: train the EPITOME level classifiers (empo.evaluation.epitome.classifier:
features, the default frozen-embeddings + n-gram model; finetune, one fine-tuned encoder with a
level head per mechanism; biencoder, the authors' architecture, one model per mechanism) and score
each mechanism on the held-out pairs. Rule epitome_classifier_given: score one mechanism's given
weights on the same held-out pairs."""

from empathy_workflow.core import io, runtime
from empathy_workflow.empo import epitome, epitome_data, epitome_quality

logger = runtime.start(snakemake)
settings = snakemake.params.settings
seed = int(snakemake.params.seed)
device = runtime.select_device(snakemake.params.device)
logger.info("device: %s", device)
pairs, info = epitome_data.read_epitome(snakemake.input.table)
logger.info("EPITOME: %s", info)
common = {"held_out_fraction": settings["held_out"], "seed": seed, "epitome": info,
          "settings": {k: v for k, v in settings.items() if k != "weights"}}

if "weights" in snakemake.input.keys():
    mechanism = snakemake.wildcards.mechanism
    results = {mechanism: epitome.evaluate_given_classifier(pairs, mechanism, snakemake.input.weights,
                                                               settings, seed, device)}
    outputs = {mechanism: snakemake.output.metrics}
else:
    train = {"features": epitome_quality.train_features_classifier,
             "finetune": epitome.train_epitome_classifier,
             "biencoder": epitome_quality.train_biencoder_classifier}[settings["classifier"]]
    results = train(pairs, snakemake.input.encoder, snakemake.output.model, settings, seed, device=device)
    outputs = {m: snakemake.output[f"{m}_metrics"] for m in epitome_data.MECHANISMS}

for mechanism, metrics in results.items():
    held = metrics["held_out"]
    logger.info("%s held-out: accuracy %.3f (majority %.3f), macro F1 %.3f (majority %.3f), n=%d", mechanism,
                held["accuracy"], held["majority_accuracy"], held["macro_f1"], held["majority_macro_f1"], held["n"])
    # Headline numbers also at the top level, for the report's table.
    headline = {"accuracy": held["accuracy"], "macro_f1": held["macro_f1"],
                "majority_accuracy": held["majority_accuracy"], "majority_macro_f1": held["majority_macro_f1"],
                "n_held_out": held["n"]}
    io.write_json(outputs[mechanism], {**metrics, **common, **headline, "mechanism": mechanism})
