# Evaluation of every EmPO model: diff-Epitome, BERTScore, diversity, valence, lm-eval.


if EPITOME_WEIGHTS:

    # Given classifiers: only scored on the held-out part of EPITOME (same seeded split as training).
    rule epitome_classifier_given:
        input:
            table="results/data/epitome/epitome.csv",
            weights=lambda wildcards: resolve_path(
                EPITOME_WEIGHTS[wildcards.mechanism], REPO
            ),
        output:
            metrics="results/empo/epitome/{mechanism}_metrics.json",
        log:
            "results/logs/evaluation/epitome_{mechanism}.log",
        benchmark:
            "results/benchmarks/evaluation/epitome_{mechanism}.tsv"
        wildcard_constraints:
            mechanism=one_of(EPITOME_MECHANISMS),
        conda:
            "../envs/evaluation.yaml"
        threads: 1
        resources:
            gpu=gpu_request("epitome_classifier_given"),
        params:
            device=config["device"],
            settings=config["empo"]["evaluation"]["epitome"],
            seed=SEED,
            code=code_of("epitome_classifier.py"),
        script:
            "../workflow_scripts/epitome_classifier.py"

else:

    # empo.evaluation.epitome.classifier: features (default), finetune or biencoder (the paper's).
    rule epitome_classifier:
        input:
            table="results/data/epitome/epitome.csv",
            encoder=model_dir(config["empo"]["evaluation"]["epitome"]["encoder"]),
        output:
            model=directory("results/empo/epitome/model"),
            er_metrics="results/empo/epitome/er_metrics.json",
            ip_metrics="results/empo/epitome/ip_metrics.json",
            ex_metrics="results/empo/epitome/ex_metrics.json",
        log:
            "results/logs/evaluation/epitome.log",
        benchmark:
            "results/benchmarks/evaluation/epitome.tsv"
        priority: 1  # long and on the critical path: start it first
        conda:
            "../envs/evaluation.yaml"
        threads: 1
        resources:
            gpu=gpu_request("epitome_classifier"),
        params:
            device=config["device"],
            settings=config["empo"]["evaluation"]["epitome"],
            seed=SEED,
            code=code_of("epitome_classifier.py"),
        script:
            "../workflow_scripts/epitome_classifier.py"


rule empo_evaluate:
    input:
        unpack(epitome_classifiers),
        unpack(bertscore_model),
        generations="results/empo/generations/{variant}.jsonl",
        train="results/data/empathetic_dialogues/train.jsonl",
        vad="results/data/lexicons/vad.csv",
        intensity="results/data/lexicons/intensity.csv",
    output:
        metrics="results/empo/eval/{variant}/text_metrics.json",
        per_item="results/empo/eval/{variant}/per_item.csv",
    log:
        "results/logs/evaluation/evaluate_{variant}.log",
    benchmark:
        "results/benchmarks/evaluation/evaluate_{variant}.tsv"
    wildcard_constraints:
        variant=one_of(EMPO_MODELS),
    conda:
        "../envs/evaluation.yaml"
    threads: 1
    resources:
        gpu=gpu_request("empo_evaluate"),
    params:
        device=config["device"],
        # the sections text metrics read (not lm_eval: its settings must not rescore the texts)
        settings={
            **{
                k: config["empo"]["evaluation"][k]
                for k in ("epitome", "bertscore", "significance")
            },
            "span_diversity": config["empo"]["evaluation"].get(
                "span_diversity", False
            ),
        },
        bertscore_source=bertscore_source(),
        seed=SEED,
        code=code_of("empo_evaluate.py"),
    script:
        "../workflow_scripts/empo_evaluate.py"


# The classifiers' held-out quality in one file; the report marks uninformative mechanisms.
rule epitome_quality:
    input:
        **{
            f"{m}_metrics": f"results/empo/epitome/{m}_metrics.json"
            for m in EPITOME_MECHANISMS
        },
    output:
        quality="results/empo/epitome/quality.json",
    log:
        "results/logs/evaluation/epitome_quality.log",
    conda:
        "../envs/evaluation.yaml"
    params:
        code=code_of("epitome_quality.py"),
    script:
        "../workflow_scripts/epitome_quality.py"


rule empo_lm_eval:
    input:
        unpack(empo_adapter),
        model=model_dir(config["empo"]["sft"]["model"]),
        mmlu="results/data/mmlu/questions.csv",
        # stock tasks' data, fetched by download_lm_eval_task (the job itself runs offline)
        task_data=expand(
            f"{DOWNLOAD_CACHE}/manifests/lm_eval/{{task}}.json",
            task=STOCK_LM_EVAL_TASKS,
        ),
    output:
        results="results/empo/eval/{variant}/lm_eval.json",
    log:
        "results/logs/evaluation/lm_eval_{variant}.log",
    benchmark:
        "results/benchmarks/evaluation/lm_eval_{variant}.tsv"
    wildcard_constraints:
        variant=one_of(TRAINED_MODELS),
    conda:
        "../envs/evaluation.yaml"
    threads: 1
    resources:
        gpu=gpu_request("empo_lm_eval"),
    params:
        device=config["device"],
        settings=config["empo"]["evaluation"]["lm_eval"],
        seed=SEED,
        code=code_of("empo_lm_eval.py"),
    script:
        "../workflow_scripts/empo_lm_eval.py"


rule empo_metrics:
    input:
        text="results/empo/eval/{variant}/text_metrics.json",
        # a generation variant has its model's general ability
        lm_eval=lambda wildcards: f"results/empo/eval/{trained_model(wildcards.variant)}/lm_eval.json",
    output:
        metrics="results/empo/eval/{variant}/metrics.json",
    log:
        "results/logs/evaluation/metrics_{variant}.log",
    wildcard_constraints:
        variant=one_of(EMPO_MODELS),
    conda:
        "../envs/evaluation.yaml"
    params:
        code=code_of("empo_metrics.py"),
    script:
        "../workflow_scripts/empo_metrics.py"


rule empo_significance:
    input:
        per_item=expand("results/empo/eval/{variant}/per_item.csv", variant=EMPO_MODELS),
    output:
        json="results/empo/eval/significance.json",
    log:
        "results/logs/evaluation/significance.log",
    conda:
        "../envs/evaluation.yaml"
    params:
        models=EMPO_MODELS,
        settings=config["empo"]["evaluation"]["significance"],
        seed=SEED,
        code=code_of("empo_significance.py"),
    script:
        "../workflow_scripts/empo_significance.py"
