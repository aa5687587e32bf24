# Empathic similarity (paper 1): zero-shot encoder, contrastive fine-tuning, LLM fine-tuning.


def similarity_test_table(wildcards):
    if wildcards.testset == "urdu_stories":
        return "results/data/urdu_stories/pairs.csv"
    return "results/data/empathic_stories/test.csv"


def similarity_model_inputs(wildcards):
    """What a method's predictions need besides the test table: the model (and adapter), and for
    the Urdu pairs the per-annotator ratings (model vs single annotators)."""
    method = wildcards.method
    settings = config["similarity"]
    if method == "zeroshot":
        inputs = {"model": model_dir(settings["zeroshot"]["encoder"])}
    elif method == "contrastive":
        inputs = {"model": "results/similarity/contrastive/model"}
    elif method == "llm_zeroshot":
        inputs = {"model": model_dir(settings["llm"]["model"])}
    else:
        inputs = {
            "model": model_dir(settings["llm"]["model"]),
            "adapter": "results/similarity/llm_sft/adapter",
        }
    if wildcards.testset == "urdu_stories":
        inputs["ratings"] = "results/data/urdu_stories/ratings.csv"
    return inputs


# The keys prediction reads from each section. Training hyperparameters reach predictions through
# the trained model (an input): as params they would also rerun the zero-shot scoring.
PREDICT_KEYS = {
    "zeroshot": None,  # all (the encoder)
    "contrastive": ("encoder", "max_seq_length"),
    "llm": ("model", "max_length", "max_narrative_tokens", "score_batch_size", "score_dtype", "quantization"),
}


def similarity_settings(wildcards):
    settings = config["similarity"]
    section = {"zeroshot": "zeroshot", "contrastive": "contrastive"}.get(wildcards.method, "llm")
    keys = PREDICT_KEYS[section]
    return {
        "text": settings["text"],
        "max_test_pairs": settings.get("max_test_pairs"),
        **{k: v for k, v in settings[section].items() if keys is None or k in keys},
    }


rule similarity_train_contrastive:
    input:
        train="results/data/empathic_stories/train.csv",
        dev="results/data/empathic_stories/dev.csv",
        encoder=lambda wildcards: model_dir(config["similarity"]["contrastive"]["encoder"]),
    output:
        model=directory("results/similarity/contrastive/model"),
    params:
        settings=config["similarity"]["contrastive"],
        text=config["similarity"]["text"],
        seed=SEED,
        code=code_version("similarity", "training", "preference", "metrics", "plots"),
    log:
        "results/logs/similarity/train_contrastive.log",
    benchmark:
        "results/benchmarks/similarity/train_contrastive.tsv"
    threads: 2
    conda:
        "../envs/training.yaml"
    script:
        "../workflow_scripts/similarity_train_contrastive.py"


rule similarity_train_llm:
    input:
        train="results/data/empathic_stories/train.csv",
        model=lambda wildcards: model_dir(config["similarity"]["llm"]["model"]),
    output:
        adapter=directory("results/similarity/llm_sft/adapter"),
    params:
        settings=config["similarity"]["llm"],
        text=config["similarity"]["text"],
        checkpoints="results/checkpoints/similarity/llm_sft",
        seed=SEED,
        code=code_version("similarity", "training", "preference", "metrics", "plots"),
    log:
        "results/logs/similarity/train_llm.log",
    benchmark:
        "results/benchmarks/similarity/train_llm.tsv"
    threads: 2
    conda:
        "../envs/training.yaml"
    script:
        "../workflow_scripts/similarity_train_llm.py"


rule similarity_predict:
    input:
        unpack(similarity_model_inputs),
        train="results/data/empathic_stories/train.csv",
        test=similarity_test_table,
        # says whether train/test are a re-split: every metrics.json carries that note
        split_info="results/data/empathic_stories/split_info.json",
    output:
        predictions="results/similarity/{method}/{testset}/predictions.csv",
        metrics="results/similarity/{method}/{testset}/metrics.json",
        plot=report(
            "results/similarity/{method}/{testset}/scatter.png",
            category="Similarity",
            caption="../report/similarity_scatter.rst",
        ),
    params:
        settings=similarity_settings,
        seed=SEED,
        code=code_version("similarity", "training", "preference", "metrics", "plots"),
    log:
        "results/logs/similarity/predict_{method}_{testset}.log",
    benchmark:
        "results/benchmarks/similarity/predict_{method}_{testset}.tsv"
    threads: 2
    wildcard_constraints:
        method="zeroshot|contrastive|llm_zeroshot|llm_sft",
        testset="empathic_stories_test|urdu_stories",
    conda:
        "../envs/training.yaml"
    script:
        "../workflow_scripts/similarity_predict.py"
