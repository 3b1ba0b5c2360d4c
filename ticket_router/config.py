"""`TrainConfig`: every key of `ticket-router train`, typed, shared by the YAML config and the CLI flags.

A YAML file holds the same keys as the flags (underscores or dashes); flags given on the command line override
it. Unknown YAML keys are refused with the closest known key: a typo must not silently fall back to a default.
The multi-task knobs are inherited from `settings.MultiTaskKnobs` (shared with `RouterTrainingArguments`); the
keys below are the data, model and budget ones. `training.training_arguments` derives the Trainer's arguments
from this record: the knobs by name, the few renamed keys through `TRAINER_KEYS`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError, did_you_mean
from .settings import MultiTaskKnobs, check_at_least
from .tasks import parse_task_mapping

# TrainConfig key -> TrainingArguments key, for the keys whose names differ (shorter for YAML and flags), then
# the keys both use as they are. The multi-task knobs (settings.KNOBS) pass by name.
TRAINER_KEYS = {
    "epochs": "num_train_epochs", "batch_size": "per_device_train_batch_size",
    "eval_batch_size": "per_device_eval_batch_size", "warmup_ratio": "warmup_steps",  # < 1: a share of the steps
    **{key: key for key in ("max_steps", "gradient_accumulation_steps", "learning_rate", "weight_decay", "seed",
                            "eval_steps", "logging_steps")},
}


@dataclass
class TrainConfig(MultiTaskKnobs):
    train: str | None = field(default=None, metadata={"help": "Training file (.csv, .tsv, .jsonl, .parquet)."})
    validation: str | None = field(default=None, metadata={"help": "Validation file: best model + early stopping."})
    encoding: str = field(default="utf-8", metadata={"help": "Text encoding of the data files (e.g. latin-1, cp1252)."})
    text_columns: list[str] = field(default_factory=lambda: ["text"], metadata={"help": "Comma-separated text columns, joined in order (e.g. subject,body)."})
    tasks: dict[str, str] = field(default_factory=dict, metadata={"help": "NAME=COLUMN, repeatable: one head per task."})
    output: str | None = field(default=None, metadata={"help": "Directory for the trained model."})
    backbone: str | None = field(default=None, metadata={"help": "Local dir or hub id of a BERT-family encoder (default: packaged all-MiniLM-L6-v2)."})
    epochs: float = field(default=3.0, metadata={"help": "Training epochs."})
    max_steps: int = field(default=-1, metadata={"help": "Stop after N optimizer steps (overrides epochs)."})
    batch_size: int = field(default=16, metadata={"help": "Training batch size per device."})
    eval_batch_size: int = field(default=64, metadata={"help": "Evaluation batch size per device."})
    max_length: int = field(default=128, metadata={"help": "Maximum tokens per ticket."})
    seed: int = field(default=42, metadata={"help": "Random seed (model init, sampling, dropout)."})
    learning_rate: float = field(default=5e-5, metadata={"help": "Encoder learning rate."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases, norms, loss weights)."})
    warmup_ratio: float = field(default=0.1, metadata={"help": "Share of steps of linear learning-rate warm-up."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Batches per optimizer step."})
    pooling: str = field(default="cls", metadata={"help": "cls (first token), mean, or attention (a learned token weighting per task)."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout before the heads."})
    task_specific_layers: int = field(default=0, metadata={"help": "Partial sharing: each task gets its own copy of the encoder's top K layers (0: all shared)."})
    eval_steps: int | None = field(default=None, metadata={"help": "Evaluate every N steps (default: every epoch)."})
    early_stopping_patience: int | None = field(default=None, metadata={"help": "Stop after N evaluations without a better mean macro-F1."})
    logging_steps: int = field(default=10, metadata={"help": "Log losses and task weights every N steps."})
    lexical_weight: float = field(default=0.5, metadata={"help": "Fuse each head with a TF-IDF n-gram logistic regression: this share of the probabilities (0: encoder heads alone)."})
    drop_partial_rows: bool = field(default=False, metadata={"help": "Drop rows missing any task label (ablation; the default masks the loss instead)."})
    # The auto/review routing policy fitted on the validation file after training (issue 13; policy.py).
    target_precision: float = field(default=0.9, metadata={"help": "Per head, the confidence threshold whose auto-routed validation tickets reach this precision; the rest go to review."})
    target_coverage: float | None = field(default=None, metadata={"help": "Instead of target_precision: the share of tickets each head routes automatically."})
    task_targets: dict[str, float] = field(default_factory=dict, metadata={"help": "NAME=PRECISION, repeatable: one head's own target precision."})
    consistency: bool = field(default=True, metadata={"help": "Send predicted label pairs of two heads never seen together in training to review."})
    precision_bound: str = field(default="wilson95", metadata={"help": "wilson95: a threshold meets its target when the Wilson 95% lower bound of the auto-routed validation tickets' precision does; point: when their precision does."})
    strict: bool = field(default=False, metadata={"help": "Refuse validation labels the training data does not have."})
    keep_checkpoints: bool = field(default=False, metadata={"help": "Keep OUTPUT/checkpoints after training."})
    resume: bool = field(default=False, metadata={"help": "Resume from the last checkpoint in OUTPUT/checkpoints."})

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def validate(self) -> None:
        """Every value checked, in one place with `check_knobs`: messages name the key and the value."""
        for key in ("train", "output"):
            if not getattr(self, key):
                raise InputError(f"missing required setting {key!r} (--{key.replace('_', '-')} or in the config file)")
        if not self.tasks:
            raise InputError("no task given: add --task NAME=COLUMN (or a 'tasks' mapping in the config file)")
        self.check_knobs()
        check_at_least(self, ("batch_size", "eval_batch_size", "max_length", "gradient_accumulation_steps",
                              "logging_steps", "eval_steps", "early_stopping_patience"), 1)
        check_at_least(self, ("learning_rate",), 0, strict=True)
        check_at_least(self, ("weight_decay", "warmup_ratio"), 0)
        if self.epochs <= 0 and self.max_steps <= 0:
            raise InputError(f"epochs={self.epochs!r} must be > 0 (or give max_steps)")
        if not 0 <= self.dropout < 1:
            raise InputError(f"dropout={self.dropout!r} must be in [0, 1)")
        from .lexical import check_weight  # imported here: `ticket-router --help` must not load torch
        from .modeling import Pooling
        from .policy import PolicyTargets

        check_weight(self.lexical_weight)
        PolicyTargets(self.target_precision, self.target_coverage, self.task_targets,
                      precision_bound=self.precision_bound).validate(list(self.tasks))
        if self.task_specific_layers < 0:
            raise InputError(f"task_specific_layers={self.task_specific_layers!r} must be >= 0")
        poolings = [p.value for p in Pooling]
        if self.pooling not in poolings:
            raise InputError(f"pooling={self.pooling!r} is not one of {', '.join(poolings)}"
                             f"{did_you_mean(str(self.pooling), poolings)}")


CONFIG_FIELDS = {f.name: f for f in fields(TrainConfig)}


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(v) for v in value]


def parse_number_pairs(value: Any, key: str) -> dict[str, float]:
    """NAME=NUMBER pairs: a mapping (YAML), a list of "NAME=NUMBER" strings (repeated flags) or one comma-separated
    string. The one parser of --task-target, --task-weight and task_targets/task_weights; a bad pair is refused
    in one line naming it and `key` (the flag or setting)."""
    if isinstance(value, dict):
        items = [(str(name), number, f"{name}: {number}") for name, number in value.items()]
    else:
        raw = _as_list(value) if isinstance(value, str) else [str(item) for item in value]
        items = [(*item.partition("=")[::2], item) for item in raw]
    result: dict[str, float] = {}
    for name, number, shown in items:
        name = name.strip()
        try:
            parsed = float(str(number).strip()) if name else None
        except ValueError:
            parsed = None
        if parsed is None or not math.isfinite(parsed):
            raise InputError(f"{key} {shown!r}: expected NAME=NUMBER, e.g. queue=0.95")
        if name in result:
            raise InputError(f"{key} {shown!r}: {name!r} is given twice")
        result[name] = parsed
    return result


def normalise(key: str, value: Any) -> Any:
    """Coerce one raw value (YAML or CLI) to the field's type."""
    if value is None:
        return None
    if key == "text_columns":
        return _as_list(value)
    if key == "tasks":
        return parse_task_mapping(value if isinstance(value, (dict, list)) else _as_list(value))
    if key in ("task_weights", "task_targets"):
        return parse_number_pairs(value, key)
    return value


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--config {path}: no such file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise InputError(f"--config {path}: not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise InputError(f"--config {path}: expected a mapping of settings, got {type(raw).__name__}")
    values = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in CONFIG_FIELDS:
            raise InputError(f"--config {path}: unknown setting {key!r}{did_you_mean(name, CONFIG_FIELDS)}")
        values[name] = normalise(name, value)
    # Relative data paths in a config file are relative to the working directory, like the flags.
    return values


def build_config(yaml_path: str | None, overrides: dict[str, Any]) -> TrainConfig:
    values = load_yaml_config(yaml_path) if yaml_path else {}
    values.update({k: normalise(k, v) for k, v in overrides.items() if v is not None})
    config = TrainConfig(**values)
    config.validate()
    return config
