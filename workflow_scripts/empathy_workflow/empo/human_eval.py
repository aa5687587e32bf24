"""Human evaluation of EmPO replies, part 1: the settings and the blinded rating sheets.

From the generations of the compared models, a seeded evaluation set: the same N test prompts,
every model's reply to each, shuffled and anonymised (item ids carry no model; the key is a
separate file), assigned to annotators so that every item is rated by `overlap` annotators. Each
annotator gets a CSV sheet and a self-contained HTML page (templates/human_eval_sheet.html: no
network, inline JS/CSS) that shows one conversation at a time and downloads the ratings as a
long-format CSV (item_id, annotator, dimension, score).

The default dimensions are EmPO's own human evaluation (justtherightsize/empo, commit
196437e67f9e20b63b128c81fd506396127f3754, src/human_evaluation/he_survey/templates/index.html,
ratings in data/he_data.csv as Dim1-Dim5): four statements rated on a 0-100 slider from
"Strongly disagree" to "Strongly agree", and one checkbox (0/1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from empathy_workflow.core import stats
from empathy_workflow.core.io import InputError, read_jsonl, write_csv, write_text
from empathy_workflow.empo import text_metrics

JUDGE_ANNOTATOR = "llm_judge"


AGREE = ["Strongly disagree", "Strongly agree"]


# EmPO's statements, in its order (Dim1..Dim5 of data/he_data.csv); the wording is the survey's.
EMPO_DIMENSIONS = {
    "appropriateness": {"label": "The listener's response is appropriate to the speaker's situation.",
                        "min": 0, "max": 100, "step": 1, "anchors": AGREE},
    "emotion": {"label": "The listener addresses the speaker's emotional state, specifically.",
                "min": 0, "max": 100, "step": 1, "anchors": AGREE},
    "naturalness": {"label": "The listener's response is completely natural in the context of this conversation.",
                    "min": 0, "max": 100, "step": 1, "anchors": AGREE},
    "engagement": {"label": "I would like to continue the conversation with this listener.",
                   "min": 0, "max": 100, "step": 1, "anchors": AGREE},
    "coherence": {"label": "The listener's responses were both understandable and consistent with the rest "
                           "of the dialogue.", "min": 0, "max": 1, "step": 1, "anchors": ["No", "Yes"]},
}


# A scale with at most this many points is shown as Likert radio buttons, a longer one as a slider.
MAX_LIKERT_POINTS = 11


TEMPLATE = Path(__file__).with_name("templates") / "human_eval_sheet.html"


ROLES = {"user": "Speaker", "assistant": "Listener"}


def annotator_ids(annotators: int | Sequence[str]) -> list[str]:
    """A count becomes a01, a02, ...; a list is kept as given."""
    if isinstance(annotators, int):
        width = max(2, len(str(annotators)))
        return [f"a{number:0{width}d}" for number in range(1, annotators + 1)]
    return [str(name) for name in annotators]


def resolve_settings(section: Mapping, available_models: Sequence[str], key: str = "empo.human_eval") -> dict:
    """The human-evaluation settings with defaults filled in and cross-key checks the schema
    cannot make; raises InputError naming the config key."""
    models = list(section["models"])
    unknown = [model for model in models if model not in available_models]
    if unknown:
        raise InputError(f"config key {key}.models: {', '.join(map(repr, unknown))} is not a generation model "
                         f"(available: {', '.join(available_models)})")
    annotators = annotator_ids(section["annotators"])
    if JUDGE_ANNOTATOR in annotators:
        raise InputError(f"config key {key}.annotators: {JUDGE_ANNOTATOR!r} is reserved for the LLM judge")
    overlap = int(section["overlap"])
    if overlap > len(annotators):
        raise InputError(f"config key {key}.overlap: {overlap} annotators per item, but only "
                         f"{len(annotators)} annotator(s) are declared")
    dimensions = {}
    for name, entry in (section.get("dimensions") or EMPO_DIMENSIONS).items():
        low, high, step = float(entry["min"]), float(entry["max"]), float(entry.get("step", 1))
        where = f"config key {key}.dimensions.{name}"
        if not low < high:
            raise InputError(f"{where}: min {low:g} must be below max {high:g}")
        points = (high - low) / step
        if abs(points - round(points)) > 1e-9:
            raise InputError(f"{where}: step {step:g} does not divide the range [{low:g}, {high:g}]")
        widget = entry.get("widget") or ("likert" if round(points) + 1 <= MAX_LIKERT_POINTS else "slider")
        dimensions[name] = {"label": entry["label"], "description": entry.get("description", ""),
                            "min": low, "max": high, "step": step, "widget": widget,
                            "anchors": list(entry.get("anchors") or ["", ""])}
    return {"models": models, "n_items": int(section["n_items"]), "annotators": annotators,
            "overlap": overlap, "dimensions": dimensions}


def on_scale(value: float, dimension: Mapping) -> bool:
    """Whether a score is one of the dimension's points (min, min + step, ..., max)."""
    if not dimension["min"] <= value <= dimension["max"]:
        return False
    steps = (value - dimension["min"]) / dimension["step"]
    return abs(steps - round(steps)) < 1e-6


def readable_prompt(messages: Sequence[Mapping]) -> str:
    """The conversation as the annotators read it ("Speaker: ..." / "Listener: ..." lines, as in
    EmPO's survey); a system prompt is the models' instruction, not part of the conversation."""
    return "\n".join(f"{ROLES.get(m['role'], m['role'])}: {m['content']}" for m in messages
                     if m["role"] != "system")


def read_model_replies(paths: Mapping[str, str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """({model: replies} as one frame: model, prompt_key, conv_id, reply; {prompt_key: prompt text}).
    A prompt is matched across models on (conv_id, occurrence); the models must have answered
    the same conversation text, else the comparison would not be paired."""
    frames, prompts = [], {}
    for model, path in paths.items():
        table = text_metrics.read_generations(path)  # validates every record (names file and line)
        texts = [readable_prompt(record["prompt"]) for record in read_jsonl(path)]
        for row, text in zip(table.itertuples(), texts):
            prompt_key = f"{row.conv_id}#{row.item}"
            if prompts.setdefault(prompt_key, text) != text:
                raise InputError(f"{path}: conversation {row.conv_id!r} differs from another model's "
                                 f"prompt for it; the models must answer the same test prompts")
        frames.append(pd.DataFrame({"model": model, "prompt_key": [f"{c}#{i}" for c, i in zip(table.conv_id, table.item)],
                                    "conv_id": table.conv_id, "reply": table.generation}))
    return pd.concat(frames, ignore_index=True), prompts


def choose_prompts(replies: pd.DataFrame, models: Sequence[str], n_items: int, seed: int,
                   paths: Mapping[str, str]) -> list[str]:
    """A seeded choice of `n_items` prompts that every model answered."""
    answered = [set(replies.loc[replies["model"] == model, "prompt_key"]) for model in models]
    common = sorted(set.intersection(*answered))
    if len(common) < n_items:
        counts = ", ".join(f"{model} {len(keys)}" for model, keys in zip(models, answered))
        raise InputError(f"config key empo.human_eval.n_items: {n_items} prompts asked for, but only "
                         f"{len(common)} are answered by every model ({counts}; "
                         f"{', '.join(paths.values())}); lower n_items or generate more")
    chosen = stats._rng(seed, "human_eval.prompts").choice(len(common), size=n_items, replace=False)
    return [common[i] for i in sorted(chosen)]


def assign(n_positions: int, annotators: Sequence[str], overlap: int) -> list[list[str]]:
    """Annotators for each position of the item order: position p goes to the `overlap`
    annotators starting at p * overlap (cyclically). Loads differ by at most one item, and
    consecutive positions get disjoint annotators while overlap x (positions per prompt) <=
    annotators: so an annotator sees one reply per prompt whenever there are enough of them."""
    count = len(annotators)
    return [[annotators[(position * overlap + j) % count] for j in range(overlap)]
            for position in range(n_positions)]


def build_evaluation_set(paths: Mapping[str, str], settings: Mapping, seed: int
                         ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(items: item_id, prompt_id, conv_id, prompt, reply; key: item_id, model;
    assignments: item_id, annotator, position) from the generation files of settings['models']."""
    models = list(settings["models"])
    replies, prompts = read_model_replies({model: paths[model] for model in models})
    chosen = choose_prompts(replies, models, settings["n_items"], seed, paths)
    rng = stats._rng(seed, "human_eval.items")
    # Prompts in a seeded order, the models' replies in a seeded order within each prompt.
    rows = []
    for prompt_number, prompt_index in enumerate(rng.permutation(len(chosen)), start=1):
        prompt_key = chosen[int(prompt_index)]
        for model_index in rng.permutation(len(models)):
            model = models[int(model_index)]
            reply = replies[(replies["model"] == model) & (replies["prompt_key"] == prompt_key)].iloc[0]
            rows.append({"prompt_id": f"p{prompt_number:04d}", "conv_id": reply["conv_id"],
                         "prompt": prompts[prompt_key], "reply": reply["reply"], "model": model})
    frame = pd.DataFrame(rows)
    # Item ids from an independent shuffle: neither their order nor their number tells the model.
    frame["item_id"] = [f"item{number + 1:04d}" for number in np.argsort(rng.permutation(len(frame)))]
    owners = assign(len(frame), settings["annotators"], settings["overlap"])
    assignments = pd.DataFrame([{"item_id": item, "annotator": annotator}
                                for item, names in zip(frame["item_id"], owners) for annotator in names])
    # Each annotator's own seeded order (the sheet order), so neighbours on a sheet are unrelated.
    assignments["position"] = 0
    for annotator, part in assignments.groupby("annotator"):
        order = stats._rng(seed, "human_eval.sheet", annotator).permutation(len(part))
        assignments.loc[part.index, "position"] = order + 1
    assignments = assignments.sort_values(["annotator", "position"]).reset_index(drop=True)
    items = frame.sort_values("item_id")[["item_id", "prompt_id", "conv_id", "prompt", "reply"]].reset_index(drop=True)
    key = frame.sort_values("item_id")[["item_id", "model"]].reset_index(drop=True)
    return items, key, assignments


def sheet_table(items: pd.DataFrame, assignments: pd.DataFrame, annotator: str, dimensions: Mapping) -> pd.DataFrame:
    """The CSV sheet: the annotator's items in sheet order, one empty column per dimension."""
    mine = assignments[assignments["annotator"] == annotator].sort_values("position")
    table = mine[["item_id"]].merge(items[["item_id", "prompt", "reply"]], on="item_id", how="left")
    table.insert(1, "annotator", annotator)
    for name in dimensions:
        table[name] = ""
    return table


def _page_items(table: pd.DataFrame) -> list[dict]:
    items = []
    for row in table.itertuples():
        turns = []
        for line in str(row.prompt).split("\n"):
            role, _, text = line.partition(": ")
            if text and role in ROLES.values():
                turns.append({"role": role, "text": text})
            elif turns:  # a line break inside a turn
                turns[-1]["text"] += "\n" + line
            else:
                turns.append({"role": "", "text": line})
        items.append({"item_id": row.item_id, "turns": turns, "reply": row.reply})
    return items


def sheet_html(table: pd.DataFrame, annotator: str, dimensions: Mapping, title: str = "Rating empathic replies") -> str:
    """The self-contained rating page of one annotator: the template with the sheet's data inlined
    as JSON (every '<' escaped, so no text can close the script element)."""
    data = {"annotator": annotator, "title": title,
            "dimensions": [{"name": name, **entry} for name, entry in dimensions.items()],
            "items": _page_items(table)}
    payload = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
    page = TEMPLATE.read_text(encoding="utf-8")
    return page.replace("__TITLE__", _escape(f"{title}: {annotator}")).replace("__SHEET_DATA__", payload)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_sheets(directory: str | Path, items: pd.DataFrame, assignments: pd.DataFrame, annotators: Sequence[str],
                 dimensions: Mapping) -> dict[str, int]:
    """sheets/ANNOTATOR.csv and .html for every annotator; returns items per annotator."""
    directory = Path(directory)
    counts = {}
    for annotator in annotators:
        table = sheet_table(items, assignments, annotator, dimensions)
        write_csv(directory / f"{annotator}.csv", table)
        write_text(directory / f"{annotator}.html", sheet_html(table, annotator, dimensions))
        counts[annotator] = len(table)
    return counts


def coverage(assignments: pd.DataFrame) -> dict:
    """How the items were shared out (logged, and kept in the results)."""
    per_item = assignments.groupby("item_id").size()
    per_annotator = assignments.groupby("annotator").size()
    return {"items": int(per_item.size), "assignments": int(len(assignments)),
            "annotators_per_item": {"min": int(per_item.min()), "max": int(per_item.max())},
            "items_per_annotator": {"min": int(per_annotator.min()), "max": int(per_annotator.max())}}
