"""docs/fidelity.md against the configs: every row that names a config key must show the value the
resolved paper config and config.yaml really have, and a row marked `same` must show the authors'
value in the paper config. Reads whatever sections the file has (format: the header of each table);
the empathic-similarity section is required. Cheap: YAML and markdown only."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from conftest import REPO, merge_config

FIDELITY = REPO / "docs" / "fidelity.md"
COLUMNS = ["Setting", "Authors' value", "Source", "Config key", "Paper config", "Laptop config", "Status"]
# A section names its paper config on a line "Paper config: `configs/X.yaml`" (or in its heading);
# these are the fallbacks for the two papers.
PAPER_CONFIGS = {"Empathic similarity": "configs/similarity_llama3.yaml", "EmPO": "configs/empo_zephyr.yaml"}
REPOSITORIES = re.compile(r"\b[\w.-]+/[\w.-]+\b")
COMMIT = re.compile(r"@\s*`?([0-9a-f]{7,40})\b")
FILE = re.compile(r"`[^`]*[\w-]+\.[\w]+[^`]*`")
MISSING = object()


def split_cells(line: str) -> list[str]:
    # a `|` inside backticks is part of a value, not a column break
    cells, current, in_code = [], "", False
    for char in line.strip().strip("|"):
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append(current.strip())
            current = ""
        else:
            current += char
    cells.append(current.strip())
    return cells


def parse_sections(text: str) -> dict[str, dict]:
    """{section title: {"paper_config": path or None, "rows": [{column: cell}]}} for every `## ` section
    holding a table with exactly COLUMNS."""
    sections: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
            title = re.sub(r"\s*\(.*\)\s*$", "", heading).strip()
            current = sections.setdefault(title, {"paper_config": None, "rows": [], "header": None})
            named = re.search(r"paper config:\s*`?([\w./-]+\.yaml)", heading, re.I)
            if named:
                current["paper_config"] = named.group(1)
            continue
        if current is None:
            continue
        named = re.match(r"\s*Paper config:\s*`([\w./-]+\.yaml)`", line)
        if named and current["paper_config"] is None:
            current["paper_config"] = named.group(1)
        if line.lstrip().startswith("|"):
            cells = split_cells(line)
            if current["header"] is None:
                current["header"] = cells
            elif not all(re.fullmatch(r":?-+:?", c) for c in cells):
                current["rows"].append(dict(zip(current["header"], cells)))
    return {title: s for title, s in sections.items() if s["header"] is not None}


def first_value(cell: str):
    """The YAML flow value in a cell's first backticks (the rest of the cell is explanation)."""
    match = re.search(r"`([^`]*)`", cell)
    if not match:
        return MISSING
    return yaml.safe_load(match.group(1))


def lookup(config: dict, dotted: str):
    value = config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def resolved(paper_config: str | None) -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    if paper_config is None:
        return config
    return merge_config(copy.deepcopy(config), yaml.safe_load((REPO / paper_config).read_text()))


SECTIONS = parse_sections(FIDELITY.read_text()) if FIDELITY.exists() else {}


def test_the_table_exists_with_the_similarity_section():
    assert FIDELITY.exists(), "docs/fidelity.md is missing"
    assert "Empathic similarity" in SECTIONS, f"no '## Empathic similarity' table; sections: {sorted(SECTIONS)}"
    for title, section in SECTIONS.items():
        assert section["header"] == COLUMNS, f"{title}: columns {section['header']} != {COLUMNS}"
        assert section["rows"], f"{title}: no rows"


@pytest.mark.parametrize("title", sorted(SECTIONS))
def test_rows_match_the_resolved_configs(title):
    section = SECTIONS[title]
    paper_path = section["paper_config"] or PAPER_CONFIGS.get(title)
    assert paper_path and (REPO / paper_path).exists(), f"{title}: no paper config named ({paper_path})"
    paper, laptop = resolved(paper_path), resolved(None)
    problems = []
    for row in section["rows"]:
        name = row["Setting"]
        source = row["Source"]
        if not (REPOSITORIES.search(source) and FILE.search(source) and COMMIT.search(source)):
            problems.append(f"{name}: Source must name a repository, a file in backticks and a commit (@ abc1234)")
        status = row["Status"]
        if not (status == "same" or status.startswith("deviation:")):
            problems.append(f"{name}: Status {status!r} is neither 'same' nor 'deviation: why'")
        key = row["Config key"].strip("`")
        if key == "-":
            continue
        for column, config in (("Paper config", paper), ("Laptop config", laptop)):
            shown, actual = first_value(row[column]), lookup(config, key)
            if actual is MISSING and row[column].strip() == "-":
                continue  # the key is absent from this config on purpose (the row says why)
            if actual is MISSING:
                problems.append(f"{name}: {key} is not in the resolved {column.lower()}")
            elif shown is MISSING:
                problems.append(f"{name}: {column} shows no value in backticks")
            elif shown != actual:
                problems.append(f"{name}: {column} says {shown!r}, the resolved config has {key} = {actual!r}")
        if status == "same":
            authors, shown = first_value(row["Authors' value"]), first_value(row["Paper config"])
            if authors is MISSING or authors != shown:
                problems.append(f"{name}: marked same, but the authors' value "
                                f"{row['Authors' + chr(39) + ' value']!r} differs from the paper config {shown!r}")
    assert not problems, f"docs/fidelity.md, section {title}:\n" + "\n".join(problems)


def test_parser_catches_a_stale_row(tmp_path):
    """The checks above can fail: a 'same' row whose paper value drifted, and a wrong laptop value."""
    text = "\n".join([
        "## Empathic similarity", "",
        "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS),
        "| LoRA rank | `32` | yuxiaw/Empathic-Similarity `scripts/sft_llama3.sh` @ 6ea161a | "
        "`similarity.llm.lora.r` | `64` | `999` | same |",
    ])
    section = parse_sections(text)["Empathic similarity"]
    row = section["rows"][0]
    paper = resolved("configs/similarity_llama3.yaml")
    assert first_value(row["Paper config"]) == lookup(paper, "similarity.llm.lora.r") == 64
    assert first_value(row["Authors' value"]) != first_value(row["Paper config"])
    assert first_value(row["Laptop config"]) != lookup(resolved(None), "similarity.llm.lora.r")
