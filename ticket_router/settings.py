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
    DWA = "dwa"  # Liu et al. 2019 (balancing.py)
    GRADNORM = "gradnorm"  # Chen et al. 2018
    FAMO = "famo"  # Liu et al. 2023


class GradientSurgery(str, Enum):
    NONE = "none"
    PCGRAD = "pcgrad"  # Yu et al. 2020, on the encoder's output, with any weighting


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
        default=LossWeighting.UNCERTAINTY,
        metadata={"help": "equal, fixed (task_weights), uncertainty (learned), dwa, gradnorm or famo (balancing.py)."})
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
    # Multi-task balancing (balancing.py; BENCHMARKS.md "Multi-task balancing").
    gradient_surgery: GradientSurgery = field(
        default=GradientSurgery.NONE, metadata={"help": "none or pcgrad (Yu et al. 2020), with any loss_weighting."})
    gradient_conflict_steps: int = field(
        default=50, metadata={"help": "Log per-task encoder gradient norms and cosines every N steps (0: off)."})
    uncertainty_weight_floor: float = field(
        default=0.0, metadata={"help": "Lowest weight learned uncertainty weighting may give a task (0: none, < 1)."})
    dwa_temperature: float = field(default=2.0, metadata={"help": "DWA softmax temperature."})
    dwa_window_steps: int = field(default=25, metadata={"help": "DWA compares the mean losses of windows of N steps."})
    gradnorm_alpha: float = field(
        default=1.5, metadata={"help": "GradNorm asymmetry: how hard slow tasks are pushed up."})
    balancer_learning_rate: float = field(
        default=0.025, metadata={"help": "Learning rate of the GradNorm / FAMO task weights."})

    def check_knobs(self) -> None:
        """Turn strings (YAML, flags) into enums and refuse bad values, naming the key and the value."""
        self.loss_weighting = as_enum(LossWeighting, self.loss_weighting, "loss_weighting")
        self.sampling = as_enum(BatchSampling, self.sampling, "sampling")
        self.precision = as_enum(Precision, self.precision, "precision")
        self.gradient_surgery = as_enum(GradientSurgery, self.gradient_surgery, "gradient_surgery")
        check_at_least(self, ("uncertainty_warmup_steps", "freeze_encoder_steps", "gradient_conflict_steps",
                              "uncertainty_weight_floor", "gradnorm_alpha"), 0)
        check_at_least(self, ("sampling_temperature", "head_learning_rate", "dwa_temperature", "dwa_window_steps",
                              "balancer_learning_rate"), 0, strict=True)
        if self.uncertainty_weight_floor >= 1:
            raise InputError(f"uncertainty_weight_floor={self.uncertainty_weight_floor!r} must be < 1")
        for task, weight in (self.task_weights or {}).items():
            if weight < 0:
                raise InputError(f"task_weights[{task!r}]={weight!r} must be >= 0")


KNOBS = tuple(f.name for f in fields(MultiTaskKnobs))
