# Every download of the workflow, in one place (empathy_workflow/core/downloads.py): hub models,
# URL / hf: dataset sources and lm-eval's stock task data go into the cache named by the config
# key download_cache. These rules are localrules: on a cluster they run on the submit host (which
# has network); every other job runs with the hub's offline switches on (rules/common.smk).
# The three download rules share empathy_workflow/core/downloads.py (hub snapshots, datasets, lm-eval task
# data): they run in the evaluation env, which holds huggingface_hub, datasets and lm-eval alike.


localrules:
    download_model,
    download_dataset,
    download_lm_eval_task,


rule download_model:
    output:
        snapshot=directory(f"{DOWNLOAD_CACHE}/models/{{model}}"),
    log:
        "results/logs/downloads/model_{model}.log",
    wildcard_constraints:
        model=one_of(HUB_MODELS),
    conda:
        "../envs/evaluation.yaml"
    params:
        settings=lookup(dpath="models/{model}", within=config),
        code=code_of("download_model.py"),
    script:
        "../workflow_scripts/download_model.py"


rule download_dataset:
    output:
        manifest=f"{DOWNLOAD_CACHE}/manifests/datasets/{{dataset}}.json",
    log:
        "results/logs/downloads/dataset_{dataset}.log",
    wildcard_constraints:
        dataset=one_of(REMOTE_DATASETS),
    conda:
        "../envs/evaluation.yaml"
    params:
        sources=lambda wildcards: remote_sources(wildcards.dataset),
        cache=DOWNLOAD_CACHE,
        code=code_of("download_dataset.py"),
    script:
        "../workflow_scripts/download_dataset.py"


rule download_lm_eval_task:
    output:
        manifest=f"{DOWNLOAD_CACHE}/manifests/lm_eval/{{task}}.json",
    log:
        "results/logs/downloads/lm_eval_{task}.log",
    wildcard_constraints:
        task=one_of(STOCK_LM_EVAL_TASKS),
    conda:
        "../envs/evaluation.yaml"
    params:
        code=code_of("download_lm_eval_task.py"),
    script:
        "../workflow_scripts/download_lm_eval_task.py"


onstart:
    refuse_gated_downloads_before_gpu_jobs(log)
