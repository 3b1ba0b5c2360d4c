"""Task specifications: which column feeds which head, and the label map of each head.

A `TaskSpec` is a typed record saved inside the model directory (in `config.json`), so a saved router knows,
without the training data, which column to read gold labels from and what each class id means. Labels are kept
as canonical strings (see `canonical_label`) so that `3`, `3.0` and `"3"` from CSV, JSONL or Parquet all meet.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import InputError, did_you_mean

logger = logging.getLogger(__name__)

# Label ids used in encoded label matrices.
IGNORE_INDEX = -100  # no label for this task on this row: the loss and the metrics leave it out
UNSEEN_INDEX = -1  # a label the model never saw: no loss (no class to train), but scored as an error

_INTEGRAL_FLOAT = re.compile(r"^[+-]?\d+\.0*$")


def canonical_label(value: Any) -> str | None:
    """Return the label as a canonical string, or None when the cell means "not labeled".

    Blank strings, None and NaN mean "not labeled". Integral floats become integers ("2.0" -> "2") because
    pandas writes integer columns with gaps as floats. Every other value is kept verbatim (stripped).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    text = str(value).strip()
    if not text:
        return None
    if _INTEGRAL_FLOAT.match(text):
        return str(int(float(text)))
    return text


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


@dataclass
class TaskSpec:
    """One routing head: its name, the data column holding its gold label, and its sorted label set."""

    name: str
    column: str
    labels: list[str] = field(default_factory=list)
    label_type: str = "str"  # "int" when every label is an integer: predictions are then written as ints

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def label_to_id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    def output_label(self, label: str) -> str | int:
        """The label as users gave it: ints stay ints in JSON output."""
        return int(label) if self.label_type == "int" else label

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TaskSpec":
        """Build from saved JSON; unknown keys (from a newer version) are ignored with a warning."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            logger.warning("Ignoring unknown task spec keys %s (saved by a newer ticket_router?)", unknown)
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_values(cls, name: str, column: str, values: list[Any], source: str) -> "TaskSpec":
        """Build the label map of a task from the raw training values of its column."""
        labels = {canonical_label(v) for v in values} - {None}
        if not labels:
            raise InputError(f"{source}: column {column!r} (task {name!r}) has no labeled row")
        if len(labels) < 2:
            raise InputError(
                f"{source}: column {column!r} (task {name!r}) has a single label {labels.pop()!r}; "
                "a classifier needs at least 2"
            )
        if all(_is_int(label) for label in labels):
            return cls(name, column, sorted(labels, key=int), "int")
        return cls(name, column, sorted(labels), "str")


def parse_task_mapping(items: list[str] | dict[str, str]) -> dict[str, str]:
    """Parse `NAME=COLUMN` items (or `NAME` alone, meaning the column of the same name) into an ordered dict."""
    if isinstance(items, dict):
        pairs = [(str(k), str(v)) for k, v in items.items()]
    else:
        pairs = []
        for item in items:
            name, sep, column = str(item).partition("=")
            name, column = name.strip(), (column.strip() if sep else name.strip())
            if not name or not column:
                raise InputError(f"--task {item!r}: expected NAME=COLUMN, e.g. --task urgency=priority")
            pairs.append((name, column))
    mapping: dict[str, str] = {}
    for name, column in pairs:
        if name in mapping:
            raise InputError(f"task {name!r} is given twice (columns {mapping[name]!r} and {column!r})")
        mapping[name] = column
    if not mapping:
        raise InputError("no task given: add at least one --task NAME=COLUMN")
    return mapping


def check_columns(available: list[str], wanted: list[str], source: str, what: str) -> None:
    """Raise an InputError naming the first missing column, what exists, and the closest match."""
    for column in wanted:
        if column not in available:
            raise InputError(
                f"{source}: no {what} column {column!r}{did_you_mean(column, available)}; "
                f"columns are {', '.join(map(repr, available))}"
            )
