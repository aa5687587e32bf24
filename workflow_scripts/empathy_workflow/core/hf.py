"""Hugging Face models for every part: tokenizer and causal-LM loading (fp32 on CPU, bf16/fp16 on
a GPU, one 4-bit NF4 setting), LoRA configs, and the adapter-file hygiene that keeps saves
byte-stable."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from empathy_workflow.core.io import InputError


def scoring_dtype(name: str = "auto"):
    """float32, bfloat16, or auto: bfloat16 on a GPU or on a CPU with AMX/AVX512-BF16 units (several
    times faster there; expected scores move by < 0.1), else float32."""
    import torch

    if name == "auto":
        name = "bfloat16" if torch.cuda.is_available() or cpu_has_bf16_units() else "float32"
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def load_causal_lm(model_path, adapter_path=None, quantization: str = "none", dtype: str = "float32"):
    """Model + tokenizer; a LoRA adapter, if given, is merged in (in float32, before any cast)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
    kwargs = {"local_files_only": True}
    if torch.cuda.is_available():
        kwargs.update(dtype=torch.bfloat16, device_map="auto")
        if quantization == "4bit":  # the NF4 settings training used (quantization_config)
            kwargs["quantization_config"] = quantization_config({"quantization": quantization}, "similarity.llm")
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
    contiguous_head_input(model)
    return model, tokenizer


logger = logging.getLogger(__name__)


def load_tokenizer(model_dir: str | os.PathLike):
    """The model's tokenizer with a pad token that already exists in its vocabulary."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        # reuse a token: adding one would resize (and save) the embeddings
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    if tokenizer.pad_token is None:
        raise InputError(f"{model_dir}: tokenizer has no pad, unk or eos token to pad with")
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(f"{model_dir}: tokenizer has no chat template; EmPO formats ED conversations as chats")
    return tokenizer


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def quantization_config(settings: dict, key: str = "empo.sft"):
    """BitsAndBytes 4-bit (QLoRA) config when asked for; a clear error where it cannot work."""
    mode = settings.get("quantization", "none") or "none"
    if mode == "none":
        return None
    if mode != "4bit":
        raise InputError(f"config key {key}.quantization: {mode!r} is not one of none, 4bit")
    if not cuda_available():
        raise InputError(f"config key {key}.quantization: 4bit (QLoRA) needs a CUDA GPU; this machine has none "
                         f"(use quantization: none on CPU)")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as error:
        raise InputError(f"config key {key}.quantization: 4bit needs the bitsandbytes package") from error
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=_half_dtype())


def cpu_has_bf16_units() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AMX or AVX512-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def _half_dtype():
    import torch

    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def precision_flags(cpu_precision: str = "float32") -> dict:
    """Mixed precision on GPUs. On CPU plain fp32 (trl defaults to bf16, which most CPUs emulate
    slowly), unless cpu_precision is "auto" and the CPU has bf16 matrix units (AMX, AVX512-BF16):
    there bf16 autocast makes a LoRA step about twice as fast (benchmarks/similarity.md)."""
    if not cuda_available():
        bf16 = cpu_precision == "auto" and cpu_has_bf16_units()
        return {"bf16": bf16, "fp16": False, "use_cpu": True}
    import torch

    bf16 = torch.cuda.is_bf16_supported()
    return {"bf16": bf16, "fp16": not bf16}


def load_base_model(model_dir: str | os.PathLike, settings: dict | None = None, *, for_training: bool = False,
                    key: str = "empo.sft"):
    """The causal LM: fp32 on CPU, bf16/fp16 on GPU, 4-bit if settings say quantization: 4bit."""
    import torch
    from transformers import AutoModelForCausalLM

    settings = settings or {}
    quantization = quantization_config(settings, key)
    kwargs: dict = {}
    if quantization is not None:
        kwargs.update(quantization_config=quantization, device_map={"": 0}, dtype=_half_dtype())
    elif cuda_available():
        # Training keeps fp32 weights under autocast unless the config names a dtype (the similarity
        # authors trained LoRA on bf16 weights: --torch_dtype bfloat16).
        train_dtype = getattr(torch, settings["torch_dtype"]) if settings.get("torch_dtype") else torch.float32
        kwargs.update(dtype=_half_dtype() if not for_training else train_dtype, device_map={"": 0})
    else:
        kwargs.update(dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    if quantization is not None and for_training:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=bool(settings.get("gradient_checkpointing", False)))
    return model


def lora_config(lora: dict):
    from peft import LoraConfig

    targets = lora["target_modules"]
    # None: PEFT's default modules for the architecture (q_proj, v_proj for Llama), as trl's --use_peft
    return LoraConfig(r=int(lora["r"]), lora_alpha=float(lora["alpha"]), lora_dropout=float(lora["dropout"]),
                      target_modules=targets if targets in ("all-linear", None) else list(targets),
                      bias="none", task_type="CAUSAL_LM")


def sort_target_modules(config_path: Path) -> None:
    """PEFT writes target_modules from a set, in hash order: sort it so equal runs give equal bytes."""
    if not config_path.exists():
        return
    config = json.loads(config_path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def contiguous_head_input(model) -> None:
    """Make the output layer's input contiguous. With logits_to_keep=1 it gets a strided slice of the
    hidden states; for weights that do not require grad (a merged adapter), torch's matmul then
    broadcasts and copies the whole vocabulary matrix per row (a bmm): 3x slower scoring on CPU."""
    head = model.get_output_embeddings()
    if head is not None:
        head.register_forward_pre_hook(lambda module, args: (args[0].contiguous(), *args[1:]))
