# Annotator agreement (paper 1): English vs Urdu, and the ceiling disagreement puts on models.


rule prepare_agreement_ratings:
    input:
        ratings=lambda wildcards: resolve_path(
            config["agreement"]["datasets"][wildcards.dataset]["path"], REPO
        ),
    output:
        ratings="results/data/agreement/{dataset}/ratings.csv",
    log:
        "results/logs/agreement/{dataset}_ratings.log",
    conda:
        "../envs/analysis.yaml"
    params:
        scale=lambda wildcards: agreement_scale(wildcards.dataset),
        code=code_of("prepare_agreement_ratings.py"),
    script:
        "../workflow_scripts/prepare_agreement_ratings.py"


rule agreement_analysis:
    input:
        ratings=agreement_ratings,
    output:
        json="results/agreement/{dataset}/agreement.json",
        table=report(
            "results/agreement/{dataset}/agreement.md",
            category="Agreement",
            subcategory="{dataset}",
            caption="../report/agreement_table.rst",
        ),
        plots=report(
            directory("results/agreement/{dataset}/plots"),
            patterns=["{name}.png"],
            category="Agreement",
            subcategory="{dataset}",
            caption="../report/agreement_plots.rst",
        ),
    log:
        "results/logs/agreement/{dataset}.log",
    benchmark:
        "results/benchmarks/agreement/{dataset}.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        settings=agreement_settings("bootstrap", "confidence"),
        scale=lambda wildcards: agreement_scale(wildcards.dataset),
        seed=SEED,
        code=code_of("agreement_analysis.py"),
    script:
        "../workflow_scripts/agreement_analysis.py"


rule agreement_aggregate_scores:
    input:
        empathic_stories=rules.prepare_empathic_stories.output,
        urdu_pairs=rules.prepare_urdu_stories.output.pairs,
    output:
        json="results/agreement/aggregate_scores.json",
        table=report(
            "results/agreement/aggregate_scores.md",
            category="Agreement",
            subcategory="aggregate scores",
            caption="../report/aggregate_table.rst",
        ),
        plots=report(
            directory("results/agreement/aggregate_plots"),
            patterns=["{name}.png"],
            category="Agreement",
            subcategory="aggregate scores",
            caption="../report/aggregate_plots.rst",
        ),
    log:
        "results/logs/agreement/aggregate_scores.log",
    conda:
        "../envs/analysis.yaml"
    params:
        settings=agreement_settings("scale", "bootstrap", "confidence"),
        seed=SEED,
        code=code_of("agreement_aggregate_scores.py"),
    script:
        "../workflow_scripts/agreement_aggregate_scores.py"


rule agreement_cross_culture:
    input:
        expand("results/agreement/{dataset}/agreement.json", dataset=AGREEMENT_DATASETS),
    output:
        json="results/agreement/cross_culture.json",
        table=report(
            "results/agreement/cross_culture.md",
            category="Agreement",
            subcategory="English vs Urdu",
            caption="../report/cross_culture.rst",
        ),
        plot=report(
            "results/agreement/cross_culture_alpha.png",
            category="Agreement",
            subcategory="English vs Urdu",
            caption="../report/cross_culture.rst",
        ),
    log:
        "results/logs/agreement/cross_culture.log",
    conda:
        "../envs/analysis.yaml"
    params:
        datasets=AGREEMENT_DATASETS,
        languages={name: agreement_language(name) for name in AGREEMENT_DATASETS},
        compare_as={name: agreement_compare_as(name) for name in AGREEMENT_DATASETS},
        code=code_of("agreement_cross_culture.py"),
    script:
        "../workflow_scripts/agreement_cross_culture.py"
