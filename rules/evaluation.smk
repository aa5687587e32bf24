# Evaluation of every EmPO model: diff-Epitome, BERTScore, diversity, valence, lm-eval.

EPITOME_MECHANISMS = ["er", "ip", "ex"]


rule epitome_classifier:
    input:
        table="results/data/epitome/epitome.csv",
        encoder=lambda wildcards: model_dir(config["empo"]["evaluation"]["epitome"]["encoder"]),
    output:
        model=directory("results/empo/epitome/{mechanism}"),
        metrics="results/empo/epitome/{mechanism}_metrics.json",
    params:
        settings=config["empo"]["evaluation"]["epitome"],
        seed=SEED,
        code=code_version("evaluation"),
    log:
        "results/logs/evaluation/epitome_{mechanism}.log",
    benchmark:
        "results/benchmarks/evaluation/epitome_{mechanism}.tsv"
    threads: 2
    resources:
        gpu=1,
    wildcard_constraints:
        mechanism="er|ip|ex",
    conda:
        "../envs/evaluation.yaml"
    script:
        "../workflow_scripts/epitome_classifier.py"


def epitome_classifiers(wildcards):
    weights = config["empo"]["evaluation"]["epitome"].get("weights")
    if weights:
        return {m: resolve_path(weights[m], REPO) for m in EPITOME_MECHANISMS}
    return {m: f"results/empo/epitome/{m}" for m in EPITOME_MECHANISMS}


def bertscore_model(wildcards):
    name = config["empo"]["evaluation"]["bertscore"]["model"]
    return {"bertscore_model": model_dir(name)} if name in config["models"] else {}


rule empo_evaluate:
    input:
        unpack(epitome_classifiers),
        unpack(bertscore_model),
        generations="results/empo/generations/{model}.jsonl",
        train="results/data/empathetic_dialogues/train.jsonl",
        vad="results/data/lexicons/vad.csv",
        intensity="results/data/lexicons/intensity.csv",
    output:
        metrics="results/empo/eval/{model}/text_metrics.json",
        per_item="results/empo/eval/{model}/per_item.csv",
    params:
        settings=config["empo"]["evaluation"],
        seed=SEED,
        code=code_version("evaluation", "metrics"),
    log:
        "results/logs/evaluation/evaluate_{model}.log",
    benchmark:
        "results/benchmarks/evaluation/evaluate_{model}.tsv"
    threads: 2
    wildcard_constraints:
        model="|".join(EMPO_MODELS),
    conda:
        "../envs/evaluation.yaml"
    script:
        "../workflow_scripts/empo_evaluate.py"


rule empo_lm_eval:
    input:
        unpack(empo_adapter),
        model=model_dir(config["empo"]["sft"]["model"]),
        mmlu="results/data/mmlu/questions.csv",
    output:
        results="results/empo/eval/{model}/lm_eval.json",
    params:
        settings=config["empo"]["evaluation"]["lm_eval"],
        seed=SEED,
        code=code_version("evaluation"),
    log:
        "results/logs/evaluation/lm_eval_{model}.log",
    benchmark:
        "results/benchmarks/evaluation/lm_eval_{model}.tsv"
    threads: 2
    resources:
        gpu=1,
    wildcard_constraints:
        model="|".join(EMPO_MODELS),
    conda:
        "../envs/evaluation.yaml"
    script:
        "../workflow_scripts/empo_lm_eval.py"


rule empo_metrics:
    input:
        text="results/empo/eval/{model}/text_metrics.json",
        lm_eval="results/empo/eval/{model}/lm_eval.json",
    output:
        metrics="results/empo/eval/{model}/metrics.json",
    params:
        code=code_version("evaluation"),
    log:
        "results/logs/evaluation/metrics_{model}.log",
    wildcard_constraints:
        model="|".join(EMPO_MODELS),
    conda:
        "../envs/evaluation.yaml"
    script:
        "../workflow_scripts/empo_metrics.py"


rule empo_significance:
    input:
        per_item=expand("results/empo/eval/{model}/per_item.csv", model=EMPO_MODELS),
    output:
        json="results/empo/eval/significance.json",
    params:
        models=EMPO_MODELS,
        settings=config["empo"]["evaluation"]["significance"],
        seed=SEED,
        code=code_version("evaluation", "metrics"),
    log:
        "results/logs/evaluation/significance.log",
    conda:
        "../envs/evaluation.yaml"
    script:
        "../workflow_scripts/empo_significance.py"
