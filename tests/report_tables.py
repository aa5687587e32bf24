"""Read the pipe tables of a Markdown report back into rows, so tests can check it cell by cell."""

from __future__ import annotations

import re

RULE = re.compile(r"^\|(\s*:?-+:?\s*\|)+$")


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def markdown_tables(text: str) -> list[list[dict[str, str]]]:
    """Every table in `text`, each a list of rows {column header: cell text}."""
    lines = text.splitlines()
    tables, i = [], 0
    while i < len(lines) - 1:
        if lines[i].startswith("|") and RULE.match(lines[i + 1].strip()):
            header = cells(lines[i])
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                row = cells(lines[i])
                assert len(row) == len(header), f"row with {len(row)} cells under {len(header)} columns: {lines[i]}"
                rows.append(dict(zip(header, row)))
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def table_with(text: str, *columns: str) -> list[dict[str, str]]:
    """The one table of `text` whose header has all of `columns`."""
    found = [rows for rows in markdown_tables(text) if rows and set(columns) <= set(rows[0])]
    assert len(found) == 1, f"{len(found)} tables with columns {columns}"
    return found[0]
