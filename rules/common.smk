import os
import re
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

REPO = Path(workflow.basedir)
SCRIPTS = REPO / "workflow_scripts"
# The library (workflow_scripts/empathy_workflow) is an installed package (`make setup`:
# pip install -e .); jobs run in the same environment, or in a conda env / container that
# installs it too (envs/*.post-deploy.sh read this variable; envs/empathy.def).
os.environ.update(EMPATHY_WORKFLOW_REPO=str(REPO))
# One string-hash seed for every job: bert-score orders sentences through a set, so with Python's
# per-process hash seed its batches, padding and float sums (1e-9) changed from run to run.
os.environ.setdefault("PYTHONHASHSEED", "0")

from empathy_workflow.core.code_version import library_fingerprint
from empathy_workflow.core.config import ConfigError, resolve_path, validate_config
from empathy_workflow.core.grids import resolve_runs
from empathy_workflow.core.downloads import is_remote, offline_environment
from empathy_workflow.core.runtime import device_error_marker
from empathy_workflow.empo.epitome_data import MECHANISMS

try:
    validate_config(config, REPO / "schemas" / "config.schema.yaml", REPO)
except ConfigError as error:
    raise WorkflowError(str(error)) from None

# Downloads happen only in rules/downloads.smk (localrules, on the machine Snakemake runs on),
# into this cache; every job runs with the hub's offline switches on and reads the cache (the
# download rules switch them off for themselves).
DOWNLOAD_CACHE = config["download_cache"]
os.environ.update(offline_environment(DOWNLOAD_CACHE))

# GPU rules declare `gpu` (sbatch --gpus on Slurm; with `--resources gpu=K` on a workstation, at
# most K at once, each on its own GPU: empathy_workflow/core/gpu_slots.py). device: cpu asks for none.
GPU_PER_JOB = 0 if config["device"] == "cpu" else 1


def gpu_request(rule):
    """The `gpu` resource of a GPU rule's job: GPU_PER_JOB, except on a retry of a job whose
    earlier attempt found no usable CUDA (its marker, runtime.device_error_marker). Snakemake 9's
    retries cannot depend on why a job failed, so such a retry asks for no GPU (no second wait
    in a GPU queue) and runtime.place_job stops it at once with the first attempt's message.
    """

    def gpu(wildcards, attempt):
        if (
            GPU_PER_JOB
            and attempt > 1
            and os.path.exists(device_error_marker(rule, wildcards))
        ):
            return 0
        return GPU_PER_JOB

    return gpu


wildcard_constraints:
    # dots: grid runs are named after their values (dpo_beta0.052)
    model=r"[A-Za-z0-9_.-]+",
    variant=r"[A-Za-z0-9_.-]+",
    run=r"[A-Za-z0-9_.-]+",
    split=r"train|valid|test",
    dataset=r"[A-Za-z0-9_-]+",


SEED = config["seed"]

# Threads: every torch rule asks for one. On the small models of the default run a second torch
# thread buys only ~1.5x (a 2-thread job keeps its cores ~75% busy), so `--cores N` does more by
# running N jobs side by side (benchmarks/RESULTS.md). The long sequential steps carry a
# `priority:` so they start first. Give a rule more with `--set-threads RULE=N`; the Slurm
# profile sets the GPU rules' threads itself.


def dataset_path(dataset, key):
    """A dataset entry resolved against the working directory, then the repository root."""
    value = config["datasets"][dataset][key]
    return None if value is None else resolve_path(value, REPO)


def local_inputs(*paths):
    """Input files that Snakemake should track: local ones only (remote sources are fetched in-job)."""
    return [
        p
        for p in paths
        if p is not None and not p.startswith(("http://", "https://", "hf:"))
    ]


def code_of(script):
    """The library code of a script: a hash of the modules it imports, transitively
    (core/code_version.py). A rule param, so an edit to a module reruns exactly the rules whose
    scripts reach it; Snakemake's own code trigger covers the script itself."""
    return library_fingerprint(SCRIPTS / script)


def model_dir(name):
    return f"results/models/{name}"


# {run: full settings}: empo.preference.defaults updated by each run's keys, grids expanded
PREFERENCE_SETTINGS = resolve_runs(config["empo"]["preference"])
PREFERENCE_RUNS = list(PREFERENCE_SETTINGS)
# extra generation runs of a model (e.g. the length-controlled baseline): {name: {model, ...}}
GENERATION_VARIANTS = config["empo"]["generation"].get("variants") or {}
TRAINED_MODELS = ["base", "sft"] + PREFERENCE_RUNS
EMPO_MODELS = TRAINED_MODELS + list(GENERATION_VARIANTS)


def one_of(names):
    """A wildcard constraint matching exactly these names (run names may hold dots)."""
    return "|".join(re.escape(name) for name in names) if names else "(?!)"


# The LLM judge's endpoint settings, when empo.human_eval.llm_judge names one (off by default).
LLM_JUDGE = (config["empo"].get("human_eval") or {}).get("llm_judge")
LLM_JUDGE_TARGETS = (
    ["results/empo/human_eval/llm_judge_ratings.csv"] if LLM_JUDGE else []
)


# What the download rules fetch: hub models, datasets with a URL or hf: source, lm-eval stock tasks.
HUB_MODELS = sorted(
    name
    for name, entry in config["models"].items()
    if not entry["source"].startswith("package:")
)
STOCK_LM_EVAL_TASKS = [
    task
    for task in config["empo"]["evaluation"]["lm_eval"]["tasks"]
    if task != "mmlu_local"
]


def remote_sources(dataset):
    return {
        key: value
        for key, value in config["datasets"][dataset].items()
        if is_remote(value)
    }


REMOTE_DATASETS = sorted(name for name in config["datasets"] if remote_sources(name))


def model_snapshot(wildcards):
    """A hub model's downloaded snapshot (prepare_model links it into results/models)."""
    if wildcards.model in HUB_MODELS:
        return {"snapshot": f"{DOWNLOAD_CACHE}/models/{wildcards.model}"}
    return {}


def dataset_download(dataset):
    """The download manifest of a dataset with remote sources (empty for local ones)."""
    if dataset in REMOTE_DATASETS:
        return [f"{DOWNLOAD_CACHE}/manifests/datasets/{dataset}.json"]
    return []


AGREEMENT_DATASETS = ["urdu_stories"] + sorted(config["agreement"]["datasets"])
SIMILARITY_METHODS = config["similarity"]["methods"]
SIMILARITY_TEST_SETS = config["similarity"]["test_sets"]


# ---------------------------------------------------------------------------------------------
# Input functions and settings of rules/data.smk

# Raw datasets -> validated intermediate tables under results/data/.
# Inputs list the local files only (so Snakemake tracks them); every rule reads its sources from
# params, where a URL (or for EmpatheticDialogues an "hf:" id) is fetched inside the job.
EPITOME_KEYS = ("emotional_reactions", "interpretations", "explorations")


# ---------------------------------------------------------------------------------------------
# Input functions and settings of rules/agreement.smk

# Annotator agreement (paper 1): English vs Urdu, and the ceiling disagreement puts on models.
if "urdu_stories" in config["agreement"]["datasets"]:
    # urdu_stories is built from datasets.urdu_stories; a second declaration would make two rules
    # produce its ratings.
    raise WorkflowError(
        "config key agreement.datasets.urdu_stories: this name is reserved (the Urdu ratings are "
        "always analysed, from datasets.urdu_stories); declare your dataset under another name"
    )


def agreement_settings(*keys):
    """The agreement keys a rule reads (a new dataset under agreement.datasets reruns no other)."""
    return {key: config["agreement"][key] for key in keys}


def agreement_ratings(wildcards):
    if wildcards.dataset == "urdu_stories":
        return "results/data/urdu_stories/ratings.csv"
    return f"results/data/agreement/{wildcards.dataset}/ratings.csv"


def agreement_scale(name):
    entry = config["agreement"]["datasets"].get(name, {})
    return entry.get("scale", config["agreement"]["scale"])


def agreement_language(name):
    """The annotators' language (en, ur, ...): urdu_stories is Urdu; user datasets say so or not."""
    if name == "urdu_stories":
        return "ur"
    return config["agreement"]["datasets"].get(name, {}).get("language")


def agreement_compare_as(name):
    """{aspect: shared aspect} for the cross-culture table; aspects not named keep their name."""
    return dict(config["agreement"]["datasets"].get(name, {}).get("compare_as") or {})


# ---------------------------------------------------------------------------------------------
# Input functions and settings of rules/similarity.smk


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
    if method == "llm_api":
        inputs = {}  # the model is behind an endpoint (similarity.llm_api)
    elif method == "zeroshot":
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
    "llm": (
        "model",
        "max_length",
        "max_narrative_tokens",
        "score_batch_size",
        "score_dtype",
        "quantization",
        "max_new_tokens",
    ),
}


# Keys of similarity.llm that only scoring reads: as training params they would retrain the LoRA
# when, say, the scoring batch size changes.
LLM_SCORING_ONLY_KEYS = ("score_batch_size", "score_dtype", "max_new_tokens")


def similarity_llm_training_settings():
    return {
        key: value
        for key, value in config["similarity"]["llm"].items()
        if key not in LLM_SCORING_ONLY_KEYS
    }


def similarity_settings(wildcards):
    settings = config["similarity"]
    if wildcards.method == "llm_api":
        # every key: endpoint, sampling and answer handling change the answers; the key itself is
        # never in config (only the name of its environment variable)
        return {
            "text": settings["text"],
            "max_test_pairs": settings.get("max_test_pairs"),
            **settings["llm_api"],
        }
    section = {"zeroshot": "zeroshot", "contrastive": "contrastive"}.get(
        wildcards.method, "llm"
    )
    keys = PREDICT_KEYS[section]
    return {
        "text": settings["text"],
        "max_test_pairs": settings.get("max_test_pairs"),
        **{k: v for k, v in settings[section].items() if keys is None or k in keys},
    }


# ---------------------------------------------------------------------------------------------
# Input functions and settings of rules/empo_training.smk


# EmPO (paper 2): emotion-grounded preference pairs, SFT, then preference optimisation (LoRA).
def emotion_mapping_source():
    name = config["empo"]["pairs"]["emotion_mapping"]
    if name == "plutchik":
        return str(REPO / "resources" / "emotion_mappings" / "plutchik.csv")
    if name == "valence":
        return None
    return resolve_path(name, REPO)


def pairs_threshold_source(wildcards):
    """valid and test pairs are length-filtered with the train split's threshold (src/dpo_ps.py of
    the EmPO code): the train split's statistics are their input when a filter is on."""
    if (
        wildcards.split == "train"
        or config["empo"]["pairs"].get("length_percentile") is None
    ):
        return {}
    return {"train_stats": "results/empo/pairs/train_stats.json"}


def trained_model(name):
    """The trained model a MODEL name generates with: itself, or a generation variant's model."""
    return GENERATION_VARIANTS[name]["model"] if name in GENERATION_VARIANTS else name


def empo_adapter(wildcards):
    """The adapter a model name stands for: none for base, the SFT one, or a preference run's
    (each a complete PEFT folder: base + SFT (+ run) for AutoPeftModelForCausalLM)."""
    model = trained_model(wildcards.variant)
    if model == "base":
        return {}
    return {"adapter": f"results/empo/models/{model}"}


def conversation_split(subset):
    """The ED split a conversation subset is drawn from (generation answers test prompts)."""
    return "test" if subset == "generation" else subset


def conversation_limit(subset):
    """How many conversations a subset holds at most: empo.pairs.max_conversations per split,
    empo.generation.max_examples for generation (null: all)."""
    if subset == "generation":
        return config["empo"]["generation"].get("max_examples")
    return (config["empo"]["pairs"].get("max_conversations") or {}).get(subset)


def generation_settings(wildcards):
    """empo.generation with a variant's max_new_tokens (variants and the subset's cap, which reaches
    generation through results/empo/conversations/generation.json, left out)."""
    settings = {
        k: v
        for k, v in config["empo"]["generation"].items()
        if k not in ("variants", "max_examples")
    }
    variant = GENERATION_VARIANTS.get(wildcards.variant, {})
    if "max_new_tokens" in variant:
        settings["max_new_tokens"] = variant["max_new_tokens"]
    return settings


def generation_system_prompt(wildcards):
    variant = GENERATION_VARIANTS.get(wildcards.variant, {})
    return variant.get("system_prompt", config["empo"]["system_prompts"]["generation"])


# ---------------------------------------------------------------------------------------------
# Input functions and settings of rules/empo_evaluation.smk

# Evaluation of every EmPO model: diff-Epitome, BERTScore, diversity, valence, lm-eval.
EPITOME_MECHANISMS = list(MECHANISMS)


EPITOME_WEIGHTS = config["empo"]["evaluation"]["epitome"].get("weights")


def epitome_classifiers(wildcards):
    if EPITOME_WEIGHTS:
        paths = {m: resolve_path(EPITOME_WEIGHTS[m], REPO) for m in EPITOME_MECHANISMS}
    else:
        paths = {m: "results/empo/epitome/model" for m in EPITOME_MECHANISMS}
    paths.update(
        {
            f"{m}_metrics": f"results/empo/epitome/{m}_metrics.json"
            for m in EPITOME_MECHANISMS
        }
    )
    return paths


def bertscore_model(wildcards):
    name = config["empo"]["evaluation"]["bertscore"]["model"]
    return {"bertscore_model": model_dir(name)} if name in config["models"] else {}


def bertscore_source():
    """The hub id behind the BERTScore model (its name finds bert-score's shipped baseline)."""
    name = config["empo"]["evaluation"]["bertscore"]["model"]
    return config["models"][name]["source"] if name in config["models"] else name


# ---------------------------------------------------------------------------------------------
# Input functions and settings of rules/empo_human_eval.smk

# Human evaluation of EmPO replies: off unless empo.human_eval is set (configs/human_eval.yaml).
HUMAN_EVAL_CONFIG = config["empo"].get("human_eval")
HUMAN_EVAL = None
HUMAN_EVAL_DIR = "results/empo/human_eval"
if HUMAN_EVAL_CONFIG:
    from empathy_workflow.empo.human_eval import (
        resolve_settings as _human_eval_settings,
    )
    from empathy_workflow.core.io import InputError as _InputError

    try:
        HUMAN_EVAL = _human_eval_settings(HUMAN_EVAL_CONFIG, EMPO_MODELS)
    except _InputError as error:
        raise WorkflowError(str(error)) from None
    # The completed sheets as files (a folder is listed here): an edited or added sheet reruns
    # the results, which a folder's own timestamp would not show.
    HUMAN_EVAL_RATINGS = []
    if HUMAN_EVAL_CONFIG.get("ratings") is not None:
        from empathy_workflow.empo.human_eval_ratings import (
            rating_files as _rating_files,
        )

        try:
            HUMAN_EVAL_RATINGS = [
                str(p)
                for p in _rating_files(resolve_path(HUMAN_EVAL_CONFIG["ratings"], REPO))
            ]
        except _InputError as error:
            raise WorkflowError(
                f"config key empo.human_eval.ratings: {error} (a CSV or a folder of completed "
                f"sheets; null: only the sheets are made)"
            ) from None


def human_eval_generations(wildcards):
    return [f"results/empo/generations/{model}.jsonl" for model in HUMAN_EVAL["models"]]


def human_eval_ratings(wildcards):
    """The completed sheets, plus the LLM judge's ratings when a judge is configured."""
    inputs = {"ratings": HUMAN_EVAL_RATINGS}
    if HUMAN_EVAL_CONFIG.get("llm_judge") is not None:
        inputs["judge"] = f"{HUMAN_EVAL_DIR}/llm_judge_ratings.csv"
    return inputs


def human_eval_settings(*keys):
    return {key: HUMAN_EVAL[key] for key in keys} if HUMAN_EVAL else None


def human_eval_results():
    """The results the report embeds: only when completed sheets are configured."""
    if HUMAN_EVAL and HUMAN_EVAL_CONFIG.get("ratings") is not None:
        return [f"{HUMAN_EVAL_DIR}/results.md"]
    return []


def human_eval_targets():
    """Default targets besides the report: the sheets, once the feature is on."""
    return [f"{HUMAN_EVAL_DIR}/key.csv"] if HUMAN_EVAL else []


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
    from empathy_workflow.core import downloads
    from lm_eval.tasks import TaskManager

    manager = TaskManager()
    for task in missing:
        try:
            downloads.refuse_gated(
                task, downloads.task_datasets(task, manager), downloads.hf_token()
            )
        except downloads.DownloadRefused as error:
            raise WorkflowError(str(error)) from None
