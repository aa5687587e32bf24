"""LLMs for empathic similarity: the authors' prompts, LoRA fine-tuning with trl (completion
loss), and scoring by constrained answers or greedy decoding."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from empathy_workflow.core.hf import load_causal_lm, scoring_dtype
from empathy_workflow.core.io import InputError, atomic_dir
from empathy_workflow.similarity import protocol
from empathy_workflow.similarity.decoding import (
    answer_distribution,
    answer_logprobs,
    scored_suffixes,
)

logger = logging.getLogger(__name__)


def truncate_tokens(tokenizer, text: str, max_tokens: int | None) -> str:
    """The first `max_tokens` tokens of `text` (whole text when None or short enough)."""
    if not max_tokens:
        return text
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens]).rstrip() + " ..."


def prompt_messages(text_a: str, text_b: str) -> list[dict]:
    """The authors' "optimized" prompt, verbatim (similarity_protocol.SYSTEM_PROMPT / USER_TEMPLATE)."""
    return protocol.prompt_messages(text_a, text_b)


def method_answers(method: str) -> tuple[str, ...]:
    """The answer strings a method is scored over: the zero-shot guided-choice list, or the
    str(float) labels the fine-tuned model was trained to write."""
    return protocol.SFT_ANSWERS if method == "llm_sft" else protocol.ZEROSHOT_ANSWERS


def narrative_budget(tokenizer, settings: dict) -> int:
    """Tokens allowed per narrative: the configured cap, and at most what lets the prompt plus the
    longest answer fit into max_length (so truncation never cuts the answer during training)."""
    overhead = len(_render_prompt(tokenizer, prompt_messages("", "")))
    longest_answer = max(len(ids) for ids in answer_suffixes(tokenizer, prompt_messages("", ""),
                                                             protocol.SFT_ANSWERS))
    budget = (int(settings["max_length"]) - overhead - longest_answer) // 2
    if budget < 8:
        raise InputError(f"similarity.llm.max_length: {settings['max_length']} leaves no room for the narratives "
                         f"(the instruction alone takes {overhead} tokens)")
    cap = settings.get("max_narrative_tokens")
    return min(budget, int(cap)) if cap else budget


def _render_prompt(tokenizer, messages: list[dict]) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=True)
    return list(ids["input_ids"])


def answer_suffixes(tokenizer, messages: list[dict],
                    answers: Sequence[str] = protocol.ZEROSHOT_ANSWERS) -> list[list[int]]:
    """Token ids of each allowed answer as the chat template renders it after the prompt (answer plus
    end-of-turn): exactly the completion tokens SFT trains on. Requires the rendered prompt to be a
    prefix of prompt+answer (checked)."""
    prompt = _render_prompt(tokenizer, messages)
    suffixes = []
    for answer in answers:
        full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}],
                                             tokenize=True, return_dict=True)["input_ids"]
        full = list(full)
        if full[:len(prompt)] != prompt:
            raise ValueError("the chat template renders the prompt differently once an answer follows; "
                             "the answers cannot be scored as continuations")
        suffixes.append(full[len(prompt):])
    if len({tuple(s) for s in suffixes}) != len(answers):
        raise ValueError("two allowed answers tokenise identically")
    return suffixes


def llm_examples(pairs: pd.DataFrame, tokenizer, settings: dict, both_orders: bool = True) -> list[dict]:
    """Prompt/completion conversations for trl (completion-only loss), both story orders, as
    sft_llama3.py builds them (concat_reverse=True); the completion is str(float(gold))."""
    budget = narrative_budget(tokenizer, settings)
    examples = []
    for row in pairs.itertuples(index=False):
        a = truncate_tokens(tokenizer, row.text_a, budget)
        b = truncate_tokens(tokenizer, row.text_b, budget)
        orders = ((a, b), (b, a)) if both_orders else ((a, b),)
        for first, second in orders:
            examples.append({
                "prompt": prompt_messages(first, second),
                "completion": [{"role": "assistant", "content": protocol.sft_completion(row.gold)}],
            })
    return examples


def train_llm(model_path, train: pd.DataFrame, settings: dict, seed: int, output_dir, checkpoints=None) -> dict:
    """LoRA SFT with trl on prompt/completion examples (completion-only loss); saves the adapter.

    Model loading (fp32 on CPU, half/4-bit on GPU), LoRA config, TrainingArguments and resumable
    checkpoints (fingerprinted by settings + data) come from training.py, shared with EmPO."""
    from datasets import Dataset
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    from empathy_workflow.core import hf, trainer_setup

    set_seed(seed)
    cap = settings.get("max_train_pairs")
    if cap and len(train) > cap:
        train = train.sample(n=int(cap), random_state=seed).sort_index()
    tokenizer = hf.load_tokenizer(str(model_path))
    examples = llm_examples(train, tokenizer, settings, both_orders=True)
    # Shuffled once here (seeded) so that a max_steps cut sees both orders of many pairs.
    order = np.random.default_rng(seed).permutation(len(examples))
    dataset = Dataset.from_list([examples[i] for i in order])
    model = hf.load_base_model(str(model_path), settings, for_training=True, key="similarity.llm")
    checkpoints = Path(checkpoints or tempfile.mkdtemp(prefix="llm-sft-"))
    resume = trainer_setup.prepare_checkpoints(
        checkpoints, trainer_setup.fingerprint("similarity.llm_sft", settings, seed, examples))
    arguments = trainer_setup.common_arguments(settings, str(checkpoints), seed)
    arguments.update(logging_steps=5, logging_first_step=False)
    config = SFTConfig(**arguments, max_length=int(settings["max_length"]), completion_only_loss=True,
                       shuffle_dataset=False)
    record = trainer_setup.resume_callback()
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=hf.lora_config(settings["lora"]), callbacks=[record])
    result = trainer.train(resume_from_checkpoint=resume)

    with atomic_dir(output_dir) as path:
        trainer.model.save_pretrained(str(path))
        tokenizer.save_pretrained(str(path))
    shutil.rmtree(checkpoints, ignore_errors=True)
    return {"examples": len(examples), "pairs": len(train), "steps": int(result.global_step),
            "train_loss": float(result.training_loss), "started_at_step": record.started_at_step,
            "steps_run": [record.first_step_run, record.last_step_run]}


def llm_predictions(model_path, adapter_path, test: pd.DataFrame, settings: dict,
                    method: str = "llm_zeroshot") -> tuple[pd.DataFrame, dict]:
    """The paper's scoring of one LLM method (docs/fidelity.md), plus the expected score as an extra.

    llm_zeroshot: guided choice over the seven answers at temperature 0 (llm_eval_openllm.py), in
    both story orders, averaged. llm_sft: greedy decoding of the (A, B) prompt and the number parsed
    from the answer (eval_llama3.ipynb). Extra for both (`predicted_expected`): the expected score under
    the model's distribution over the answers, from one forward pass (averaged over the same orders)."""
    from empathy_workflow.similarity import decoding

    dtype = scoring_dtype(settings.get("score_dtype", "auto"))
    model, tokenizer = load_causal_lm(model_path, adapter_path, settings.get("quantization", "none"),
                                      str(dtype).replace("torch.", ""))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    budget = narrative_budget(tokenizer, settings)
    answers = method_answers(method)
    values = np.array([float(answer) for answer in answers])
    suffixes = scored_suffixes(answer_suffixes(tokenizer, prompt_messages("", ""), answers))
    short = {text: truncate_tokens(tokenizer, text, budget) for text in set(test.text_a) | set(test.text_b)}
    orders = [(test.text_a, test.text_b)] + ([(test.text_b, test.text_a)] if method == "llm_zeroshot" else [])
    batch_size = int(settings.get("score_batch_size", 8))
    chosen, expected, probs_by_order = [], [], []
    prompts_by_order = []
    for first, second in orders:
        prompts = [_render_prompt(tokenizer, prompt_messages(short[a], short[b])) for a, b in zip(first, second)]
        prompts_by_order.append(prompts)
        logprobs, per_token = answer_logprobs(model, tokenizer, prompts, suffixes, batch_size, per_token=True)
        probs = answer_distribution(logprobs)
        if not probs_by_order:
            mass_median = float(np.median(np.exp(logprobs).sum(axis=1)))
        probs_by_order.append(probs)
        expected.append(probs @ values)
        chosen.append(values[protocol.guided_choice(per_token, suffixes)])
    lengths = [len(p) for p in prompts_by_order[0]]
    logger.info("%s: %d pairs x %d order(s) (prompt tokens: median %d, max %d; narrative budget %d)", method,
                len(test), len(orders), int(np.median(lengths)), max(lengths), budget)
    frame = pd.DataFrame({"pair_id": test.pair_id.to_numpy(), "gold": test.gold.to_numpy()})
    details: dict = {"narrative_tokens": budget, "answers": list(answers),
                     "score_dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
                     "mass_on_answers_median": mass_median, "adapter": str(adapter_path) if adapter_path else None}
    if method == "llm_zeroshot":
        frame["predicted"] = protocol.both_orders_mean(chosen[0], chosen[1])
        frame["predicted_ab"], frame["predicted_ba"] = chosen[0], chosen[1]
        frame["predicted_expected"] = protocol.both_orders_mean(expected[0], expected[1])
        details["scoring"] = ("paper: guided choice over the answers at temperature 0 (greedy walk of their "
                              "token tree), story orders (A, B) and (B, A) averaged")
    else:
        max_new = settings.get("max_new_tokens")
        responses = decoding.greedy_responses(
            model, tokenizer, prompts_by_order[0], batch_size=batch_size,
            max_new_tokens=int(max_new) if max_new else None,
            max_length=protocol.AUTHORS_GENERATION_MAX_LENGTH)
        parsed = [protocol.parse_score(response) for response in responses]
        how = pd.Series([way for _, way in parsed])
        # An answer with no number at all (the authors' float() would raise) scores the scale's midpoint.
        frame["predicted"] = [score if score is not None else protocol.POSITIVE_ABOVE for score, _ in parsed]
        frame["response"] = responses
        frame["predicted_expected"] = expected[0]
        details["scoring"] = ("paper: greedy decoding of the (A, B) prompt, the number parsed from the answer "
                              "(last line, before any special token)")
        details["parsing"] = {way: int((how == way).sum()) for way in ("authors", "first_number", "unparsed")}
        details["max_new_tokens"] = int(max_new) if max_new else None
    details["extra_scorings"] = {
        "predicted_expected": "expected score under the model's distribution over the answers (their "
                              "log-probabilities renormalised)" + ("; story orders averaged" if len(orders) > 1 else "")
                              + "; not the paper's"}
    for j, answer in enumerate(answers):
        frame[f"p_{answer}"] = np.mean([probs[:, j] for probs in probs_by_order], axis=0)
    return frame, details
