# Empathy in language models: empathic similarity (Manzoor et al. 2024) and EmPO, end to end.
# The config is validated in rules/common.smk before any job runs; each stage is a module.


configfile: f"{workflow.basedir}/config.yaml"


include: "rules/common.smk"


# `snakemake --report report.html`: this description, then every figure and table with its caption.
report: "report/workflow.rst"


# Optional: one Apptainer/Docker image for every job (config key `container`, built from
# envs/empathy.def), used with `--software-deployment-method apptainer` (docs/cluster.md).
if config["container"]:

    container: config["container"]


include: "rules/downloads.smk"
include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/agreement.smk"
include: "rules/similarity.smk"
include: "rules/empo_training.smk"
include: "rules/empo_evaluation.smk"
include: "rules/empo_human_eval.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        "results/report/summary.md",
        # figures drawn by their own rules (a style edit redraws, nothing retrains)
        expand(
            "results/similarity/{method}/{testset}/scatter.png",
            method=SIMILARITY_METHODS,
            testset=SIMILARITY_TEST_SETS,
        ),
        expand("results/empo/curves/{adapter}.png", adapter=["sft"] + PREFERENCE_RUNS),
        human_eval_targets(),
        LLM_JUDGE_TARGETS,
