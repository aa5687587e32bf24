"""EmPO preference runs as the authors swept them: shared defaults, runs that state only what
differs, and grids that expand into one run per point.

Config (`empo.preference`):

    defaults: {loss_type: sigmoid, beta: 0.1, learning_rate: 5.0e-5, ...}   # every run starts here
    runs:
      dpo: {}                                   # the defaults as they are
      dpo_lr: {learning_rate: 1.0e-6}           # one key differs
      sweep: {beta: {grid: [0.052, 0.051]}}     # two runs: sweep_beta0.052, sweep_beta0.051

A grid is `{grid: [v1, v2, ...]}` on any run key; several gridded keys give their product. Each
point is named `NAME_KEYvalue` (gridded keys in name order), so names are deterministic and say
what the run is (the EmPO sweeps' released runs were told apart only by a counter suffix).
A `{grid: ...}` value can never be a real setting (no run key takes a mapping with that one key),
so a grid is never confused with a value, e.g. a list of loss types.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

GRID = "grid"


# Keys a run may no longer set: the preference stage continues the SFT adapter on the SFT's
# base weights, so their values come from empo.sft.
INHERITED_FROM_SFT = {
    "lora": "a preference run continues training the SFT adapter, so its LoRA shape is empo.sft.lora; "
            "remove this key",
}


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def is_grid(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {GRID}


def format_value(value: Any) -> str:
    """A grid value as it appears in a run name: 0.052 -> 0.052, 1e-06 -> 1e-06, [a, b] -> a+b."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (list, tuple)):
        text = "+".join(format_value(item) for item in value)
    else:
        text = str(value)
    return _UNSAFE.sub("-", text)


def expand_run(name: str, overrides: dict) -> dict[str, dict]:
    """{run name: its overrides} for one configured run: itself, or one entry per grid point."""
    overrides = dict(overrides or {})
    gridded = sorted(key for key, value in overrides.items() if is_grid(value))
    if not gridded:
        return {name: overrides}
    for key in gridded:
        values = overrides[key][GRID]
        if not isinstance(values, list) or not values:
            raise ValueError(f"config key empo.preference.runs.{name}.{key}.grid: a non-empty list of values")
    points = {}
    for combination in itertools.product(*(overrides[key][GRID] for key in gridded)):
        point = dict(overrides, **dict(zip(gridded, combination)))
        point_name = name + "".join(f"_{key}{format_value(value)}" for key, value in zip(gridded, combination))
        if point_name in points:
            raise ValueError(f"config key empo.preference.runs.{name}: grid values that print alike give the run "
                             f"name {point_name!r} twice")
        points[point_name] = point
    return points


def resolve_runs(preference: dict) -> dict[str, dict]:
    """{run name: full settings} in config order: defaults updated by each run's keys, grids
    expanded. Raises ValueError naming the key for a name clash or a grid without values."""
    defaults = dict(preference.get("defaults") or {})
    resolved: dict[str, dict] = {}
    for name, overrides in (preference.get("runs") or {}).items():
        for point_name, point in expand_run(name, overrides).items():
            if point_name in resolved:
                raise ValueError(f"config key empo.preference.runs.{name}: the run name {point_name!r} is "
                                 f"produced twice (rename the run or its grid)")
            resolved[point_name] = {**defaults, **point}
    return resolved


def run_problems(preference: dict) -> list[str]:
    """Keys a run (or the defaults) sets that now come from empo.sft, as config-key messages."""
    problems = []
    sections = [("defaults", preference.get("defaults") or {})]
    sections += [(f"runs.{name}", run or {}) for name, run in (preference.get("runs") or {}).items()]
    for where, section in sections:
        for key, why in INHERITED_FROM_SFT.items():
            if key in section:
                problems.append(f"config key empo.preference.{where}.{key}: {why}")
    return problems
