# Every download of the workflow, in one place (empathy_workflow/downloads.py): hub models,
# URL / hf: dataset sources and lm-eval's stock task data go into the cache named by the config
# key download_cache. These rules are localrules: on a cluster they run on the submit host (which
# has network); every other job runs with the hub's offline switches on (rules/common.smk).
# The three download rules share empathy_workflow/downloads.py (hub snapshots, datasets, lm-eval task
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
        settings=lambda wildcards: config["models"][wildcards.model],
        code=code_version("downloads", "models", "data"),
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
        code=code_version("downloads", "data", "models"),
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
        code=code_version("downloads", "data", "models"),
    script:
        "../workflow_scripts/download_lm_eval_task.py"


def refuse_gated_downloads_before_gpu_jobs(log):
    """Issue 13, item 2: a GPU run whose lm-eval tasks read gated data (GPQA in `leaderboard`)
    without a Hugging Face token stops here, on the submit host before any job starts, naming the
    task and the need; the download job would refuse too, but only once GPU jobs of independent
    branches had started. Not in dry runs and not in jobs (Snakemake runs onstart in neither);
    a CPU run (device: cpu, the rehearsal) leaves the refusal to the download job."""
    if config["device"] == "cpu":
        return
    missing = [
        task
        for task in STOCK_LM_EVAL_TASKS
        if not os.path.exists(f"{DOWNLOAD_CACHE}/manifests/lm_eval/{task}.json")
    ]
    if not missing:
        return
    from empathy_workflow import downloads
    from lm_eval.tasks import TaskManager

    manager = TaskManager()
    for task in missing:
        try:
            downloads.refuse_gated(
                task, downloads.task_datasets(task, manager), downloads.hf_token()
            )
        except downloads.DownloadRefused as error:
            raise WorkflowError(str(error)) from None


onstart:
    refuse_gated_downloads_before_gpu_jobs(log)
