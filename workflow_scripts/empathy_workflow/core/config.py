"""Config validation: JSON schema first, then the checks a schema cannot express (files exist,
names refer to things that are declared). Errors name the dotted key and the problem."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Iterable

import yaml
from jsonschema import Draft202012Validator


class ConfigError(ValueError):
    pass


def is_remote(source: str) -> bool:
    return source.startswith(("http://", "https://", "hf:"))


def resolve_path(path: str, base_dir: str | os.PathLike) -> str:
    """Relative paths: the working directory first, then the repository root (base_dir)."""
    if path is None or is_remote(path) or os.path.isabs(path) or os.path.exists(path):
        return path
    candidate = Path(base_dir) / path
    return str(candidate) if candidate.exists() else path


def _dotted(parts: Iterable[Any]) -> str:
    return ".".join(str(part) for part in parts) or "(top level)"


def _suggestions(error) -> str:
    """'; did you mean ...?' for unknown keys that look like a known one (typos)."""
    known = set(error.schema.get("properties", {}))
    if isinstance(error.instance, dict):
        # keys accepted through a $ref (shared trainer settings) count as known too
        known |= set(error.instance) - set(_unknown(error))
    hints = []
    for name in _unknown(error):
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        if close:
            hints.append(f"{name!r} -> {close[0]!r}")
    return f"; did you mean {', '.join(hints)}?" if hints else ""


def _unknown(error) -> list[str]:
    if not isinstance(error.instance, dict):
        return []
    allowed = set(error.schema.get("properties", {}))
    if error.validator == "additionalProperties":
        return sorted(set(error.instance) - allowed)
    # unevaluatedProperties: the names are quoted in the message
    return [name for name in error.instance if f"'{name}'" in error.message]


def schema_errors(config: dict, schema_path: str | os.PathLike) -> list[str]:
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = Draft202012Validator(schema)
    messages = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        key = _dotted(error.absolute_path)
        message = error.message
        if error.validator in ("additionalProperties", "unevaluatedProperties"):
            message = message.replace("Additional properties are not allowed", "unknown key(s)")
            message = message.replace("Unevaluated properties are not allowed", "unknown key(s)")
            message += _suggestions(error)
        messages.append(f"config key {key}: {message}")
    return messages


def file_errors(config: dict, base_dir: str | os.PathLike) -> list[str]:
    """Every local dataset path must exist (null means: not given; remote sources are fetched later)."""
    messages = []

    def check(key: str, value: Any, directory: bool = False) -> None:
        if value is None or is_remote(str(value)):
            return
        path = resolve_path(str(value), base_dir)
        if directory and not os.path.isdir(path):
            messages.append(f"config key {key}: directory {value!r} does not exist")
        elif not directory and not os.path.isfile(path):
            messages.append(f"config key {key}: file {value!r} does not exist")

    for dataset, entries in config.get("datasets", {}).items():
        for name, value in (entries or {}).items():
            if name == "resplit":
                continue
            check(f"datasets.{dataset}.{name}", value, directory=(dataset == "mmlu"))
    for name, entry in config.get("agreement", {}).get("datasets", {}).items():
        check(f"agreement.datasets.{name}.path", entry.get("path"))
    return messages


def reference_errors(config: dict) -> list[str]:
    """Names that must refer to a declared model, and splits that must be available."""
    messages = []
    models = set(config.get("models", {}))

    def model(key: str, value: Any) -> None:
        if value is not None and value not in models:
            messages.append(f"config key {key}: model {value!r} is not declared under models "
                            f"(declared: {', '.join(sorted(models)) or 'none'})")

    similarity = config.get("similarity", {})
    model("similarity.zeroshot.encoder", similarity.get("zeroshot", {}).get("encoder"))
    model("similarity.contrastive.encoder", similarity.get("contrastive", {}).get("encoder"))
    model("similarity.llm.model", similarity.get("llm", {}).get("model"))
    if "llm_api" in similarity.get("methods", []) and not similarity.get("llm_api"):
        messages.append("config key similarity.llm_api: similarity.methods lists llm_api but no endpoint is "
                        "configured (base_url, model, api_key_env; see configs/llm_api.yaml)")
    empo = config.get("empo", {})
    model("empo.sft.model", empo.get("sft", {}).get("model"))
    model("empo.evaluation.epitome.encoder", empo.get("evaluation", {}).get("epitome", {}).get("encoder"))

    for dataset, splits in (("empathic_stories", ("train", "dev", "test")),
                            ("empathetic_dialogues", ("train", "valid", "test"))):
        entry = config.get("datasets", {}).get(dataset, {})
        if any(entry.get(split) is None for split in splits):
            if not any(entry.get(split) for split in splits):
                messages.append(f"config key datasets.{dataset}: no split is given")
            elif "resplit" not in entry:
                missing = [split for split in splits if entry.get(split) is None]
                messages.append(f"config key datasets.{dataset}: {', '.join(missing)} is null and no "
                                f"resplit fractions are given to make it")
        resplit = entry.get("resplit")
        if resplit and abs(sum(resplit.values()) - 1.0) > 1e-6:
            messages.append(f"config key datasets.{dataset}.resplit: fractions sum to "
                            f"{sum(resplit.values()):g}, not 1")
    return messages


def preference_run_errors(config: dict, schema_path: str | os.PathLike) -> list[str]:
    """Each resolved preference run (defaults + the run's keys, grids expanded) against the
    schema's preference_run; keys that now come from empo.sft; a run on other base weights."""
    from empathy_workflow.core.grids import resolve_runs, run_problems

    empo = config.get("empo", {})
    preference = empo.get("preference", {})
    messages = run_problems(preference)
    if messages:
        return messages
    try:
        runs = resolve_runs(preference)
    except ValueError as error:
        return [str(error)]
    schema = yaml.safe_load(Path(schema_path).read_text())
    run_schema = dict(schema["$defs"]["preference_run"], **{"$defs": schema["$defs"]})
    validator = Draft202012Validator(run_schema)
    sft_quantization = empo.get("sft", {}).get("quantization", "none")
    for name, settings in runs.items():
        for error in sorted(validator.iter_errors(settings), key=lambda e: list(map(str, e.absolute_path))):
            key = _dotted(["empo", "preference", "runs", name, *error.absolute_path])
            message = error.message.replace("Unevaluated properties are not allowed", "unknown key(s)")
            messages.append(f"config key {key}: {message} (resolved from empo.preference.defaults and the run)")
        pairs = empo.get("pairs", {})
        if settings.get("max_length") == "length_filter" and (
                pairs.get("length_percentile") is None or pairs.get("length_measure", "reply") != "prompt_reply"):
            messages.append(f"config key empo.preference.runs.{name}.max_length: length_filter takes the DPO length "
                            f"from the prompt+reply length filter, but empo.pairs has length_percentile "
                            f"{pairs.get('length_percentile')!r} and length_measure "
                            f"{pairs.get('length_measure', 'reply')!r} (needs a percentile and prompt_reply)")
        if settings.get("quantization", sft_quantization) != sft_quantization:
            messages.append(f"config key empo.preference.runs.{name}.quantization: {settings['quantization']!r} "
                            f"differs from empo.sft.quantization {sft_quantization!r}; the preference stage "
                            f"trains the SFT adapter on the same base weights")
    variants = empo.get("generation", {}).get("variants") or {}
    models = {"base", "sft", *runs}
    for name, variant in variants.items():
        if name in runs:
            messages.append(f"config key empo.generation.variants.{name}: a preference run has this name")
        if variant.get("model") not in models:
            messages.append(f"config key empo.generation.variants.{name}.model: {variant.get('model')!r} is not "
                            f"base, sft or a preference run ({', '.join(sorted(runs))})")
    return messages


def validate_config(config: dict, schema_path: str | os.PathLike, base_dir: str | os.PathLike) -> None:
    """Raise ConfigError listing every problem; the schema first, since later checks assume its shape."""
    messages = schema_errors(config, schema_path)
    if not messages:
        messages = preference_run_errors(config, schema_path)
    if not messages:
        messages = file_errors(config, base_dir) + reference_errors(config)
    if messages:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(messages))
