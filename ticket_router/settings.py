"""The multi-task knobs, declared once: `TrainConfig` (YAML keys and CLI flags) and `RouterTrainingArguments`
(the Trainer's arguments) both inherit `MultiTaskKnobs`, so a knob is one field here, with its help text, and one
line in `check_knobs`. Nothing here imports torch: `ticket-router --help` builds its flags from these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum

from .errors import InputError


class LossWeighting(str, Enum):
    EQUAL = "equal"
    FIXED = "fixed"
    UNCERTAINTY = "uncertainty"


class BatchSampling(str, Enum):
    PROPORTIONAL = "proportional"  # every batch holds every task, shares ∝ label counts^(1/T)
    RANDOM = "random"  # the Trainer's plain shuffled order


class Precision(str, Enum):
    AUTO = "auto"
    BF16 = "bf16"
    FP16 = "fp16"
    FP32 = "fp32"


def as_enum(enum_cls: type[Enum], value, name: str):
    """The enum member for `value`, or a one-line error naming the key, the value and the choices."""
    try:
        return enum_cls(value)
    except ValueError:
        options = ", ".join(repr(m.value) for m in enum_cls)
        raise InputError(f"{name}={value!r} is not valid; choose one of {options}") from None


def check_at_least(owner, names: tuple[str, ...], floor: float, strict: bool = False) -> None:
    """Refuse the first of `names` (attributes of `owner`) below `floor` (at or below, with `strict`)."""
    for name in names:
        value = getattr(owner, name)
        if value is not None and (value <= floor if strict else value < floor):
            raise InputError(f"{name}={value!r} must be {'>' if strict else '>='} {floor:g}")


@dataclass
class MultiTaskKnobs:
    loss_weighting: LossWeighting = field(
        default=LossWeighting.UNCERTAINTY, metadata={"help": "equal, fixed (task_weights) or uncertainty (learned)."})
    task_weights: dict[str, float] = field(
        default_factory=dict, metadata={"help": "NAME=WEIGHT for loss_weighting=fixed, repeatable (missing tasks: 1.0)."})
    uncertainty_warmup_steps: int = field(
        default=0, metadata={"help": "Equal weights for N steps before the learned uncertainty weights take over."})
    sampling: BatchSampling = field(
        default=BatchSampling.PROPORTIONAL, metadata={"help": "proportional (every task in every batch) or random."})
    sampling_temperature: float = field(
        default=1.0, metadata={"help": "T=1: task shares ∝ label counts; large T: uniform over tasks."})
    class_weights: bool = field(default=False, metadata={"help": "Inverse-frequency class weights in each task loss."})
    group_by_length: bool = field(
        default=False, metadata={"help": "Batch tickets of similar length together: less padding, faster."})
    freeze_encoder_steps: int = field(default=0, metadata={"help": "Train only the heads for the first N steps."})
    head_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the heads and loss weights (default: learning_rate)."})
    precision: Precision = field(
        default=Precision.AUTO, metadata={"help": "auto (bf16/fp16 on GPU, fp32 on CPU), bf16, fp16 or fp32."})

    def check_knobs(self) -> None:
        """Turn strings (YAML, flags) into enums and refuse bad values, naming the key and the value."""
        self.loss_weighting = as_enum(LossWeighting, self.loss_weighting, "loss_weighting")
        self.sampling = as_enum(BatchSampling, self.sampling, "sampling")
        self.precision = as_enum(Precision, self.precision, "precision")
        check_at_least(self, ("uncertainty_warmup_steps", "freeze_encoder_steps"), 0)
        check_at_least(self, ("sampling_temperature", "head_learning_rate"), 0, strict=True)
        for task, weight in (self.task_weights or {}).items():
            if weight < 0:
                raise InputError(f"task_weights[{task!r}]={weight!r} must be >= 0")


KNOBS = tuple(f.name for f in fields(MultiTaskKnobs))
