"""Batched generation (empathy_workflow.generation) with the real policy on shipped ED prompts:
same greedy text as one prompt at a time, left padding, deterministic bytes, input order."""

from __future__ import annotations

import pytest

from empo_fixtures import ed_conversations
from empathy_workflow.empo import dialogues, generation
from empathy_workflow.core.io import InputError, write_jsonl

GREEDY = {"max_new_tokens": 10, "do_sample": False, "batch_size": 3}


@pytest.fixture(scope="module")
def policy(prepared_models):
    model, tokenizer = generation.load_model(prepared_models / "policy")
    return model, tokenizer


@pytest.fixture(scope="module")
def test_file(tmp_path_factory):
    """A test split as the data stage writes it, from the shipped ED conversations."""
    path = tmp_path_factory.mktemp("ed") / "test.jsonl"
    write_jsonl(path, ed_conversations()[:30])
    return path


def prompts_of_different_lengths(tokenizer, n=5):
    """`n` prompts whose token lengths all differ, so a batch must pad."""
    records = dialogues.usable_conversations(ed_conversations())
    chosen, seen = [], set()
    for record in records:
        messages = dialogues.prompt_messages(record)
        length = len(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        if length not in seen:
            seen.add(length)
            chosen.append(messages)
        if len(chosen) == n:
            return chosen
    raise AssertionError("not enough distinct prompts")


def test_batched_equals_one_at_a_time(policy):
    model, tokenizer = policy
    assert next(model.parameters()).dtype.is_floating_point and next(model.parameters()).element_size() == 4
    prompts = prompts_of_different_lengths(tokenizer)
    batched = generation.generate(model, tokenizer, prompts, GREEDY, progress=False)
    single = generation.generate_one_at_a_time(model, tokenizer, prompts, GREEDY)
    assert all(text for text in single)
    assert batched == single


def test_left_padding_during_generation(policy, monkeypatch):
    """Every batch reaches model.generate left-padded: pads (mask 0) only at the start of a row,
    the last column real tokens; the tokenizer's own padding side is restored afterwards."""
    model, tokenizer = policy
    prompts = prompts_of_different_lengths(tokenizer, 4)
    seen = []
    real_generate = model.generate

    def recording_generate(**inputs):
        seen.append((tokenizer.padding_side, inputs["attention_mask"].clone(), inputs["input_ids"].clone()))
        return real_generate(**inputs)

    monkeypatch.setattr(model, "generate", recording_generate)
    tokenizer.padding_side = "right"
    generation.generate(model, tokenizer, prompts, {"max_new_tokens": 2, "do_sample": False}, batch_size=4,
                        progress=False)
    assert tokenizer.padding_side == "right"
    assert len(seen) == 1
    side, mask, ids = seen[0]
    assert side == "left"
    assert bool(mask[:, -1].all())
    assert bool((mask == 0).any()), "prompts of different lengths must need padding"
    for row in mask.tolist():
        first = row.index(1)
        assert all(value == 0 for value in row[:first]) and all(value == 1 for value in row[first:])
    assert bool((ids[mask == 0] == tokenizer.pad_token_id).all())


def test_records_in_input_order(policy, prepared_models, test_file, tmp_path):
    settings = dict(GREEDY, max_new_tokens=6)
    # the generation subset file (rule empo_conversations): 5 conversations, the test pairs' salt
    subset = dialogues.conversation_subset(dialogues.read_dialogues(test_file), 5, 42, "pairs:test")
    records = generation.run(test_file, prepared_models / "policy", None, settings, None, seed=42, subset=subset)
    assert len(records) == 5
    conversations = {record["conv_id"]: record for record in ed_conversations()}
    order = [conversations[record["conv_id"]] for record in records]
    for record, conversation in zip(records, order):
        assert set(record) == {"conv_id", "prompt", "reference", "generation"}
        assert record["prompt"] == dialogues.prompt_messages(conversation)
        assert record["prompt"][-1]["role"] == "user"
        assert record["reference"] == dialogues.reference_reply(conversation)
        assert record["generation"] == record["generation"].strip() and record["generation"]
        assert "<|im_end|>" not in record["generation"] and "<|im_start|>" not in record["generation"]
    # the same conversations as the test preference pairs with the same cap and seed
    expected = dialogues.select_conversations(
        dialogues.usable_conversations(ed_conversations()[:30]), 5, 42, salt="pairs:test")
    assert [r["conv_id"] for r in records] == [c["conv_id"] for c in expected]


@pytest.mark.parametrize("sampling", [False, True])
def test_same_seed_same_bytes(policy, tmp_path, sampling):
    model, tokenizer = policy
    prompts = prompts_of_different_lengths(tokenizer, 4)
    settings = dict(GREEDY, max_new_tokens=8, do_sample=sampling, temperature=1.0, top_p=0.95)
    paths, texts = [], []
    for attempt in range(2):
        texts.append(generation.generate(model, tokenizer, prompts, settings, seed=7, progress=False))
        paths.append(tmp_path / f"run{attempt}.jsonl")
        write_jsonl(paths[-1], [{"prompt": p, "generation": t} for p, t in zip(prompts, texts[-1])])
    assert paths[0].read_bytes() == paths[1].read_bytes()
    if sampling:
        # ... and sampling does sample: another seed gives other text
        assert generation.generate(model, tokenizer, prompts, settings, seed=8, progress=False) != texts[0]


def test_length_order():
    assert generation.length_order([3, 9, 3, 1, 9]) == [1, 4, 0, 2, 3]


def test_no_answerable_conversation_is_an_error(tmp_path):
    path = tmp_path / "test.jsonl"
    write_jsonl(path, [{"conv_id": "c1", "emotion": "sad", "situation": "s",
                        "turns": [{"speaker_idx": 1, "role": "speaker", "text": "hello"}]}])
    with pytest.raises(InputError, match="test.jsonl"):
        generation.load_test_prompts(path)
