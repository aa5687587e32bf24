"""Every GPU code path of the workflow at toy size, for the first GPU machine we get.

    python benchmarks/gpu_check.py               # on one CUDA GPU (exits 2 without one)
    python benchmarks/gpu_check.py --allow-cpu   # the same steps on the CPU, minus 4-bit

Needs only torch, transformers, peft, trl, accelerate, bitsandbytes and sentence-transformers
(lm-eval too for its step, skipped when absent), and no network: the models are randomly
initialised from configs (a small Llama, a small BERT encoder) with a byte-level tokenizer built
here. Steps, as the workflow runs them on a GPU:
  qlora_sft        4-bit NF4 base + LoRA, SFT steps (trl SFTTrainer), the SFT adapter saved
  dpo_ref_adapter  the SFT adapter trained further with DPO against a frozen copy of itself as
                   the reference ("ref" adapter, trl DPOTrainer on a PeftModel)
  generation       batched, left-padded greedy generation with base + adapter
  epitome          sequence-classification steps (transformers Trainer) on the encoder
  bertscore        BERTScore-style greedy matching of layer embeddings on the GPU
  sentence_encoder sentence-transformers encoding on the GPU (similarity zero-shot/contrastive)
  lm_eval_peft     lm-eval's HF model with `peft=` on a local multiple-choice task (if installed)
Each prints its device, dtype, seconds and peak GPU memory; any failure makes the exit code 1.
The output of a real GPU run goes into benchmarks/gpu.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(name, "1")  # no network: everything is built here

import torch

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
RESULTS: list[dict] = []


def byte_tokenizer(path: Path):
    """A byte-level BPE tokenizer with no merges (every byte one token): offline, any text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>", "[CLS]", "[SEP]"]
    vocab = {token: index for index, token in enumerate(specials + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>", cls_token="[CLS]", sep_token="[SEP]")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)
    return fast


def build_models(root: Path, tokenizer) -> tuple[Path, Path]:
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=512,
                                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))
    llama.save_pretrained(root / "llama")
    tokenizer.save_pretrained(root / "llama")
    encoder = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=4,
                                   num_attention_heads=4, intermediate_size=256, max_position_embeddings=256,
                                   pad_token_id=tokenizer.pad_token_id))
    encoder.save_pretrained(root / "encoder")
    tokenizer.save_pretrained(root / "encoder")
    return root / "llama", root / "encoder"


@contextlib.contextmanager
def step(name: str, device: str):
    """Time a step and record its device, dtype and peak GPU memory; a failure is recorded, not raised."""
    record = {"step": name, "device": device, "dtype": None, "seconds": None, "peak_gpu_mib": None, "ok": False}
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        yield record
        record["ok"] = True
    except Exception as error:  # noqa: BLE001 - every failure is reported, the others still run
        record["error"] = f"{type(error).__name__}: {error}"
        traceback.print_exc()
    finally:
        if device == "cuda":
            torch.cuda.synchronize()
            record["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        record["seconds"] = round(time.perf_counter() - start, 2)
        RESULTS.append(record)
        print(json.dumps(record), flush=True)


def training_args(cls, output: Path, device: str, **extra):
    cuda = device == "cuda"
    bf16 = cuda and torch.cuda.is_bf16_supported()
    return cls(output_dir=str(output), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-4,
               logging_steps=1, save_strategy="no", report_to=[], bf16=bf16, fp16=cuda and not bf16,
               use_cpu=not cuda, seed=0, **extra)


def chats(n: int) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"I lost my job after {i} years."},
                          {"role": "assistant", "content": "That sounds really hard; how are you holding up?"}]}
            for i in range(n)]


def load_policy(llama: Path, device: str, quantize: bool):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if quantize:
        half = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                    bnb_4bit_compute_dtype=half)
        return AutoModelForCausalLM.from_pretrained(llama, quantization_config=config, device_map={"": 0}, dtype=half)
    model = AutoModelForCausalLM.from_pretrained(llama, dtype=torch.float32)
    return model.to(device)


def run_sft(llama: Path, tokenizer, root: Path, device: str, quantize: bool) -> Path:
    from datasets import Dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from trl import SFTConfig, SFTTrainer

    with step("qlora_sft" if quantize else "lora_sft", device) as record:
        model = load_policy(llama, device, quantize)
        if quantize:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
        lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, task_type="CAUSAL_LM",
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        args = training_args(SFTConfig, root / "sft_out", device, max_length=128, gradient_checkpointing=quantize)
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(chats(16)),
                             processing_class=tokenizer, peft_config=lora)
        trainer.train()
        record["dtype"] = str(next(p for p in trainer.model.parameters() if p.requires_grad).dtype)
        record["base_weights"] = "4-bit NF4" if quantize else str(next(model.parameters()).dtype)
        record["train_loss"] = round(trainer.state.log_history[-1].get("train_loss", float("nan")), 4)
        trainer.model.save_pretrained(root / "sft_adapter")
    return root / "sft_adapter"


def run_dpo(llama: Path, sft: Path, tokenizer, root: Path, device: str, quantize: bool) -> None:
    from datasets import Dataset
    from peft import PeftModel, prepare_model_for_kbit_training
    from trl import DPOConfig, DPOTrainer

    with step("dpo_ref_adapter", device) as record:
        base = load_policy(llama, device, quantize)
        if quantize:
            base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=True)
        # The SFT adapter keeps training; trl adds a frozen copy of it ("ref") as the reference.
        model = PeftModel.from_pretrained(base, str(sft), is_trainable=True)
        pairs = [{"prompt": f"<|user|>I failed exam number {i}.</s><|assistant|>",
                  "chosen": "I'm sorry, that must feel discouraging.</s>", "rejected": "Study more.</s>"}
                 for i in range(16)]
        args = training_args(DPOConfig, root / "dpo_out", device, beta=0.1, max_length=128,
                             gradient_checkpointing=quantize)
        trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs), processing_class=tokenizer)
        record["adapters"] = sorted(trainer.model.peft_config)
        if "ref" not in trainer.model.peft_config:
            raise RuntimeError(f"trl made no 'ref' adapter (adapters: {record['adapters']})")
        trainer.train()
        record["dtype"] = str(next(p for p in trainer.model.parameters() if p.requires_grad).dtype)
        record["rewards_margin"] = trainer.state.log_history[-2].get("rewards/margins")


def run_generation(llama: Path, sft: Path, tokenizer, device: str) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    with step("generation", device) as record:
        dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        model = AutoModelForCausalLM.from_pretrained(llama, dtype=dtype).to(device)
        model = PeftModel.from_pretrained(model, str(sft)).eval()
        tokenizer.padding_side = "left"
        prompts = [tokenizer.apply_chat_template([{"role": "user", "content": "x" * n}], tokenize=False,
                                                 add_generation_prompt=True) for n in (3, 30, 12, 60)]
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        record["dtype"] = str(dtype)
        record["generated_shape"] = list(out.shape)


def run_epitome(encoder: Path, tokenizer, root: Path, device: str) -> None:
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        Trainer,
        TrainingArguments,
    )

    with step("epitome", device) as record:
        model = AutoModelForSequenceClassification.from_pretrained(encoder, num_labels=3)
        rows = [{"text": f"seeker post {i} [SEP] response {i}", "label": i % 3} for i in range(24)]
        data = Dataset.from_list(rows).map(lambda r: tokenizer(r["text"], truncation=True, max_length=64,
                                                                padding="max_length"))
        trainer = Trainer(model=model, args=training_args(TrainingArguments, root / "epitome", device),
                          train_dataset=data.remove_columns(["text"]))
        trainer.train()
        record["dtype"] = str(next(trainer.model.parameters()).dtype)
        record["model_device"] = str(next(trainer.model.parameters()).device)


def run_bertscore(encoder: Path, tokenizer, device: str) -> None:
    from transformers import AutoModel

    with step("bertscore", device) as record:
        model = AutoModel.from_pretrained(encoder).to(device).eval()
        candidates = ["I am so sorry to hear that.", "That is great news!"]
        references = ["I'm sorry, that sounds hard.", "Congratulations, well done!"]

        def embed(texts):
            batch = tokenizer(texts, return_tensors="pt", padding=True).to(device)
            with torch.no_grad():
                hidden = model(**batch, output_hidden_states=True).hidden_states[3]
            return torch.nn.functional.normalize(hidden, dim=-1), batch["attention_mask"].bool()

        (cand, cand_mask), (ref, ref_mask) = embed(candidates), embed(references)
        similarity = torch.bmm(cand, ref.transpose(1, 2))
        similarity = similarity.masked_fill(~ref_mask[:, None, :], -2).masked_fill(~cand_mask[:, :, None], -2)
        precision = (similarity.max(dim=2).values * cand_mask).sum(1) / cand_mask.sum(1)
        recall = (similarity.max(dim=1).values * ref_mask).sum(1) / ref_mask.sum(1)
        f1 = 2 * precision * recall / (precision + recall)
        record["dtype"] = str(cand.dtype)
        record["f1"] = [round(v, 4) for v in f1.cpu().tolist()]
        record["tensor_device"] = str(f1.device)


def run_sentence_encoder(encoder: Path, device: str) -> None:
    from sentence_transformers import SentenceTransformer, models

    with step("sentence_encoder", device) as record:
        transformer = models.Transformer(str(encoder), max_seq_length=64)
        pooling = models.Pooling(transformer.get_word_embedding_dimension(), pooling_mode="mean")
        model = SentenceTransformer(modules=[transformer, pooling], device=device)
        embeddings = model.encode(["a story about loss", "a story about grief"], convert_to_tensor=True)
        record["dtype"] = str(embeddings.dtype)
        record["tensor_device"] = str(embeddings.device)


def run_lm_eval(llama: Path, sft: Path, root: Path, device: str) -> None:
    try:
        import lm_eval
    except ImportError:
        print(json.dumps({"step": "lm_eval_peft", "skipped": "lm_eval is not installed"}), flush=True)
        return
    from lm_eval.tasks import TaskManager

    with step("lm_eval_peft", device) as record:
        tasks = root / "lm_eval_tasks"
        tasks.mkdir(exist_ok=True)
        docs = [{"question": f"{a} + {b} =", "choices": [str(a + b), str(a + b + 1)], "answer": 0}
                for a, b in ((1, 2), (3, 4), (5, 6), (7, 8))]
        (tasks / "data.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
        (tasks / "toy.yaml").write_text(json.dumps({
            "task": "gpu_check_toy", "dataset_path": "json", "dataset_name": None,
            "dataset_kwargs": {"data_files": {"test": str(tasks / "data.jsonl")}}, "test_split": "test",
            "output_type": "multiple_choice", "doc_to_text": "{{question}}", "doc_to_choice": "{{choices}}",
            "doc_to_target": "answer", "metric_list": [{"metric": "acc"}]}))
        dtype = "bfloat16" if device == "cuda" else "float32"
        output = lm_eval.simple_evaluate(
            model="hf", model_args={"pretrained": str(llama), "peft": str(sft), "dtype": dtype, "device": device},
            tasks=["gpu_check_toy"], task_manager=TaskManager(include_path=str(tasks), include_defaults=False),
            batch_size=4, random_seed=0, numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)
        record["dtype"] = dtype
        record["acc"] = output["results"]["gpu_check_toy"]["acc,none"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU when no GPU (no 4-bit step)")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print("gpu_check: no usable CUDA GPU (torch %s, CUDA build %s); use --allow-cpu for the CPU dry run"
              % (torch.__version__, torch.version.cuda), file=sys.stderr)
        return 2
    device = "cuda" if cuda else "cpu"
    quantize = cuda
    if quantize:
        import bitsandbytes  # noqa: F401 - fail here, clearly, when the 4-bit path cannot work
    print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "device": device,
                      "gpu": torch.cuda.get_device_name(0) if cuda else None}), flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as scratch:
        root = Path(scratch)
        tokenizer = byte_tokenizer(root / "tokenizer")
        llama, encoder = build_models(root, tokenizer)
        sft = run_sft(llama, tokenizer, root, device, quantize)
        if (sft / "adapter_config.json").exists():
            run_dpo(llama, sft, tokenizer, root, device, quantize)
            run_generation(llama, sft, tokenizer, device)
            run_lm_eval(llama, sft, root, device)
        run_epitome(encoder, tokenizer, root, device)
        run_bertscore(encoder, tokenizer, device)
        run_sentence_encoder(encoder, device)
    failed = [r["step"] for r in RESULTS if not r["ok"]]
    print(json.dumps({"total_seconds": round(time.perf_counter() - start, 1), "steps": len(RESULTS),
                      "failed": failed}), flush=True)
    return 1 if failed or len(RESULTS) < 6 else 0


if __name__ == "__main__":
    sys.exit(main())
