# Raw datasets -> validated intermediate tables under results/data/.


rule prepare_empathic_stories:
    input:
        local_inputs(*(dataset_path("empathic_stories", s) for s in ("train", "dev", "test"))),
    output:
        train="results/data/empathic_stories/train.csv",
        dev="results/data/empathic_stories/dev.csv",
        test="results/data/empathic_stories/test.csv",
        info="results/data/empathic_stories/split_info.json",
    params:
        sources={s: dataset_path("empathic_stories", s) for s in ("train", "dev", "test")},
        settings=config["datasets"]["empathic_stories"],
        seed=SEED,
        code=code_version("data"),
    log:
        "results/logs/data/empathic_stories.log",
    conda:
        "../envs/data.yaml"
    script:
        "../workflow_scripts/prepare_empathic_stories.py"


rule prepare_urdu_stories:
    input:
        annotations=dataset_path("urdu_stories", "annotations"),
        stories=dataset_path("urdu_stories", "stories"),
    output:
        pairs="results/data/urdu_stories/pairs.csv",
        ratings="results/data/urdu_stories/ratings.csv",
    params:
        code=code_version("data"),
    log:
        "results/logs/data/urdu_stories.log",
    conda:
        "../envs/data.yaml"
    script:
        "../workflow_scripts/prepare_urdu_stories.py"


rule prepare_empathetic_dialogues:
    input:
        local_inputs(*(dataset_path("empathetic_dialogues", s) for s in ("train", "valid", "test"))),
    output:
        train="results/data/empathetic_dialogues/train.jsonl",
        valid="results/data/empathetic_dialogues/valid.jsonl",
        test="results/data/empathetic_dialogues/test.jsonl",
        info="results/data/empathetic_dialogues/split_info.json",
    params:
        sources={s: dataset_path("empathetic_dialogues", s) for s in ("train", "valid", "test")},
        settings=config["datasets"]["empathetic_dialogues"],
        seed=SEED,
        code=code_version("data"),
    log:
        "results/logs/data/empathetic_dialogues.log",
    conda:
        "../envs/data.yaml"
    script:
        "../workflow_scripts/prepare_empathetic_dialogues.py"


rule prepare_epitome:
    input:
        emotional_reactions=dataset_path("epitome", "emotional_reactions"),
        interpretations=dataset_path("epitome", "interpretations"),
        explorations=dataset_path("epitome", "explorations"),
    output:
        table="results/data/epitome/epitome.csv",
    params:
        code=code_version("data"),
    log:
        "results/logs/data/epitome.log",
    conda:
        "../envs/data.yaml"
    script:
        "../workflow_scripts/prepare_epitome.py"


rule prepare_mmlu:
    input:
        directory=dataset_path("mmlu", "dir"),
    output:
        table="results/data/mmlu/questions.csv",
    params:
        code=code_version("data"),
    log:
        "results/logs/data/mmlu.log",
    conda:
        "../envs/data.yaml"
    script:
        "../workflow_scripts/prepare_mmlu.py"


rule prepare_lexicons:
    input:
        vad=dataset_path("lexicons", "vad"),
        intensity=dataset_path("lexicons", "intensity"),
    output:
        vad="results/data/lexicons/vad.csv",
        intensity="results/data/lexicons/intensity.csv",
    params:
        code=code_version("data"),
    log:
        "results/logs/data/lexicons.log",
    conda:
        "../envs/data.yaml"
    script:
        "../workflow_scripts/prepare_lexicons.py"
