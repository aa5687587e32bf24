"""The EPITOME classifier of Sharma et al. (EMNLP 2020), as EmPO scores diff-Epitome with it.

Architecture and parameter names follow the authors' code, behavioral-data/Empathy-Mental-Health,
src/models/models.py (commit 3422d430bd3c6f39de4acb09f0cc3db329095e77): two RoBERTa encoders,
`seeker_encoder.roberta` and `responder_encoder.roberta`; the response's token states attend to
the seeker's (`attn`: one-head MultiHeadAttention with q_linear/k_linear/v_linear/out), added back
through dropout; a RobertaClassificationHead (`empathy_classifier`: dense, out_proj) on the
response's <s> state gives the 3 levels, and `rationale_classifier` gives per response token
rationale/not logits (the second task). `norm` (Norm: alpha, bias) is built but unused, as there.
One model per mechanism. EmPO loads the authors' finetuned_{ER,IP,EX}.pth with
`load_state_dict` (strict) and tokenises with roberta-base, max_length 64, seeker and response
separately (justtherightsize/empo, src/emp_metrics/diff_epitome.py, commit
803b0b68db0c37dfb9f68381ce4e3cf50156125e; its copy of the model: src/emp_metrics/from_epitome/
models.py, commit 76927cfbb6dc62ff26909c00fbcb2b83aa0ca53f). So a state dict saved by the authors
loads here with no missing or unexpected keys, and `empo.evaluation.epitome.weights` may name
those .pth files (the roberta-base tokenizer files beside them).

Training follows the authors' loss: lambda_EI * cross-entropy(levels) + lambda_RE *
cross-entropy(rationale tokens, padding ignored), AdamW with a linear schedule."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from empathy_workflow.core.io import InputError, atomic_dir

logger = logging.getLogger(__name__)


MANIFEST = "biencoder.json"


WEIGHT_SUFFIXES = (".pth", ".bin", ".pt")


def _torch():
    import torch
    from torch import nn

    return torch, nn


def build_model(config, hidden_dropout_prob: float = 0.2, rationale_num_labels: int = 2,
                empathy_num_labels: int = 3, attn_heads: int = 1):
    """BiEncoderAttentionWithRationaleClassification for a RobertaConfig (random weights)."""
    torch, nn = _torch()
    from transformers import RobertaModel

    class Norm(nn.Module):
        def __init__(self, d_model, eps=1e-6):
            super().__init__()
            self.size = d_model
            self.alpha = nn.Parameter(torch.ones(self.size))
            self.bias = nn.Parameter(torch.zeros(self.size))
            self.eps = eps

        def forward(self, x):
            return self.alpha * (x - x.mean(dim=-1, keepdim=True)) / (x.std(dim=-1, keepdim=True) + self.eps) + self.bias

    class MultiHeadAttention(nn.Module):
        def __init__(self, heads, d_model, dropout=0.1):
            super().__init__()
            self.d_model, self.d_k, self.h = d_model, d_model // heads, heads
            self.q_linear = nn.Linear(d_model, d_model)
            self.v_linear = nn.Linear(d_model, d_model)
            self.k_linear = nn.Linear(d_model, d_model)
            self.dropout = nn.Dropout(dropout)
            self.out = nn.Linear(d_model, d_model)

        def forward(self, q, k, v, mask=None):
            bs = q.size(0)
            k = self.k_linear(k).view(bs, -1, self.h, self.d_k).transpose(1, 2)
            q = self.q_linear(q).view(bs, -1, self.h, self.d_k).transpose(1, 2)
            v = self.v_linear(v).view(bs, -1, self.h, self.d_k).transpose(1, 2)
            scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.d_k)
            if mask is not None:
                scores = scores.masked_fill(mask.unsqueeze(1) == 0, -1e9)
            scores = self.dropout(torch.softmax(scores, dim=-1))
            return self.out(torch.matmul(scores, v).transpose(1, 2).contiguous().view(bs, -1, self.d_model))

    class RobertaClassificationHead(nn.Module):
        def __init__(self, hidden_dropout_prob=0.1, hidden_size=768, empathy_num_labels=3):
            super().__init__()
            self.dense = nn.Linear(hidden_size, hidden_size)
            self.dropout = nn.Dropout(hidden_dropout_prob)
            self.out_proj = nn.Linear(hidden_size, empathy_num_labels)

        def forward(self, features):
            x = self.dropout(features)
            x = torch.relu(self.dense(x))
            return self.out_proj(self.dropout(x))

    class Encoder(nn.Module):
        # SeekerEncoder / ResponderEncoder there: a holder whose `roberta` gives the key prefix.
        def __init__(self):
            super().__init__()
            self.roberta = RobertaModel(config, add_pooling_layer=True)

    class BiEncoderAttentionWithRationaleClassification(nn.Module):
        def __init__(self):
            super().__init__()
            hidden_size = config.hidden_size  # 768 (roberta-base) is hard-coded there
            self.dropout = nn.Dropout(hidden_dropout_prob)
            self.rationale_classifier = nn.Linear(hidden_size, rationale_num_labels)
            self.attn = MultiHeadAttention(attn_heads, hidden_size)
            self.norm = Norm(hidden_size)
            self.rationale_num_labels = rationale_num_labels
            self.empathy_num_labels = empathy_num_labels
            self.empathy_classifier = RobertaClassificationHead(hidden_size=hidden_size,
                                                                empathy_num_labels=empathy_num_labels)
            self.seeker_encoder = Encoder()
            self.responder_encoder = Encoder()

        def forward(self, input_ids_SP=None, input_ids_RP=None, attention_mask_SP=None, attention_mask_RP=None,
                    empathy_labels=None, rationale_labels=None, lambda_EI=1.0, lambda_RE=0.1):
            sequence_output_SP = self.seeker_encoder.roberta(input_ids_SP, attention_mask=attention_mask_SP)[0]
            sequence_output_RP = self.responder_encoder.roberta(input_ids_RP, attention_mask=attention_mask_RP)[0]
            # As there: the response attends to every seeker position (no mask), residual + dropout.
            sequence_output_RP = sequence_output_RP + self.dropout(
                self.attn(sequence_output_RP, sequence_output_SP, sequence_output_SP))
            logits_empathy = self.empathy_classifier(sequence_output_RP[:, 0, :])
            logits_rationales = self.rationale_classifier(self.dropout(sequence_output_RP))
            if empathy_labels is None:
                return logits_empathy, logits_rationales
            loss_fct = nn.CrossEntropyLoss()
            loss_empathy = loss_fct(logits_empathy.view(-1, self.empathy_num_labels), empathy_labels.view(-1))
            loss = lambda_EI * loss_empathy
            if rationale_labels is not None:
                active = attention_mask_RP.view(-1) == 1
                labels = torch.where(active, rationale_labels.view(-1),
                                     torch.tensor(loss_fct.ignore_index).type_as(rationale_labels))
                loss = loss + lambda_RE * loss_fct(logits_rationales.view(-1, self.rationale_num_labels), labels)
            return loss, logits_empathy, logits_rationales

    model = BiEncoderAttentionWithRationaleClassification()
    # The authors' _init_weights for the head layers (normal(0, 0.02), zero bias).
    for module in (model.rationale_classifier, model.attn.q_linear, model.attn.k_linear, model.attn.v_linear,
                   model.attn.out, model.empathy_classifier.dense, model.empathy_classifier.out_proj):
        module.weight.data.normal_(mean=0.0, std=0.02)
        module.bias.data.zero_()
    return model


def config_from_state_dict(state: Mapping):
    """The RobertaConfig a state dict with the original names was trained with (roberta-base for
    the authors' weights): sizes read off the tensors; 64-dimensional attention heads."""
    from transformers import RobertaConfig

    prefix = "responder_encoder.roberta."
    try:
        vocab, hidden = state[prefix + "embeddings.word_embeddings.weight"].shape
        positions = state[prefix + "embeddings.position_embeddings.weight"].shape[0]
        types = state[prefix + "embeddings.token_type_embeddings.weight"].shape[0]
        intermediate = state[prefix + "encoder.layer.0.intermediate.dense.weight"].shape[0]
    except KeyError as missing:
        raise InputError(f"not a bi-encoder state dict with the original parameter names: no {missing}") from None
    layers = 1 + max(int(k.split(".")[4]) for k in state if k.startswith(prefix + "encoder.layer."))
    return RobertaConfig(vocab_size=int(vocab), hidden_size=int(hidden), num_hidden_layers=layers,
                         num_attention_heads=max(1, int(hidden) // 64), intermediate_size=int(intermediate),
                         max_position_embeddings=int(positions), type_vocab_size=int(types), pad_token_id=1,
                         bos_token_id=0, eos_token_id=2)


def load_state(path: str | os.PathLike) -> dict:
    """A state dict from .safetensors, or from a pickled .pth/.bin with torch.load(weights_only=True)
    (refuses anything but tensors, so loading runs no code)."""
    torch, _ = _torch()
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise InputError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def load_original(path: str | os.PathLike, device: str = "cpu"):
    """A model from a state dict with the authors' parameter names; strict: any missing or
    unexpected key is an error naming the file."""
    state = load_state(path)
    model = build_model(config_from_state_dict(state))
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise InputError(f"{path}: not the bi-encoder's parameters: missing {result.missing_keys[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")
    return model.to(device).eval()


def is_biencoder(path: str | os.PathLike) -> bool:
    path = Path(path)
    return (path.is_file() and path.suffix in WEIGHT_SUFFIXES) or (path / MANIFEST).is_file()


class BiEncoderLevelClassifier:
    """Levels from one mechanism's weights (a .pth file: `mechanisms` empty, one column) or from a
    folder written by `train` (biencoder.json: one model per mechanism, one column each)."""

    def __init__(self, path: str | os.PathLike, max_length: int = 64, batch_size: int = 32, device: str = "cpu"):
        from transformers import AutoTokenizer

        path = Path(path)
        if path.is_file():
            self.mechanisms, files, tokenizer_dir = [], [path], path.parent
        else:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
            self.mechanisms = list(manifest["mechanisms"])
            files, tokenizer_dir = [path / f"{m}.safetensors" for m in self.mechanisms], path
        if not any((tokenizer_dir / name).is_file() for name in ("tokenizer.json", "vocab.json")):
            raise InputError(f"{tokenizer_dir}: no tokenizer beside the bi-encoder weights (put the roberta-base "
                             f"tokenizer files, vocab.json and merges.txt or tokenizer.json, there)")
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        self.models = [load_original(f, device) for f in files]
        self.max_length, self.batch_size, self.device = int(max_length), int(batch_size), device

    def logits(self, seekers: Sequence[str], responses: Sequence[str]) -> list:
        """Per model: (level logits (n, 3), rationale logits per response token)."""
        torch, _ = _torch()
        out = [([], []) for _ in self.models]
        for start in range(0, len(seekers), self.batch_size):
            sp, rp = encode_pair(self.tokenizer, seekers[start:start + self.batch_size],
                                 responses[start:start + self.batch_size], self.max_length, self.device)
            with torch.no_grad():
                for model, (levels, rationales) in zip(self.models, out):
                    empathy, rationale = model(input_ids_SP=sp["input_ids"], input_ids_RP=rp["input_ids"],
                                               attention_mask_SP=sp["attention_mask"],
                                               attention_mask_RP=rp["attention_mask"])
                    levels.append(empathy.cpu().numpy())
                    rationales.extend(rationale.cpu().numpy())
        return [(np.concatenate(levels) if levels else np.zeros((0, 3)), rationales) for levels, rationales in out]

    def predict(self, seekers: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        per_model = self.logits(list(seekers), list(responses))
        return np.stack([levels.argmax(axis=1) for levels, _ in per_model], axis=1).astype(int)


def encode_pair(tokenizer, seekers: Sequence[str], responses: Sequence[str], max_length: int, device: str = "cpu"):
    """Seeker and response tokenised separately (as EmPO: truncation at max_length, padded batch)."""
    kwargs = {"truncation": True, "max_length": int(max_length), "padding": True, "return_tensors": "pt"}
    return tokenizer(list(seekers), **kwargs).to(device), tokenizer(list(responses), **kwargs).to(device)


def rationale_token_labels(tokenizer, responses: Sequence[str], rationales: Sequence[str], max_length: int):
    """Per response token 1 if it overlaps an annotated rationale span (EPITOME's `rationales`:
    spans of the response separated by '|'), else 0; padded like `encode_pair`'s responses."""
    torch, _ = _torch()
    encoded = tokenizer(list(responses), truncation=True, max_length=int(max_length), padding=True,
                        return_offsets_mapping=True, return_tensors="pt")
    labels = torch.zeros(encoded["input_ids"].shape, dtype=torch.long)
    for row, (response, spans) in enumerate(zip(responses, rationales)):
        marked = np.zeros(len(response) + 1, dtype=bool)
        for span in (s.strip() for s in str(spans or "").split("|")):
            at = response.find(span) if span else -1
            if at >= 0:
                marked[at:at + len(span)] = True
        for token, (start, end) in enumerate(encoded["offset_mapping"][row].tolist()):
            if end > start and marked[start:end].any():
                labels[row, token] = 1
    return labels


def train(seekers: Sequence[str], responses: Sequence[str], levels: Sequence[int], rationales: Sequence[str] | None,
          encoder_dir: str | os.PathLike, settings: Mapping, seed: int, device: str = "cpu"):
    """One mechanism's model: both encoders start from `encoder_dir` (a RoBERTa), the authors'
    joint loss, AdamW + linear warmup schedule. Returns (model, tokenizer, mean training loss)."""
    torch, _ = _torch()
    from transformers import (
        AutoTokenizer,
        RobertaModel,
        get_linear_schedule_with_warmup,
    )

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir))
    pretrained = RobertaModel.from_pretrained(str(encoder_dir), add_pooling_layer=True)
    model = build_model(pretrained.config, hidden_dropout_prob=float(settings.get("dropout", 0.1)))
    for holder in (model.seeker_encoder, model.responder_encoder):
        holder.roberta.load_state_dict(pretrained.state_dict())
    model.to(device).train()
    batch_size, max_length = int(settings["batch_size"]), int(settings["max_length"])
    order_rng = np.random.default_rng(seed)
    steps = max(1, math.ceil(len(seekers) / batch_size)) * max(1, int(math.ceil(float(settings["epochs"]))))
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(settings["learning_rate"]), eps=1e-8)
    schedule = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=steps)
    levels = np.asarray(levels)
    losses = []
    for _ in range(max(1, int(math.ceil(float(settings["epochs"]))))):
        order = order_rng.permutation(len(seekers))
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            sp, rp = encode_pair(tokenizer, [seekers[i] for i in batch], [responses[i] for i in batch],
                                 max_length, device)
            rationale_labels = None
            if rationales is not None:
                rationale_labels = rationale_token_labels(tokenizer, [responses[i] for i in batch],
                                                          [rationales[i] for i in batch], max_length).to(device)
            loss, _, _ = model(input_ids_SP=sp["input_ids"], input_ids_RP=rp["input_ids"],
                               attention_mask_SP=sp["attention_mask"], attention_mask_RP=rp["attention_mask"],
                               empathy_labels=torch.as_tensor(levels[batch], device=device),
                               rationale_labels=rationale_labels, lambda_EI=float(settings.get("lambda_EI", 0.5)),
                               lambda_RE=float(settings.get("lambda_RE", 0.5)))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
    return model.eval(), tokenizer, float(np.mean(losses)) if losses else float("nan")


def save(models: Mapping, tokenizer, output_dir: str | os.PathLike) -> None:
    """{mechanism: model} -> a folder: MECHANISM.safetensors (original names), biencoder.json,
    the tokenizer; written beside and moved into place (no half-written folder)."""
    from safetensors.torch import save_file

    with atomic_dir(output_dir) as scratch:
        for mechanism, model in models.items():
            save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()},
                      str(scratch / f"{mechanism}.safetensors"))
        tokenizer.save_pretrained(str(scratch))
        (scratch / MANIFEST).write_text(json.dumps({"mechanisms": list(models)}) + "\n", encoding="utf-8")
