"""Reading ticket tables (CSV, JSONL, Parquet through `datasets`), joining text columns, encoding labels.

CSV cells are read as strings with pandas' NA guessing off, so a ticket body reading "N/A" or a queue called
"NA" stays text; only a blank cell means "not labeled". Typed formats (JSONL, Parquet) keep their types and
`canonical_label` reconciles them with CSV.

Text files are checked whole before `datasets` reads them: a byte that is not valid in the file's encoding, or
a CSV line with more or fewer fields than the header (which pandas would shift into the wrong columns), is
refused with one line naming the file, the line and the byte.
"""

from __future__ import annotations

import codecs
import csv
import logging
import math
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError, first_line
from .tasks import IGNORE_INDEX, UNSEEN_INDEX, TaskSpec, canonical_label, check_columns

if TYPE_CHECKING:  # `datasets` costs seconds to import: routing lines from stdin never needs it
    import datasets

logger = logging.getLogger(__name__)

_FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
TEXT_SEPARATOR = "\n"
DEFAULT_ENCODING = "utf-8"


def _codec(encoding: str | None) -> str:
    """The codec to read with: UTF-8 files may start with a byte-order mark, which is dropped."""
    try:
        name = codecs.lookup(encoding or DEFAULT_ENCODING).name
    except LookupError:
        raise InputError(f"--encoding {encoding}: unknown encoding (e.g. utf-8, latin-1, cp1252)") from None
    return "utf-8-sig" if name == "utf-8" else name


def decode_text(data: bytes, source: str, encoding: str | None = None) -> str:
    """Decode a whole file, or refuse it naming the first bad byte, its offset and line."""
    codec = _codec(encoding)
    try:
        return data.decode(codec)
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise InputError(
            f"{source}: byte 0x{data[error.start]:02x} at offset {error.start} (line {line}) is not valid "
            f"{(encoding or DEFAULT_ENCODING)}; give the file's encoding, e.g. --encoding latin-1 or cp1252"
        ) from None


def read_lines(path: str | Path, encoding: str | None = None) -> list[str]:
    """Every line of a text file (blank ones included: callers count what they skip)."""
    if not Path(path).is_file():
        raise InputError(f"{path}: no such file")
    return decode_text(Path(path).read_bytes(), str(path), encoding).splitlines()


def _check_csv(path: Path, delimiter: str, encoding: str | None) -> list[str]:
    """Read a CSV once: its header, every line's field count and its encoding. Returns the header."""
    previous_limit = csv.field_size_limit(sys.maxsize)  # a 1 MB ticket is one field; restored below
    try:
        with path.open(newline="", encoding=_codec(encoding)) as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            header = next(reader, None)
            if not header:
                raise InputError(f"{path}: empty CSV file (no header row)")
            for row in reader:
                if row and len(row) != len(header):
                    raise InputError(
                        f"{path}: line {reader.line_num} has {len(row)} fields, the header has {len(header)}; "
                        f"a text holding {delimiter!r} must be quoted"
                    )
    except UnicodeDecodeError:
        decode_text(path.read_bytes(), str(path), encoding)  # raises, naming the byte
        raise
    finally:
        csv.field_size_limit(previous_limit)
    return header


def _table_kwargs(path: Path, builder: str, encoding: str | None) -> dict[str, Any]:
    """Check a text file whole and return the `load_dataset` arguments that read it as checked."""
    if builder == "json":
        if not decode_text(path.read_bytes(), str(path), encoding).strip():
            raise InputError(f"{path}: empty file (no data rows)")
        return {"encoding": _codec(encoding).replace("utf-8-sig", "utf-8")}
    if builder != "csv":
        return {}
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    header = _check_csv(path, delimiter, encoding)
    duplicated = [c for c, n in Counter(header).items() if n > 1]
    if duplicated:
        raise InputError(f"{path}: column {duplicated[0]!r} appears twice in the header")
    import datasets

    features = datasets.Features({name: datasets.Value("string") for name in header})
    return {"features": features, "keep_default_na": False, "sep": delimiter, "encoding": _codec(encoding)}


def read_table(path: str | Path, encoding: str | None = None) -> datasets.Dataset:
    """Load a CSV/TSV, JSON Lines or Parquet file as a `datasets.Dataset` (format chosen by extension).

    `encoding` applies to the text formats (default UTF-8, with or without a byte-order mark).
    """
    path = Path(path)
    builder = _FORMATS.get(path.suffix.lower())
    if builder is None:
        raise InputError(f"{path}: unknown file type {path.suffix!r}; use .csv, .tsv, .jsonl or .parquet")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    kwargs = _table_kwargs(path, builder, encoding)
    import datasets

    try:
        table = datasets.load_dataset(builder, data_files=str(path.resolve()), split="train", **kwargs)
    except Exception as error:  # datasets wraps parser errors in several types; report them as one line
        if "corresponds to no data" in str(error):
            raise InputError(f"{path}: no data rows") from error
        raise InputError(f"{path}: could not be read as {builder}: {first_line(error)}") from error
    if len(table) == 0:
        raise InputError(f"{path}: no data rows")
    return table


def _cell_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def join_text_columns(table: datasets.Dataset, text_columns: Sequence[str], source: str,
                      warn_blank: bool = True) -> list[str]:
    """Join the text columns of every row (e.g. subject + body) with a newline, skipping blank parts.

    Rows with no text are kept (and, with `warn_blank`, counted in one warning); `Router.route` warns itself.
    """
    if not text_columns:
        raise InputError(f"{source}: no text column given (e.g. --text-columns subject,body)")
    check_columns(table.column_names, list(text_columns), source, "text")
    columns = [table[name] for name in text_columns]
    texts = [TEXT_SEPARATOR.join(p for p in map(_cell_text, parts) if p) for parts in zip(*columns)]
    empty = [i for i, text in enumerate(texts) if not text]
    if empty and warn_blank:
        logger.warning(
            "%s: %d row(s) have no text in %s (first: row %d); they are kept as empty tickets",
            source, len(empty), ", ".join(text_columns), empty[0] + 1,
        )
    return texts


def encode_labels(
    table: datasets.Dataset, specs: Sequence[TaskSpec], source: str, strict: bool = False
) -> np.ndarray:
    """Encode gold labels as an (n_rows, n_tasks) int matrix: class id, IGNORE_INDEX (blank) or UNSEEN_INDEX.

    A label the model never saw is scored as an error rather than dropped; it is logged per task and value, or,
    with `strict`, refused.
    """
    encoded = np.full((len(table), len(specs)), IGNORE_INDEX, dtype=np.int64)
    for t, spec in enumerate(specs):
        check_columns(table.column_names, [spec.column], source, f"label (task {spec.name!r})")
        label_to_id = spec.label_to_id()
        unseen: Counter[str] = Counter()
        first_row: dict[str, int] = {}
        for row, value in enumerate(table[spec.column]):
            label = canonical_label(value)
            if label is None:
                continue
            if label in label_to_id:
                encoded[row, t] = label_to_id[label]
            else:
                encoded[row, t] = UNSEEN_INDEX
                unseen[label] += 1
                first_row.setdefault(label, row + 1)
        for label, count in unseen.most_common():
            message = (
                f"{source}: column {spec.column!r} (task {spec.name!r}) has label {label!r} the model never saw "
                f"({count} row(s), first row {first_row[label]})"
            )
            if strict:
                raise InputError(message + "; known labels: " + ", ".join(spec.labels))
            logger.warning("%s; scored as errors", message)
    return encoded


def build_task_specs(table: datasets.Dataset, mapping: dict[str, str], source: str) -> list[TaskSpec]:
    """Build one TaskSpec per NAME=COLUMN item, label maps from the training table."""
    check_columns(table.column_names, list(mapping.values()), source, "label")
    return [TaskSpec.from_values(name, column, table[column], source) for name, column in mapping.items()]


def tokenize_dataset(
    texts: Sequence[str], labels: np.ndarray | None, tokenizer: Any, max_length: int
) -> datasets.Dataset:
    """An in-memory tokenized dataset holding only model inputs and, when given, the `labels` matrix."""
    data: dict[str, list] = {"text": list(texts)}
    if labels is not None:
        data["labels"] = labels.tolist()
    input_names = list(tokenizer.model_input_names)

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(batch["text"], truncation=True, max_length=max_length)
        return {name: encoded[name] for name in input_names if name in encoded}

    import datasets

    dataset = datasets.Dataset.from_dict(data)
    return dataset.map(tokenize, batched=True, remove_columns=["text"], desc="Tokenizing")


def label_counts(labels: np.ndarray, specs: Sequence[TaskSpec]) -> dict[str, np.ndarray]:
    """Per task, the number of training rows of each class (for class weights and logging)."""
    counts = {}
    for t, spec in enumerate(specs):
        column = labels[:, t]
        counts[spec.name] = np.bincount(column[column >= 0], minlength=spec.num_labels)
    return counts
