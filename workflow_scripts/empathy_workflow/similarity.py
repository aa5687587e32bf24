"""Empathic similarity models (Manzoor et al. 2024): given two personal narratives, predict how much
their narrators would empathise with each other on the 1-4 scale.

The headline scores follow the authors' procedure (similarity_protocol.py; docs/fidelity.md):

Methods
- zeroshot: cosine similarity of a pretrained sentence encoder's embeddings; predicted = 3*cos+1.
  Extra, labelled: an isotonic map cosine -> 1-4 fitted on the training split (`predicted_isotonic`).
- contrastive: the encoder fine-tuned with sentence-transformers' own SentenceTransformerTrainer and
  one of its losses (mnrl on the notebooks' triplets, cosine, cosent, angle, online_contrastive)
  with the notebooks' scale/margin and 30% warmup; then scored as zeroshot.
- llm_sft: LoRA fine-tuning of a causal LM with trl's SFTTrainer on prompt/completion examples
  (loss on the answer only), both story orders; predicted = the number in its greedy answer.
- llm_zeroshot: the untuned model; predicted = guided choice over the seven answers at temperature
  0, the two story orders averaged.
  Extra for both, labelled: the expected score under the model's distribution over the seven answers
  (`predicted_expected`), from their log-probabilities.

LoRA/trainer plumbing (model loading, LoRA config, TrainingArguments, resumable checkpoints) is
training.py's, shared with EmPO.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from . import similarity_protocol as protocol
from .io import InputError, read_csv, read_json, require_numeric

logger = logging.getLogger(__name__)

SCALE = (1.0, 4.0)
ENCODER_METHODS = ("zeroshot", "contrastive")
LLM_METHODS = ("llm_zeroshot", "llm_sft")
LOSSES = ("mnrl", "cosine", "cosent", "angle", "online_contrastive")

# ---------------------------------------------------------------------------------------------
# Data


def load_pairs(path: str | os.PathLike, text: str) -> tuple[pd.DataFrame, str]:
    """A pairs table -> (frame with pair_id, text_a, text_b, gold, used text, "summary"/"story").

    `text` is "summary" or "story". A table without summaries (the Urdu pairs) falls back to the
    stories; the returned name says which text was used, so metrics.json can report it.
    """
    if text not in ("summary", "story"):
        raise InputError(f"similarity.text: {text!r} is not 'summary' or 'story'")
    frame = read_csv(path, required=("pair_id", "story_a", "story_b", "empathy"), what="pairs table")
    used = text
    if text == "summary" and not {"summary_a", "summary_b"} <= set(frame.columns):
        used = "story"  # e.g. the Urdu pairs have no summaries
    columns = ("summary_a", "summary_b") if used == "summary" else ("story_a", "story_b")
    for column in columns:
        empty = frame[column].isna() | (frame[column].astype(str).str.strip() == "")
        if empty.any():
            row = int(empty.to_numpy().nonzero()[0][0])
            raise InputError(f"{path}: row {row + 2}, column {column!r}: empty text")
    if frame["pair_id"].duplicated().any():
        duplicate = frame["pair_id"][frame["pair_id"].duplicated()].iloc[0]
        raise InputError(f"{path}: column 'pair_id': {duplicate!r} occurs more than once")
    gold = require_numeric(frame, "empathy", path, low=SCALE[0], high=SCALE[1])
    # The authors' preprocessing of every text (newlines to spaces, ends stripped).
    result = pd.DataFrame({
        "pair_id": frame["pair_id"].astype(str),
        "text_a": frame[columns[0]].astype(str).map(protocol.normalize_text),
        "text_b": frame[columns[1]].astype(str).map(protocol.normalize_text),
        "gold": gold.astype(float),
    })
    return result, used


def sample_test_pairs(test: pd.DataFrame, max_pairs: int | None, seed: int) -> pd.DataFrame:
    """A seeded subset of the test pairs (similarity.max_test_pairs): it depends only on the table and
    the seed, so every method scores the same pairs and the methods stay comparable."""
    if not max_pairs or len(test) <= max_pairs:
        return test
    return test.sample(n=int(max_pairs), random_state=seed).sort_index()


def split_note(test_set: str, info_path: str | os.PathLike | None, scored: int | None = None,
               total: int | None = None) -> str:
    """What the reader must know about where the test pairs (and the training pairs) come from,
    including how many of them were scored when a seeded subset was taken."""
    info = read_json(info_path) if info_path else {}
    resplit = bool(info.get("resplit"))
    training = ("EmpathicStories train, re-split (seeded re-split of the shipped dev+test pairs; "
                "not the official split)" if resplit else "EmpathicStories official train split")
    subset = scored is not None and total is not None and scored < total
    if test_set == "urdu_stories":
        pairs = f"a seeded subset of {scored} of the {total} pairs" if subset else "all pairs"
        return f"Urdu story pairs (test only, {pairs}); models trained on {training}"
    if resplit:
        seed = info.get("seed")
        note = (f"re-split: EmpathicStories test part of a seeded re-split (seed {seed}) of the shipped "
                f"dev+test pairs; not comparable with the paper's official test set")
    else:
        note = "EmpathicStories official test split"
    return note + (f"; scored on a seeded subset of {scored} of its {total} pairs" if subset else "")


# ---------------------------------------------------------------------------------------------
# Sentence encoders: zero-shot and contrastive


def torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_encoder(path: str | os.PathLike, max_seq_length: int | None = None):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device=torch_device(), local_files_only=True)
    if max_seq_length:
        model.max_seq_length = int(max_seq_length)
    return model


def cosine_scores(model, texts_a: Sequence[str], texts_b: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """Cosine similarity of each (a, b) pair. Unique texts are encoded once."""
    unique = sorted(set(texts_a) | set(texts_b))
    embeddings = model.encode(unique, batch_size=batch_size, convert_to_numpy=True,
                              normalize_embeddings=True, show_progress_bar=False)
    index = {text: i for i, text in enumerate(unique)}
    a = embeddings[[index[t] for t in texts_a]]
    b = embeddings[[index[t] for t in texts_b]]
    return np.sum(a * b, axis=1).astype(float)


def fit_calibration(cosines: np.ndarray, gold: np.ndarray):
    """Monotone map cosine -> 1-4 fitted on the training pairs (clipped outside their range)."""
    from sklearn.isotonic import IsotonicRegression

    calibration = IsotonicRegression(y_min=SCALE[0], y_max=SCALE[1], increasing=True, out_of_bounds="clip")
    calibration.fit(np.asarray(cosines, dtype=float), np.asarray(gold, dtype=float))
    return calibration


def encoder_predictions(model_path, train: pd.DataFrame, test: pd.DataFrame, batch_size: int = 32,
                        max_seq_length: int | None = None) -> tuple[pd.DataFrame, dict]:
    """The paper's scoring: predicted = 3*cos+1 (raw cosine, so Pearson/Spearman are the cosine's
    and a pair is positive when cos > 0.5). Extra, labelled: the isotonic map fitted on train."""
    model = load_encoder(model_path, max_seq_length)
    logger.info("encoding %d train and %d test pairs with %s (max_seq_length %d)",
                len(train), len(test), model_path, model.max_seq_length)
    train_cos = cosine_scores(model, list(train.text_a), list(train.text_b), batch_size)
    test_cos = cosine_scores(model, list(test.text_a), list(test.text_b), batch_size)
    calibration = fit_calibration(train_cos, train.gold.to_numpy())
    frame = pd.DataFrame({"pair_id": test.pair_id, "gold": test.gold, "predicted": protocol.cosine_to_scale(test_cos),
                          "cosine": test_cos, "predicted_isotonic": calibration.predict(test_cos)})
    details = {
        "scoring": "paper: predicted = 3*cosine+1 (the notebooks' score recovery); positive when > 2.5",
        "extra_scorings": {"predicted_isotonic": "isotonic regression of gold on cosine, fitted on the "
                                                 f"training split (n={len(train)}); not the paper's"},
        "max_seq_length": int(model.max_seq_length),
        "train_cosine_pearson": float(np.corrcoef(train_cos, train.gold)[0, 1]),
    }
    return frame, details


def positive_threshold(gold: np.ndarray) -> float:
    """Pairs strictly above the training median count as positives (the notebooks' `binned` labels)."""
    return float(np.median(np.asarray(gold, dtype=float)))


def contrastive_dataset(train: pd.DataFrame, loss: str, seed: int) -> tuple[pd.DataFrame, dict]:
    """The training columns each loss expects (texts first, then `label` where it takes one)."""
    if loss == "mnrl":
        return protocol.build_triplets(list(train.text_a), list(train.text_b), train.gold.to_numpy(), seed)
    frame = pd.DataFrame({"sentence1": train.text_a.to_numpy(), "sentence2": train.text_b.to_numpy()})
    if loss == "online_contrastive":
        threshold = positive_threshold(train.gold.to_numpy())
        frame["label"] = (train.gold.to_numpy() > threshold).astype(int)
        return frame, {"median": threshold, "pairs": len(frame)}
    if loss in ("cosine", "cosent", "angle"):
        # Gold 1-4 -> 0-1: a target cosine for CosineSimilarityLoss; CoSENT/AnglE use only the order.
        frame["label"] = (train.gold.to_numpy() - SCALE[0]) / (SCALE[1] - SCALE[0])
        return frame, {"pairs": len(frame)}
    raise InputError(f"similarity.contrastive.loss: {loss!r} is not one of {', '.join(LOSSES)}")


def make_loss(model, loss: str, settings: dict):
    """The loss object with the notebooks' parameters (similarity_protocol.LOSS_PARAMETERS)."""
    from sentence_transformers import losses

    arguments = protocol.loss_arguments(loss, settings)
    return {
        "mnrl": losses.MultipleNegativesRankingLoss,
        "cosine": losses.CosineSimilarityLoss,
        "cosent": losses.CoSENTLoss,
        "angle": losses.AnglELoss,
        "online_contrastive": losses.OnlineContrastiveLoss,
    }[loss](model, **arguments)


def train_contrastive(encoder_path, train: pd.DataFrame, dev: pd.DataFrame | None, settings: dict, seed: int,
                      output_dir: str | os.PathLike, work_dir: str | os.PathLike | None = None) -> dict:
    """Fine-tune the encoder with SentenceTransformerTrainer; save it to `output_dir` (atomically)."""
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.training_args import BatchSamplers
    from transformers import set_seed

    loss_name = settings["loss"]
    set_seed(seed)
    model = load_encoder(encoder_path, settings.get("max_seq_length"))
    frame, info = contrastive_dataset(train, loss_name, seed)
    dataset = Dataset.from_pandas(frame, preserve_index=False)
    logger.info("contrastive training: loss %s, %s", loss_name, info)

    before = _dev_pearson(model, dev)
    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="contrastive-"))
    arguments = SentenceTransformerTrainingArguments(
        output_dir=str(work_dir),
        num_train_epochs=settings["epochs"],
        # a size cap (the rehearsal's); -1: the full epochs
        max_steps=int(settings.get("max_steps", -1)),
        per_device_train_batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        # The notebooks: warmup_steps = ceil(steps * 0.3); a float in [0, 1) is a ratio here.
        warmup_steps=float(settings.get("warmup_ratio", 0.0)),
        seed=seed,
        data_seed=seed,
        # In-batch negatives must not contain the anchor's own positive twice.
        batch_sampler=BatchSamplers.NO_DUPLICATES if loss_name == "mnrl" else BatchSamplers.BATCH_SAMPLER,
        save_strategy="no",
        report_to="none",
        logging_steps=5,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        # model.fit(use_amp=True) in the notebooks: fp16 autocast, on a GPU only
        fp16=bool(settings.get("amp", False)) and torch.cuda.is_available(),
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    trainer = SentenceTransformerTrainer(model=model, args=arguments, train_dataset=dataset,
                                         loss=make_loss(model, loss_name, settings))
    result = trainer.train()
    after = _dev_pearson(model, dev)
    logger.info("dev Pearson of cosine: %.3f before, %.3f after fine-tuning",
                before if before is not None else float("nan"), after if after is not None else float("nan"))
    _save_atomically(lambda path: model.save(str(path)), output_dir)
    shutil.rmtree(work_dir, ignore_errors=True)
    return {**info, "loss": loss_name, "steps": int(result.global_step), "train_loss": float(result.training_loss),
            "dev_cosine_pearson_before": before, "dev_cosine_pearson_after": after}


def _dev_pearson(model, dev: pd.DataFrame | None) -> float | None:
    if dev is None or len(dev) < 3:
        return None
    cosines = cosine_scores(model, list(dev.text_a), list(dev.text_b))
    return float(np.corrcoef(cosines, dev.gold)[0, 1])


def _save_atomically(save, output_dir: str | os.PathLike) -> None:
    """Save into a sibling temporary folder, then rename: no half-written model folder."""
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        save(tmp)
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(tmp, output_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# LLM: prompts, LoRA fine-tuning, constrained scoring of the seven answers


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


def scoring_dtype(name: str = "auto"):
    """float32, bfloat16, or auto: bfloat16 on a GPU or on a CPU with AMX/AVX512-BF16 units (several
    times faster there; expected scores move by < 0.1), else float32."""
    import torch

    from . import training

    if name == "auto":
        name = "bfloat16" if torch.cuda.is_available() or training.cpu_has_bf16_units() else "float32"
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def load_causal_lm(model_path, adapter_path=None, quantization: str = "none", dtype: str = "float32"):
    """Model + tokenizer; a LoRA adapter, if given, is merged in (in float32, before any cast)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
    kwargs = {"local_files_only": True}
    if torch.cuda.is_available():
        kwargs.update(dtype=torch.bfloat16, device_map="auto")
        if quantization == "4bit":
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                               bnb_4bit_compute_dtype=torch.bfloat16)
    else:
        kwargs["dtype"] = torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(model_path), **kwargs)
    if adapter_path is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_path))
        if quantization != "4bit":
            model = model.merge_and_unload()
    if not torch.cuda.is_available():
        model = model.to(scoring_dtype(dtype))
    model.eval()
    _contiguous_head_input(model)
    return model, tokenizer


def _contiguous_head_input(model) -> None:
    """Make the output layer's input contiguous. With logits_to_keep=1 it gets a strided slice of the
    hidden states; for weights that do not require grad (a merged adapter), torch's matmul then
    broadcasts and copies the whole vocabulary matrix per row (a bmm): 3x slower scoring on CPU."""
    head = model.get_output_embeddings()
    if head is not None:
        head.register_forward_pre_hook(lambda module, args: (args[0].contiguous(), *args[1:]))


def train_llm(model_path, train: pd.DataFrame, settings: dict, seed: int, output_dir, checkpoints=None) -> dict:
    """LoRA SFT with trl on prompt/completion examples (completion-only loss); saves the adapter.

    Model loading (fp32 on CPU, half/4-bit on GPU), LoRA config, TrainingArguments and resumable
    checkpoints (fingerprinted by settings + data) come from training.py, shared with EmPO."""
    from datasets import Dataset
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    from . import training

    set_seed(seed)
    cap = settings.get("max_train_pairs")
    if cap and len(train) > cap:
        train = train.sample(n=int(cap), random_state=seed).sort_index()
    tokenizer = training.load_tokenizer(str(model_path))
    examples = llm_examples(train, tokenizer, settings, both_orders=True)
    # Shuffled once here (seeded) so that a max_steps cut sees both orders of many pairs.
    order = np.random.default_rng(seed).permutation(len(examples))
    dataset = Dataset.from_list([examples[i] for i in order])
    model = training.load_base_model(str(model_path), settings, for_training=True, key="similarity.llm")
    checkpoints = Path(checkpoints or tempfile.mkdtemp(prefix="llm-sft-"))
    resume = training.prepare_checkpoints(
        checkpoints, training.fingerprint("similarity.llm_sft", settings, seed, examples))
    arguments = training.common_arguments(settings, str(checkpoints), seed)
    arguments.update(logging_steps=5, logging_first_step=False)
    config = SFTConfig(**arguments, max_length=int(settings["max_length"]), completion_only_loss=True,
                       shuffle_dataset=False)
    record = training.resume_callback()
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=training.lora_config(settings["lora"]), callbacks=[record])
    result = trainer.train(resume_from_checkpoint=resume)

    def save(path):
        trainer.model.save_pretrained(str(path))
        tokenizer.save_pretrained(str(path))

    _save_atomically(save, output_dir)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return {"examples": len(examples), "pairs": len(train), "steps": int(result.global_step),
            "train_loss": float(result.training_loss), "started_at_step": record.started_at_step,
            "steps_run": [record.first_step_run, record.last_step_run]}


def _branches(suffixes: list[list[int]]) -> tuple[list[list[int]], list[int]]:
    """Continuations to feed after the prompt so that one forward pass yields every answer token's
    log-probability: answer[:-1] for each answer, dropping those that are a prefix of another
    ("1" is covered by "1.5"). Returns the branches and, per answer, its branch index."""
    inputs = [tuple(s[:-1]) for s in suffixes]
    branches = []
    for candidate in sorted(set(inputs), key=lambda x: (-len(x), x)):
        if not any(b[:len(candidate)] == candidate for b in branches):
            branches.append(candidate)
    owner = [next(i for i, b in enumerate(branches) if b[:len(inp)] == inp) for inp in inputs]
    return [list(b) for b in branches], owner


def scored_suffixes(suffixes: list[list[int]]) -> list[list[int]]:
    """Drop formatting that follows the end-of-turn token in every answer (e.g. the newline after
    <|im_end|>): the tokens all answers end with are kept only up to the first (the end of turn,
    which is what tells "1" from "1.5"), so the scored continuations are as short as possible."""
    common = 0
    while (all(len(s) > common + 1 for s in suffixes)
           and len({s[len(s) - 1 - common] for s in suffixes}) == 1):
        common += 1
    cut = max(common - 1, 0)
    return [s[:len(s) - cut] for s in suffixes]


def _common_prefix(prompts: list[list[int]]) -> int:
    """Length of the token prefix all prompts share (the instruction), leaving each at least one token."""
    shortest = min(len(p) for p in prompts)
    length = 0
    while length < shortest - 1 and len({p[length] for p in prompts}) == 1:
        length += 1
    return length


def _expanded_cache(model, prefix_cache, batch: int):
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    for layer_index, layer in enumerate(prefix_cache.layers):
        cache.update(layer.keys.expand(batch, -1, -1, -1).contiguous(),
                     layer.values.expand(batch, -1, -1, -1).contiguous(), layer_index)
    return cache


def _tree_mask(rest_lengths: list[int], length: int, shared: int, branches: list[list[int]], dtype):
    """Additive 4D attention mask [batch, 1, length + T, shared + length + T] for one forward pass
    over left-padded prompt remainders followed by every branch's tokens (T in all): prompt tokens
    see the shared prefix and the earlier real tokens of their own prompt; a branch token also sees
    the whole prompt and the earlier tokens of its own branch, never another branch ("tree attention").
    Every row may see itself, so no row is empty."""
    import torch

    width = sum(len(b) for b in branches)
    queries, keys = length + width, shared + length + width
    allowed = torch.zeros((len(rest_lengths), queries, keys), dtype=torch.bool)
    allowed[:, :, :shared] = True
    causal = torch.tril(torch.ones((length, length), dtype=torch.bool))
    start = 0
    block = torch.zeros((width, width), dtype=torch.bool)
    for branch in branches:
        block[start:start + len(branch), start:start + len(branch)] = torch.tril(
            torch.ones((len(branch), len(branch)), dtype=torch.bool))
        start += len(branch)
    for row, rest in enumerate(rest_lengths):
        real = torch.zeros(length, dtype=torch.bool)
        real[length - rest:] = True
        allowed[row, :length, shared:shared + length] = causal & real
        allowed[row, length:, shared:shared + length] = real
        allowed[row, length:, shared + length:] = block
    diagonal = torch.arange(queries)
    allowed[:, diagonal, shared + diagonal] = True
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def answer_logprobs(model, tokenizer, prompts: list[list[int]], suffixes: list[list[int]],
                    batch_size: int = 8, progress: bool = True, per_token: bool = False):
    """Log-probability of each answer continuation after each prompt: an (n_prompts, n_answers) array;
    with per_token=True also each token's (n_prompts, n_answers, longest answer), zero-padded, which
    similarity_protocol.guided_choice walks.

    The prefix every prompt shares (the instruction) is run once and its KV cache reused. Each
    batch then takes one forward pass over the prompts' remainders (left-padded, explicit positions)
    followed by the few branches that cover all answers (see `_branches`), with a tree-shaped
    attention mask (`_tree_mask`): each branch sees its prompt but not the other branches. No token
    is processed twice and no cache is copied per branch (repeating it made scoring 2x slower).
    """
    import torch
    from tqdm.auto import tqdm

    branches, owner = _branches(suffixes)
    branches = [b for b in branches if b]  # an empty branch: every answer is a single token
    offsets = np.cumsum([0] + [len(b) for b in branches])[:-1]
    branch_tokens = [token for branch in branches for token in branch]
    branch_positions = [k for branch in branches for k in range(len(branch))]
    width = len(branch_tokens)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    if not dtype.is_floating_point:  # quantized weights: the mask follows the compute dtype
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shared = _common_prefix(prompts) if len(prompts) > 1 else 0
    prefix_cache = None
    if shared:
        with torch.inference_mode():
            prefix_cache = model(input_ids=torch.tensor([prompts[0][:shared]], device=device), use_cache=True,
                                 logits_to_keep=1).past_key_values
    # Longest prompts first: batches of similar length waste little on padding.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    result = np.zeros((len(prompts), len(suffixes)))
    tokens = np.zeros((len(prompts), len(suffixes), max(len(s) for s in suffixes)))
    batches = range(0, len(order), batch_size)
    for start in tqdm(batches, desc="scoring answers", disable=not progress, mininterval=10):
        index = order[start:start + batch_size]
        rests = [prompts[i][shared:] for i in index]
        length = max(len(r) for r in rests)
        ids = torch.full((len(index), length + width), pad_id, dtype=torch.long)
        positions = torch.zeros((len(index), length + width), dtype=torch.long)
        for row, rest in enumerate(rests):
            ids[row, length - len(rest):length] = torch.tensor(rest, dtype=torch.long)
            ids[row, length:] = torch.tensor(branch_tokens, dtype=torch.long)
            last = shared + len(rest) - 1  # position of the prompt's last token
            positions[row, length - len(rest):length] = torch.arange(shared, last + 1)
            positions[row, length:] = last + 1 + torch.tensor(branch_positions, dtype=torch.long)
        mask = _tree_mask([len(r) for r in rests], length, shared, branches, dtype)
        with torch.inference_mode():
            cache = _expanded_cache(model, prefix_cache, len(index)) if shared else None
            out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                        past_key_values=cache, use_cache=False, logits_to_keep=width + 1)
            # logits[:, 0]: after the prompt; logits[:, 1 + offset + k]: after branch token k
            logprobs = torch.log_softmax(out.logits.float(), dim=-1).cpu()
        for j, suffix in enumerate(suffixes):
            tokens[index, j, 0] = logprobs[:, 0, suffix[0]].numpy()
            for k in range(1, len(suffix)):
                tokens[index, j, k] = logprobs[:, 1 + offsets[owner[j]] + k - 1, suffix[k]].numpy()
            result[index, j] = tokens[index, j, :len(suffix)].sum(axis=1)
    return (result, tokens) if per_token else result


def answer_distribution(logprobs: np.ndarray) -> np.ndarray:
    """Renormalise answer log-probabilities into a distribution over exactly the allowed answers."""
    shifted = logprobs - logprobs.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    return probs / probs.sum(axis=1, keepdims=True)


def llm_predictions(model_path, adapter_path, test: pd.DataFrame, settings: dict,
                    method: str = "llm_zeroshot") -> tuple[pd.DataFrame, dict]:
    """The paper's scoring of one LLM method (docs/fidelity.md), plus the expected score as an extra.

    llm_zeroshot: guided choice over the seven answers at temperature 0 (llm_eval_openllm.py), in
    both story orders, averaged. llm_sft: greedy decoding of the (A, B) prompt and the number parsed
    from the answer (eval_llama3.ipynb). Extra for both (`predicted_expected`): the expected score under
    the model's distribution over the answers, from one forward pass (averaged over the same orders)."""
    from . import similarity_decoding

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
        responses = similarity_decoding.greedy_responses(
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


# ---------------------------------------------------------------------------------------------
# One method on one test set


def predict(method: str, test: pd.DataFrame, train: pd.DataFrame, model_path, settings: dict,
            adapter_path=None) -> tuple[pd.DataFrame, dict]:
    if method in ENCODER_METHODS:
        return encoder_predictions(model_path, train, test, max_seq_length=settings.get("max_seq_length"))
    if method in LLM_METHODS:
        if method == "llm_sft" and adapter_path is None:
            raise InputError("llm_sft needs the trained adapter (results/similarity/llm_sft/adapter)")
        return llm_predictions(model_path, adapter_path if method == "llm_sft" else None, test, settings, method)
    raise InputError(f"similarity method {method!r} is not one of {', '.join(ENCODER_METHODS + LLM_METHODS)}")


def per_annotator_scores(predictions: pd.DataFrame, ratings_path) -> dict:
    """Pearson/Spearman of the predictions against each annotator's empathy rating (Urdu pairs):
    sets the model beside single humans and the human ceiling of the agreement stage."""
    from .metrics import similarity_metrics

    ratings = read_csv(ratings_path, required=("item_id", "annotator", "aspect", "score"), what="ratings table")
    ratings = ratings[ratings.aspect == "empathy"]
    scores = {}
    for annotator, group in ratings.groupby("annotator", sort=True):
        merged = predictions.merge(group[["item_id", "score"]], left_on="pair_id", right_on="item_id")
        merged = merged.dropna(subset=["score"])
        if len(merged) < 3:
            continue
        values = similarity_metrics(merged.score.to_numpy(), merged.predicted.to_numpy())
        scores[str(annotator)] = {"n": values["n"], "pearson": values["pearson"], "spearman": values["spearman"]}
    return scores


def scatter_plot(predictions: pd.DataFrame, path, title: str) -> None:
    from .plots import new_figure, save_figure

    figure, axis = new_figure(4.5, 4.5)
    axis.scatter(predictions.gold, predictions.predicted, s=12, alpha=0.5, edgecolor="none")
    axis.plot(SCALE, SCALE, color="grey", linewidth=0.8, linestyle="--")
    axis.set_xlim(SCALE[0] - 0.1, SCALE[1] + 0.1)
    axis.set_ylim(SCALE[0] - 0.1, SCALE[1] + 0.1)
    axis.set_xlabel("gold empathy (1-4)")
    axis.set_ylabel("predicted (1-4)")
    axis.set_title(title, fontsize=9)
    save_figure(figure, path)


def jsonable(value):
    """Config values (Snakemake Namedlist/dicts) as plain JSON values."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
