# One page of every result, with the plots; `snakemake --report report.html` adds the browsable one.


rule report:
    input:
        agreement=expand(
            "results/agreement/{dataset}/agreement.json", dataset=AGREEMENT_DATASETS
        ),
        aggregate="results/agreement/aggregate_scores.json",
        cross_culture="results/agreement/cross_culture.json",
        similarity=expand(
            "results/similarity/{method}/{testset}/metrics.json",
            method=SIMILARITY_METHODS,
            testset=SIMILARITY_TEST_SETS,
        ),
        empo=expand("results/empo/eval/{variant}/metrics.json", variant=EMPO_MODELS),
        significance="results/empo/eval/significance.json",
        curves=expand(
            "results/empo/curves/{adapter}.csv", adapter=["sft"] + PREFERENCE_RUNS
        ),
        pair_stats=expand(
            "results/empo/pairs/{split}_stats.json", split=["train", "valid", "test"]
        ),
        epitome=expand(
            "results/empo/epitome/{mechanism}_metrics.json",
            mechanism=EPITOME_MECHANISMS,
        ),
        human_eval=human_eval_results(),
        epitome_quality="results/empo/epitome/quality.json",
        splits=[
            "results/data/empathic_stories/split_info.json",
            "results/data/empathetic_dialogues/split_info.json",
        ],
    output:
        summary=report(
            "results/report/summary.md",
            category="Summary",
            caption="../report/summary.rst",
        ),
        similarity_plot=report(
            "results/report/plots/similarity_pearson.png",
            category="Similarity",
            caption="../report/similarity_pearson.rst",
        ),
        empo_plot=report(
            "results/report/plots/empo_metrics.png",
            category="EmPO evaluation",
            caption="../report/empo_metrics.rst",
        ),
    log:
        "results/logs/report.log",
    conda:
        "../envs/analysis.yaml"
    params:
        config=config,
        code=code_of("report.py"),
    script:
        "../workflow_scripts/report.py"
