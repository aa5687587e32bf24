# Empathic similarity (paper 1): zero-shot encoder, contrastive fine-tuning, LLM fine-tuning, and
# (llm_api) a model behind an OpenAI-compatible endpoint prompted zero-shot.


rule similarity_train_contrastive:
    input:
        train="results/data/empathic_stories/train.csv",
        dev="results/data/empathic_stories/dev.csv",
        encoder=lambda wildcards: model_dir(
            config["similarity"]["contrastive"]["encoder"]
        ),
    output:
        model=directory("results/similarity/contrastive/model"),
    log:
        "results/logs/similarity/train_contrastive.log",
    benchmark:
        "results/benchmarks/similarity/train_contrastive.tsv"
    conda:
        "../envs/training.yaml"
    threads: 1
    resources:
        gpu=gpu_request("similarity_train_contrastive"),
    params:
        device=config["device"],
        settings=config["similarity"]["contrastive"],
        text=config["similarity"]["text"],
        seed=SEED,
        code=code_of("similarity_train_contrastive.py"),
    script:
        "../workflow_scripts/similarity_train_contrastive.py"


rule similarity_train_llm:
    input:
        train="results/data/empathic_stories/train.csv",
        model=lambda wildcards: model_dir(config["similarity"]["llm"]["model"]),
    output:
        adapter=directory("results/similarity/llm_sft/adapter"),
    log:
        "results/logs/similarity/train_llm.log",
    benchmark:
        "results/benchmarks/similarity/train_llm.tsv"
    priority: 1  # long and on the critical path: start it first
    conda:
        "../envs/training.yaml"
    threads: 1
    resources:
        gpu=gpu_request("similarity_train_llm"),
    params:
        device=config["device"],
        settings=similarity_llm_training_settings(),
        text=config["similarity"]["text"],
        checkpoints="results/checkpoints/similarity/llm_sft",
        seed=SEED,
        code=code_of("similarity_train_llm.py"),
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
    log:
        "results/logs/similarity/predict_{method}_{testset}.log",
    benchmark:
        "results/benchmarks/similarity/predict_{method}_{testset}.tsv"
    wildcard_constraints:
        method="zeroshot|contrastive|llm_zeroshot|llm_sft|llm_api",
        testset="empathic_stories_test|urdu_stories",
    conda:
        "../envs/training.yaml"
    threads: 1
    resources:
        gpu=gpu_request("similarity_predict"),
    params:
        device=config["device"],
        settings=similarity_settings,
        seed=SEED,
        code=code_of("similarity_predict.py"),
    script:
        "../workflow_scripts/similarity_predict.py"


rule similarity_scatter:
    input:
        predictions=rules.similarity_predict.output.predictions,
        metrics=rules.similarity_predict.output.metrics,
    output:
        plot=report(
            "results/similarity/{method}/{testset}/scatter.png",
            category="Similarity",
            caption="../report/similarity_scatter.rst",
        ),
    log:
        "results/logs/similarity/scatter_{method}_{testset}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        code=code_of("similarity_scatter.py"),
    script:
        "../workflow_scripts/similarity_scatter.py"
