"""The model card (README.md) written into every distilled student folder.

A card records what a reader needs to trust the model: the teacher, the data and languages, the
training steps, and the figures measured at the end. ``facts`` lists (label, value) lines;
``tables`` maps a section title to rows (dicts with the same keys), rendered as Markdown tables.
"""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..paths import write_text_atomic

CARD_NAME = "README.md"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[Mapping]) -> str:
    """A Markdown table of dict rows; columns are the union of keys in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def render_card(
    title: str,
    facts: Iterable[tuple[str, object]],
    tables: Mapping[str, Sequence[Mapping]] | None = None,
    usage: str | None = None,
    command: str | None = None,
    intro: str = "Distilled with xlembed.",
) -> str:
    parts = [f"# {title}", "", intro, ""]
    parts += [f"- **{label}**: {_cell(value)}" for label, value in facts]
    if usage:
        parts += ["", "## Use", "", "```python", usage.strip(), "```"]
    for section, rows in (tables or {}).items():
        if rows:
            parts += ["", f"## {section}", "", markdown_table(rows)]
    if command:
        parts += ["", "## Reproduce", "", "```", command.strip(), "```"]
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    parts += ["", f"Written {stamp} on {platform.machine()} / Python {platform.python_version()}.", ""]
    return "\n".join(parts)


def write_model_card(folder: Path | str, title: str, facts, tables=None, usage=None, command=None,
                     intro: str = "Distilled with xlembed.") -> Path:
    """Render the card and write it atomically to ``folder/README.md``."""
    path = Path(folder) / CARD_NAME
    write_text_atomic(path, render_card(title, facts, tables, usage, command, intro))
    return path
