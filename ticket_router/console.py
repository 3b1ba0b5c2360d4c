"""What the CLI prints for a person: the end-of-training table and one line per routed ticket.

Machines read metrics.json and JSON lines; these are for a terminal, so they are short and aligned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

TEXT_CHARS = 60


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths)))
            .rstrip() for row in rows]


def training_table(summary: dict[str, Any], output: str) -> str:
    """Per head: the encoder's, the n-gram heads' and the fused (routed) macro-F1 on the validation file."""
    lines = [f"Router saved to {output} ({summary.get('global_steps')} steps, {summary.get('train_runtime_s')} s)"]
    if "tasks" not in summary:
        return "\n".join(lines + ["No validation file: no scores (give --validation to score the saved router)."])
    parts = [("encoder", summary.get("encoder_only")), ("n-gram", summary.get("lexical_only")), ("fused", summary)]
    parts = [(name, part) for name, part in parts if part is not None]
    if len(parts) == 1:
        parts = [("macro-F1", summary)]
    rows = [["head", *(name for name, _ in parts), "n"]]
    for task, scores in summary["tasks"].items():
        cells = [_score(part["tasks"].get(task, {}).get("macro_f1")) for _, part in parts]
        rows.append([task, *cells, str(scores["n"])])
    rows.append(["mean", *(_score(part.get("mean_macro_f1")) for _, part in parts), ""])
    lines += ["Validation macro-F1:", *("  " + line for line in _table(rows))]
    return "\n".join(lines + [f"All figures: {output}/metrics.json"])


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS - 1] + "…"


def prediction_lines(records: Sequence[dict], texts: Sequence[str], ids: Sequence | None) -> list[str]:
    """One aligned line per ticket: its id (or number), each task's label and confidence, the overall route where
    the record has one (auto / review), the ticket's start."""
    rows = []
    for i, (record, text) in enumerate(zip(records, texts)):
        heads = [f"{task}={d['label']} ({d['confidence']:.2f})" for task, d in record.items() if isinstance(d, dict)]
        routes = [f"-> {value}" for value in record.values() if value in ("auto", "review")]
        rows.append([str(ids[i]) if ids is not None else f"#{i + 1}", *heads, *routes, _shorten(text)])
    if not rows:
        return []
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows]
