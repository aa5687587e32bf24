# EmPO (paper 2): emotion-grounded preference pairs, SFT, then preference optimisation (LoRA).


rule empo_emotion_mapping:
    input:
        mapping=local_inputs(emotion_mapping_source()),
        train="results/data/empathetic_dialogues/train.jsonl",
        vad="results/data/lexicons/vad.csv",
    output:
        mapping="results/empo/emotion_mapping.csv",
    log:
        "results/logs/empo/emotion_mapping.log",
    conda:
        "../envs/data.yaml"
    params:
        mapping=config["empo"]["pairs"]["emotion_mapping"],
        code=code_of("empo_emotion_mapping.py"),
    script:
        "../workflow_scripts/empo_emotion_mapping.py"


rule empo_conversations:
    input:
        dialogues=lambda wildcards: (
            f"results/data/empathetic_dialogues/{conversation_split(wildcards.subset)}.jsonl"
        ),
    output:
        subset="results/empo/conversations/{subset}.json",
    log:
        "results/logs/empo/conversations_{subset}.log",
    wildcard_constraints:
        subset="train|valid|test|generation",
    conda:
        "../envs/data.yaml"
    params:
        limit=lambda wildcards: conversation_limit(wildcards.subset),
        # the test pairs' salt for generation: with equal caps both are the same subset
        salt=lambda wildcards: f"pairs:{conversation_split(wildcards.subset)}",
        seed=SEED,
        code=code_of("empo_conversations.py"),
    script:
        "../workflow_scripts/empo_conversations.py"


rule empo_pairs:
    input:
        unpack(pairs_threshold_source),
        dialogues="results/data/empathetic_dialogues/{split}.jsonl",
        subset="results/empo/conversations/{split}.json",
        mapping=rules.empo_emotion_mapping.output.mapping,
        model=model_dir(config["empo"]["sft"]["model"]),
    output:
        pairs="results/empo/pairs/{split}.jsonl",
        stats="results/empo/pairs/{split}_stats.json",
    log:
        "results/logs/empo/pairs_{split}.log",
    conda:
        "../envs/data.yaml"
    params:
        # the subset cap reaches the pairs through the subset file (empo_conversations)
        settings={
            k: v
            for k, v in config["empo"]["pairs"].items()
            if k != "max_conversations"
        },
        system_prompt=config["empo"]["system_prompts"]["preference"],
        seed=SEED,
        code=code_of("empo_pairs.py"),
    script:
        "../workflow_scripts/empo_pairs.py"


rule empo_sft:
    input:
        train="results/data/empathetic_dialogues/train.jsonl",
        valid="results/data/empathetic_dialogues/valid.jsonl",
        train_subset="results/empo/conversations/train.json",
        valid_subset="results/empo/conversations/valid.json",
        model=model_dir(config["empo"]["sft"]["model"]),
    output:
        adapter=directory("results/empo/models/sft"),
        curves="results/empo/curves/sft.csv",
    log:
        "results/logs/empo/sft.log",
    benchmark:
        "results/benchmarks/empo/sft.tsv"
    priority: 1  # long and on the critical path: start it first
    conda:
        "../envs/training.yaml"
    threads: 1
    resources:
        gpu=gpu_request("empo_sft"),
    params:
        device=config["device"],
        settings=config["empo"]["sft"],
        system_prompt=config["empo"]["system_prompts"]["sft"],
        checkpoints="results/checkpoints/empo/sft",
        seed=SEED,
        code=code_of("empo_sft.py"),
    script:
        "../workflow_scripts/empo_sft.py"


rule empo_preference:
    input:
        train="results/empo/pairs/train.jsonl",
        valid="results/empo/pairs/valid.jsonl",
        model=model_dir(config["empo"]["sft"]["model"]),
        sft=rules.empo_sft.output.adapter,
        # the length filter's DPO lengths (max_length: length_filter)
        train_stats="results/empo/pairs/train_stats.json",
    output:
        adapter=directory("results/empo/models/{run}"),
        curves="results/empo/curves/{run}.csv",
    log:
        "results/logs/empo/preference_{run}.log",
    benchmark:
        "results/benchmarks/empo/preference_{run}.tsv"
    wildcard_constraints:
        run=one_of(PREFERENCE_RUNS),
    priority: 1  # long and on the critical path: start it first
    conda:
        "../envs/training.yaml"
    threads: 1
    resources:
        gpu=gpu_request("empo_preference"),
    params:
        device=config["device"],
        settings=lambda wildcards: PREFERENCE_SETTINGS[wildcards.run],
        # the SFT's base weights (4-bit or not) for the policy and its reference
        quantization=config["empo"]["sft"]["quantization"],
        checkpoints=lambda wildcards: f"results/checkpoints/empo/{wildcards.run}",
        seed=SEED,
        code=code_of("empo_preference.py"),
    script:
        "../workflow_scripts/empo_preference.py"


rule empo_training_curves:
    input:
        curves="results/empo/curves/{adapter}.csv",
    output:
        plot=report(
            "results/empo/curves/{adapter}.png",
            category="EmPO training",
            caption="../report/training_curves.rst",
        ),
    log:
        "results/logs/empo/curves_{adapter}.log",
    wildcard_constraints:
        adapter=one_of(["sft"] + PREFERENCE_RUNS),
    conda:
        "../envs/analysis.yaml"
    params:
        title=lambda wildcards: (
            "SFT" if wildcards.adapter == "sft" else f"preference: {wildcards.adapter}"
        ),
        code=code_of("empo_training_curves.py"),
    script:
        "../workflow_scripts/empo_training_curves.py"


rule empo_generate:
    input:
        unpack(empo_adapter),
        test="results/data/empathetic_dialogues/test.jsonl",
        subset="results/empo/conversations/generation.json",
        model=model_dir(config["empo"]["sft"]["model"]),
    output:
        generations="results/empo/generations/{variant}.jsonl",
    log:
        "results/logs/empo/generate_{variant}.log",
    benchmark:
        "results/benchmarks/empo/generate_{variant}.tsv"
    wildcard_constraints:
        variant=one_of(EMPO_MODELS),
    conda:
        "../envs/training.yaml"
    threads: 1
    resources:
        gpu=gpu_request("empo_generate"),
    params:
        device=config["device"],
        settings=generation_settings,
        system_prompt=generation_system_prompt,
        # the same base weights as training (4-bit when the SFT was quantized)
        quantization=config["empo"]["sft"]["quantization"],
        seed=SEED,
        code=code_of("empo_generate.py"),
    script:
        "../workflow_scripts/empo_generate.py"


# An LLM judge rates the human-evaluation items on the same dimensions as the annotators
# (empo.human_eval.llm_judge: an OpenAI-compatible endpoint; requested only when it is set).
rule empo_llm_judge:
    input:
        eval_items="results/empo/human_eval/items.csv",
    output:
        ratings="results/empo/human_eval/llm_judge_ratings.csv",
        summary="results/empo/human_eval/llm_judge_summary.json",
    log:
        "results/logs/empo/llm_judge.log",
    benchmark:
        "results/benchmarks/empo/llm_judge.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: 1
    params:
        settings=LLM_JUDGE,
        dimensions=(HUMAN_EVAL or {}).get("dimensions"),
        code=code_of("empo_llm_judge.py"),
    script:
        "../workflow_scripts/empo_llm_judge.py"
