
rule prepare_empathic_stories:
    input:
        local_inputs(
            *(dataset_path("empathic_stories", s) for s in ("train", "dev", "test"))
        ),
        downloaded=dataset_download("empathic_stories"),
    output:
        train="results/data/empathic_stories/train.csv",
        dev="results/data/empathic_stories/dev.csv",
        test="results/data/empathic_stories/test.csv",
        info="results/data/empathic_stories/split_info.json",
    log:
        "results/logs/data/empathic_stories.log",
    conda:
        "../envs/data.yaml"
    params:
        sources={
            s: dataset_path("empathic_stories", s) for s in ("train", "dev", "test")
        },
        settings=config["datasets"]["empathic_stories"],
        seed=SEED,
        code=code_of("prepare_empathic_stories.py"),
    script:
        "../workflow_scripts/prepare_empathic_stories.py"


rule prepare_urdu_stories:
    input:
        local_inputs(
            *(dataset_path("urdu_stories", k) for k in ("annotations", "stories"))
        ),
        downloaded=dataset_download("urdu_stories"),
    output:
        pairs="results/data/urdu_stories/pairs.csv",
        ratings="results/data/urdu_stories/ratings.csv",
    log:
        "results/logs/data/urdu_stories.log",
    conda:
        "../envs/data.yaml"
    params:
        sources={k: dataset_path("urdu_stories", k) for k in ("annotations", "stories")},
        code=code_of("prepare_urdu_stories.py"),
    script:
        "../workflow_scripts/prepare_urdu_stories.py"


rule prepare_empathetic_dialogues:
    input:
        local_inputs(
            *(
                dataset_path("empathetic_dialogues", s)
                for s in ("train", "valid", "test")
            )
        ),
        downloaded=dataset_download("empathetic_dialogues"),
    output:
        train="results/data/empathetic_dialogues/train.jsonl",
        valid="results/data/empathetic_dialogues/valid.jsonl",
        test="results/data/empathetic_dialogues/test.jsonl",
        info="results/data/empathetic_dialogues/split_info.json",
    log:
        "results/logs/data/empathetic_dialogues.log",
    conda:
        "../envs/data.yaml"
    params:
        sources={
            s: dataset_path("empathetic_dialogues", s)
            for s in ("train", "valid", "test")
        },
        settings=config["datasets"]["empathetic_dialogues"],
        seed=SEED,
        code=code_of("prepare_empathetic_dialogues.py"),
    script:
        "../workflow_scripts/prepare_empathetic_dialogues.py"


rule prepare_epitome:
    input:
        local_inputs(*(dataset_path("epitome", k) for k in EPITOME_KEYS)),
        downloaded=dataset_download("epitome"),
    output:
        table="results/data/epitome/epitome.csv",
    log:
        "results/logs/data/epitome.log",
    conda:
        "../envs/data.yaml"
    params:
        sources={k: dataset_path("epitome", k) for k in EPITOME_KEYS},
        code=code_of("prepare_epitome.py"),
    script:
        "../workflow_scripts/prepare_epitome.py"


rule prepare_mmlu:
    input:
        local_inputs(dataset_path("mmlu", "dir")),
        downloaded=dataset_download("mmlu"),
    output:
        table="results/data/mmlu/questions.csv",
    log:
        "results/logs/data/mmlu.log",
    conda:
        "../envs/data.yaml"
    params:
        # The local folder (also an input, so Snakemake tracks it) or the URL of an archive. A plain
        # value: params functions taking `input` are "derived" and escape the params trigger.
        sources={"dir": dataset_path("mmlu", "dir")},
        code=code_of("prepare_mmlu.py"),
    script:
        "../workflow_scripts/prepare_mmlu.py"


rule prepare_lexicons:
    input:
        local_inputs(*(dataset_path("lexicons", k) for k in ("vad", "intensity"))),
        downloaded=dataset_download("lexicons"),
    output:
        vad="results/data/lexicons/vad.csv",
        intensity="results/data/lexicons/intensity.csv",
    log:
        "results/logs/data/lexicons.log",
    conda:
        "../envs/data.yaml"
    params:
        sources={k: dataset_path("lexicons", k) for k in ("vad", "intensity")},
        code=code_of("prepare_lexicons.py"),
    script:
        "../workflow_scripts/prepare_lexicons.py"
