# Models, prepared once: packaged ones converted, hub ones downloaded; all consumers then call
# from_pretrained on results/models/NAME.


rule prepare_model:
    input:
        unpack(model_snapshot),
    output:
        directory("results/models/{model}"),
    log:
        "results/logs/models/{model}.log",
    benchmark:
        "results/benchmarks/prepare_model/{model}.tsv"
    conda:
        "../envs/training.yaml"
    params:
        settings=lookup(dpath="models/{model}", within=config),
        code=code_of("prepare_model.py"),
    script:
        "../workflow_scripts/prepare_model.py"
