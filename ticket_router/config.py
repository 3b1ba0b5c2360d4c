"""`TrainConfig`: every key of `ticket-router train`, typed, shared by the YAML config and the CLI flags.

A YAML file holds the same keys as the flags (underscores or dashes); flags given on the command line override
it. Unknown YAML keys are refused with the closest known key: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError, did_you_mean
from .lexical import check_weight
from .modeling import Pooling
from .tasks import parse_task_mapping


@dataclass
class TrainConfig:
    train: str | None = field(default=None, metadata={"help": "Training file (.csv, .tsv, .jsonl, .parquet)."})
    validation: str | None = field(default=None, metadata={"help": "Validation file: best model + early stopping."})
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
    head_learning_rate: float | None = field(default=None, metadata={"help": "Heads' learning rate (default: learning_rate)."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases, norms, loss weights)."})
    warmup_ratio: float = field(default=0.1, metadata={"help": "Share of steps of linear learning-rate warm-up."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Batches per optimizer step."})
    loss_weighting: str = field(default="uncertainty", metadata={"help": "equal, fixed, uncertainty, dwa, gradnorm or famo."})
    task_weights: dict[str, float] = field(default_factory=dict, metadata={"help": "NAME=WEIGHT for loss_weighting=fixed, repeatable."})
    uncertainty_warmup_steps: int = field(default=0, metadata={"help": "Equal weights for N steps before learned ones."})
    sampling: str = field(default="proportional", metadata={"help": "proportional (every task in every batch) or random."})
    sampling_temperature: float = field(default=1.0, metadata={"help": "1: ∝ label counts; large: uniform over tasks."})
    class_weights: bool = field(default=False, metadata={"help": "Inverse-frequency class weights per task."})
    group_by_length: bool = field(default=False, metadata={"help": "Batch tickets of similar length (less padding, faster)."})
    pooling: str = field(default="cls", metadata={"help": "cls (first token), mean, or attention (a learned token weighting per task)."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout before the heads."})
    freeze_encoder_steps: int = field(default=0, metadata={"help": "Train only the heads for the first N steps."})
    # --- multi-task balancing (issue 12): RouterTrainingArguments' fields of the same names ---
    gradient_surgery: str = field(default="none", metadata={"help": "none or pcgrad (Yu et al. 2020), with any loss_weighting."})
    gradient_conflict_steps: int = field(default=50, metadata={"help": "Log per-task encoder gradient norms and cosines every N steps (0: off)."})
    uncertainty_weight_floor: float = field(default=0.0, metadata={"help": "Lowest weight uncertainty weighting may give a task (0: none)."})
    dwa_temperature: float = field(default=2.0, metadata={"help": "DWA softmax temperature."})
    dwa_window_steps: int = field(default=25, metadata={"help": "DWA compares the mean losses of windows of N steps."})
    gradnorm_alpha: float = field(default=1.5, metadata={"help": "GradNorm asymmetry (how hard slow tasks are pushed up)."})
    balancer_learning_rate: float = field(default=0.025, metadata={"help": "Learning rate of the GradNorm / FAMO task weights."})
    task_specific_layers: int = field(default=0, metadata={"help": "Partial sharing: each task gets its own copy of the encoder's top K layers (0: all shared)."})
    precision: str = field(default="auto", metadata={"help": "auto (bf16/fp16 on GPU, fp32 on CPU), bf16, fp16 or fp32."})
    eval_steps: int | None = field(default=None, metadata={"help": "Evaluate every N steps (default: every epoch)."})
    early_stopping_patience: int | None = field(default=None, metadata={"help": "Stop after N evaluations without a better mean macro-F1."})
    logging_steps: int = field(default=10, metadata={"help": "Log losses and task weights every N steps."})
    lexical_weight: float = field(default=0.5, metadata={"help": "Fuse each head with a TF-IDF n-gram logistic regression: this share of the probabilities (0: encoder heads alone)."})
    drop_partial_rows: bool = field(default=False, metadata={"help": "Drop rows missing any task label (ablation; the default masks the loss instead)."})
    strict: bool = field(default=False, metadata={"help": "Refuse validation labels the training data does not have."})
    keep_checkpoints: bool = field(default=False, metadata={"help": "Keep OUTPUT/checkpoints after training."})
    resume: bool = field(default=False, metadata={"help": "Resume from the last checkpoint in OUTPUT/checkpoints."})

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def validate(self) -> None:
        """Check what argparse/YAML cannot: required keys and ranges. Messages name the key and value."""
        for key in ("train", "output"):
            if not getattr(self, key):
                raise InputError(f"missing required setting {key!r} (--{key.replace('_', '-')} or in the config file)")
        if not self.tasks:
            raise InputError("no task given: add --task NAME=COLUMN (or a 'tasks' mapping in the config file)")
        for key in ("batch_size", "eval_batch_size", "max_length", "gradient_accumulation_steps", "logging_steps"):
            if getattr(self, key) < 1:
                raise InputError(f"{key}={getattr(self, key)!r} must be >= 1")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise InputError(f"epochs={self.epochs!r} must be > 0 (or give max_steps)")
        if not 0 <= self.dropout < 1:
            raise InputError(f"dropout={self.dropout!r} must be in [0, 1)")
        check_weight(self.lexical_weight)
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


def _pairs(value: Any, key: str) -> dict[str, str]:
    """Accept a mapping, or a list of NAME=VALUE strings (the CLI form)."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    result = {}
    for item in _as_list(value) if isinstance(value, str) else value:
        name, sep, rest = str(item).partition("=")
        if not sep or not name.strip() or not rest.strip():
            raise InputError(f"{key}: {item!r} is not NAME=VALUE")
        if name.strip() in result:
            raise InputError(f"{key}: {name.strip()!r} is given twice")
        result[name.strip()] = rest.strip()
    return result


def normalise(key: str, value: Any) -> Any:
    """Coerce one raw value (YAML or CLI) to the field's type."""
    if value is None:
        return None
    if key == "text_columns":
        return _as_list(value)
    if key == "tasks":
        return parse_task_mapping(value if isinstance(value, (dict, list)) else _as_list(value))
    if key == "task_weights":
        try:
            return {name: float(weight) for name, weight in _pairs(value, key).items()}
        except ValueError as error:
            raise InputError(f"task_weights: {error}") from None
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
