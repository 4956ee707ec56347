"""The Markdown table every generated metrics page uses (docs/metrics.md, docs/kubernetes.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple


class MetricRow(NamedTuple):
    name: str  # as exposed, e.g. with the `_total` suffix of a counter
    kind: str
    unit: str
    labels: Sequence[str]
    meaning: str


def metrics_table(rows: Iterable[MetricRow]) -> list[str]:
    """The table's lines: header, separator, one line per metric."""
    lines = ["| metric | type | unit | labels | meaning |", "|---|---|---|---|---|"]
    for row in rows:
        labels = ", ".join(f"`{label}`" for label in row.labels) or "-"
        meaning = row.meaning.replace("|", "/")  # a bare | would end the cell
        lines.append(f"| `{row.name}` | {row.kind} | {row.unit} | {labels} | {meaning} |")
    return lines
