"""A small Markdown table checker for the report tests."""

from __future__ import annotations

import re

_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def tables(text: str) -> list[list[str]]:
    """Every Markdown table in ``text``, as its lines."""
    found: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            found.append(current)
            current = []
    if current:
        found.append(current)
    return found


def columns(line: str) -> int:
    """How many cells a table row has (escaped pipes do not split cells)."""
    assert line.startswith("|") and line.endswith("|"), line
    return len(_CELL_SPLIT.split(line)) - 2


def assert_valid_tables(text: str) -> None:
    """Every table has a header, a rule, and rows of the header's column count."""
    for table in tables(text):
        assert len(table) >= 2, table
        assert re.fullmatch(r"\|(\s*:?-{3,}:?\s*\|)+", table[1]), table[1]
        width = columns(table[0])
        for line in table:
            assert columns(line) == width, (line, width)
