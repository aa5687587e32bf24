# Human evaluation of EmPO replies (off by default; configs/human_eval.yaml turns it on): blinded
# rating sheets from the generations, then the completed sheets -> results with agreement.


rule empo_human_sheets:
    input:
        generations=human_eval_generations,
    output:
        replies=f"{HUMAN_EVAL_DIR}/items.csv",
        key=f"{HUMAN_EVAL_DIR}/key.csv",
        assignments=f"{HUMAN_EVAL_DIR}/assignments.csv",
        sheets=directory(f"{HUMAN_EVAL_DIR}/sheets"),
    log:
        "results/logs/empo/human_sheets.log",
    conda:
        "../envs/evaluation.yaml"
    params:
        settings=HUMAN_EVAL,
        seed=SEED,
        code=code_of("empo_human_sheets.py"),
    script:
        "../workflow_scripts/empo_human_sheets.py"


rule empo_human_results:
    input:
        unpack(human_eval_ratings),
        replies=rules.empo_human_sheets.output.replies,
        key=rules.empo_human_sheets.output.key,
        assignments=rules.empo_human_sheets.output.assignments,
    output:
        json=f"{HUMAN_EVAL_DIR}/results.json",
        table=report(
            f"{HUMAN_EVAL_DIR}/results.md",
            category="EmPO human evaluation",
            caption="../report/human_eval.rst",
        ),
    log:
        "results/logs/empo/human_results.log",
    benchmark:
        "results/benchmarks/empo/human_results.tsv"
    conda:
        "../envs/evaluation.yaml"
    params:
        # what the results read: the sheets rule's other settings reach them through its outputs
        settings=human_eval_settings("models", "dimensions"),
        significance=config["empo"]["evaluation"]["significance"],
        agreement={k: config["agreement"][k] for k in ("bootstrap", "confidence")},
        seed=SEED,
        code=code_of("empo_human_results.py"),
    script:
        "../workflow_scripts/empo_human_results.py"
